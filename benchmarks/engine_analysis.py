"""Analysis and report of the engine benchmark: the yield funnel, zero-CPU ceilings, concurrency utilisation,
cProfile attribution by owner, token counts, and the printed table."""

from __future__ import annotations

import os
import pstats
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.engine_probe import ROLE_NAMES, Probe, RunResult, Timeline
from eigendspy.core.records import Usage

FUNNEL = [("generate", "drafted"), ("validate_task", "validated"), ("filter_task", "passed filters"),
          ("rollout", "rolled out"), ("check", "passed checker"), ("validate_trajectory", "passed validator")]


def _calls(usage: Usage) -> int:
    return sum(usage.calls.values())


def funnel(summary: Any) -> list[dict[str, Any]]:
    """Items entering and leaving each stage (from the store's stage counts of rejected records)."""
    tasks, dialogues = summary.kinds.get("task"), summary.kinds.get("dialogue")
    rows, current = [], tasks.total if tasks else 0
    for stage, label in FUNNEL:
        kind = tasks if stage in ("generate", "validate_task", "filter_task") else dialogues
        if stage == "rollout":
            current = dialogues.total if dialogues else 0
        rejected = kind.stages.get(stage, 0) if kind else 0
        out = current - rejected
        rows.append({"stage": stage, "label": label, "in": current, "out": out,
                     "yield": out / current if current else None})
        current = out
    return rows


def wave_ceilings(run: RunResult, concurrency: int) -> dict[str, Any]:
    """Zero-CPU utilisation ceilings from the calls each stream made (records' usage: attempts per item).

    ``waves``: every wave lasts as long as its slowest stream (task phase, then rollouts).
    ``pipelined``: each stream runs its items back to back, so the run lasts as long as the busiest stream.
    """
    task_calls: dict[tuple[int, int], list[int]] = defaultdict(list)
    dialogue_calls: dict[tuple[int, int], list[int]] = defaultdict(list)
    per_stream: Counter = Counter()
    for rec in run.tasks:
        s, r, i = (int(p[1:]) for p in rec.work_key.split("/")[:3])
        task_calls[(r, i)].append(_calls(rec.usage))
        per_stream[s] += _calls(rec.usage)
    for rec in run.dialogues:
        s, r, i = (int(p[1:]) for p in rec.work_key.split("/")[:3])
        dialogue_calls[(r, i)].append(_calls(rec.usage))
        per_stream[s] += _calls(rec.usage)
    total = sum(per_stream.values())
    steps = sum(max(task_calls[w]) + max(dialogue_calls.get(w, [0])) for w in task_calls)
    return {
        "calls_in_waves": total,
        "wave_steps": steps,
        "waves": total / (concurrency * steps) if steps else None,
        "pipelined": min(1.0, total / (concurrency * max(per_stream.values()))) if total else None,
        "max_calls_per_stream": max(per_stream.values()) if per_stream else 0,
        "mean_calls_per_stream": total / len(per_stream) if per_stream else 0,
        "task_calls_per_wave_max": {f"r{r}/t{i}": max(v) for (r, i), v in sorted(task_calls.items())},
    }


def utilisation(run: RunResult, concurrency: int, latency: float) -> dict[str, Any]:
    p = run.probe
    lm, client, slots = p.lm.clipped(latency), p.lm, p.slots
    waves = [w for w in p.waves if "end" in w]
    a, b = p.run_start, p.run_end
    wa, wb = (waves[0]["start"], waves[-1]["end"]) if waves else (a, b)

    def seg(name: str, x: float, y: float) -> dict[str, Any]:
        dur = max(0.0, y - x)
        busy = lm.busy(x, y)
        return {"segment": name, "seconds": dur, "mean_in_flight": busy / dur if dur else 0.0,
                "lost_slot_s": concurrency * dur - busy}

    segments = [seg("startup (plans)", a, wa)]
    per_wave = []
    for n, w in enumerate(waves):
        name = f"r{w['round']}/t{w['item']}"
        fs = rs = w["start"]
        if w.get("pipelined"):
            name = "items (pipelined)"
            segments += [seg(f"{name}, all streams busy", w["start"], min(p.stream_done or [w["end"]])),
                         seg(f"{name}, tail", min(p.stream_done or [w["end"]]), w["end"])]
        else:
            fs = w.get("filter_start", w["end"])
            rs = w.get("rollout_start", w["end"])
            segments += [seg(f"{name} tasks", w["start"], fs), seg(f"{name} filter+store", fs, rs),
                         seg(f"{name} rollouts", rs, w["end"])]
        if n + 1 < len(waves):
            segments.append(seg(f"{name} -> next wave", w["end"], waves[n + 1]["start"]))
        dur = w["end"] - w["start"]
        per_wave.append({"wave": name, "seconds": dur, "utilisation": lm.busy(w["start"], w["end"]) /
                         (concurrency * dur) if dur else 0.0, "filter_store_s": rs - fs})
    segments.append(seg("teardown (summary, diversity)", wb, b))

    def util(tl: Timeline, x: float, y: float) -> float:
        return tl.busy(x, y) / (concurrency * (y - x)) if y > x else 0.0

    lost = {"startup_teardown": segments[0]["lost_slot_s"] + segments[-1]["lost_slot_s"],
            "filter_store": sum(s["lost_slot_s"] for s in segments if s["segment"].endswith("filter+store")),
            "inside_phases": sum(s["lost_slot_s"] for s in segments
                                 if s["segment"].endswith(("tasks", "rollouts", "next wave", "busy", "tail")))}
    return {
        "concurrency": concurrency,
        "definition": "time-weighted mean of LM requests in flight at the model (each for the latency from its "
                      "start) / configured concurrency",
        "whole_run": util(lm, a, b),
        "steady_state": util(lm, wa, wb),
        "steady_state_definition": "first wave start to last wave end (startup plans and final summary excluded; "
                                   "wave boundaries included: a long run repeats them)",
        "client_whole_run": util(client, a, b),
        "client_steady_state": util(client, wa, wb),
        "client_definition": "the same with each request counted until the engine got its answer: includes the "
                             "time the answer waited for the event loop",
        "mean_answer_wait_ms": 1000 * (client.mean_duration() - latency),
        "slots_whole_run": util(slots, a, b),
        "slots_steady_state": util(slots, wa, wb),
        "slots_definition": "concurrency slots held (inside the engine's semaphore: DSPy formatting and parsing, "
                            "execution validation in TaskValidator, the LM request)",
        "peak_in_flight": lm.peak,
        "share_of_steady_time_at_least_90pct": (lm.time_at_least(wa, wb, max(1, int(0.9 * concurrency)))
                                                / (wb - wa) if wb > wa else 0.0),
        "share_of_steady_time_idle": (1 - lm.time_at_least(wa, wb, 1) / (wb - wa)) if wb > wa else 0.0,
        "lm_busy_s": lm.busy(a, b),
        "lost_slot_s": lost,
        "segments": segments,
        "waves": per_wave,
        "ceilings": wave_ceilings(run, concurrency),
    }


_EIGEN_GROUPS = {  # module (path under eigendspy/, without .py; a folder for packages) -> group
    "execution & checkers": ("task_checks", "environment", "tool", "state", "checkers", "verify", "oracle",
                             "reward", "sandbox", "sandbox_interpreter", "sandbox_rules", "sandbox_subprocess",
                             "nl_judge", "domains", "task", "domain"),
    "rollout loop": ("orchestrator", "participants", "trajectory", "render"),
    "role modules (inputs/outputs)": ("agents", "signatures", "plans", "entities"),
    "store": ("store", "store_summary", "records"),
    "engine loop & filters": ("engine", "engine_items", "task_filters", "diversity", "resilience"),
}
_MODULE_GROUP = {m: g for g, mods in _EIGEN_GROUPS.items() for m in mods}


def category(filename: str) -> str | None:
    """Who owns a profiled function, by its file; None for shared code (stdlib, pydantic, builtins)."""
    f = filename.replace(os.sep, "/")
    if "/eigendspy/" in f:
        rel = f.split("/eigendspy/", 1)[1]
        if rel in ("lm.py", "lm_request.py", "scripted_roles.py"):
            return "scripted LM (simulated model)"
        module = rel.split("/", 1)[0].removesuffix(".py")
        return f"eigendspy: {_MODULE_GROUP.get(module, 'other')}"
    if "/dspy/" in f or "/litellm/" in f:
        return "dspy (adapter, LM client)"
    if "/asyncio/" in f or f.endswith(("/selectors.py", "/threading.py")) or "/concurrent/" in f:
        return "event loop"
    if "/benchmarks/" in f:
        return "benchmark instrumentation"
    return None


def attribute(stats: pstats.Stats, owner: Callable[[tuple], str | None] | None = None) -> dict[str, float]:
    """Seconds of own time per owner; shared code is charged to its callers (weighted by time via each).

    The own time of a shared function is split over its callers by the own time spent under each (cProfile
    keeps that per caller); a shared caller is resolved further up, split by its callers' cumulative time.
    Paths that lead back into a function being resolved (recursion, e.g. pydantic schema generation) are
    dropped and the rest renormalised; a function with no owned path at all is "unattributed".
    """
    raw: dict = stats.stats  # type: ignore[attr-defined]
    owner = owner or (lambda func: category(func[0]))
    memo: dict[Any, dict[str, float]] = {}
    visiting: set = set()

    def owners(func: Any, weight_index: int) -> dict[str, float]:
        cat = owner(func)
        if cat is not None:
            return {cat: 1.0}
        if func in visiting:
            return {}
        if weight_index == 3 and func in memo:
            return memo[func]
        callers = raw.get(func, (0, 0, 0, 0, {}))[4]
        visiting.add(func)
        out: dict[str, float] = defaultdict(float)
        for c, v in callers.items():
            weight = v[weight_index] or 1e-12
            for k, f in owners(c, 3).items():
                out[k] += f * weight
        visiting.discard(func)
        norm = sum(out.values())
        if norm <= 0:  # every path leads back into the function being resolved
            return {} if visiting else {"unattributed": 1.0}
        result = {k: v / norm for k, v in out.items()}
        if weight_index == 3 and not visiting:  # only complete resolutions are reused
            memo[func] = result
        return result

    totals: dict[str, float] = defaultdict(float)
    for func, (_, _, tt, _, _) in raw.items():
        for k, f in owners(func, 2).items():
            totals[k] += tt * f
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _function_owner(func: tuple) -> str | None:
    cat = category(func[0])
    if cat is not None and cat.startswith("eigendspy"):
        return f"{func[0].replace(os.sep, '/').split('/eigendspy/', 1)[1]}:{func[1]}({func[2]})"
    return cat


def top_functions(stats: pstats.Stats, n: int = 12) -> list[dict[str, Any]]:
    """eigendspy functions by the CPU they own (their own time plus the shared code they call directly or
    through other shared code, not through dspy or other eigendspy functions)."""
    owned = attribute(stats, _function_owner)
    rows = [(k, v) for k, v in owned.items() if ".py:" in k]
    return [{"function": k, "owned_s": v} for k, v in rows[:n]]


def tokens_section(usage: Usage, p: Probe, acc: int) -> dict[str, Any]:
    """Tokens the engine stored per role (DSPy usage tracking) next to what the scripted LMs reported."""
    recorded = {role: usage.prompt_tokens.get(role, 0) + usage.completion_tokens.get(role, 0)
                for role in sorted(set(usage.calls) | set(usage.prompt_tokens))}
    reported = {role: p.tokens_in[role] + p.tokens_out[role] for role in p.lm_requests}
    stored_roles = set(usage.calls)  # the planner's and reflector's usage is not stored with any record
    missing = sorted(r for r in stored_roles if reported.get(r) and not recorded.get(r))
    total_recorded, total_reported = sum(recorded.values()), sum(reported.values())
    return {
        "recorded_by_engine": recorded, "recorded_total": total_recorded,
        "reported_by_lm": reported, "reported_total": total_reported,
        "reported_in": dict(p.tokens_in), "reported_out": dict(p.tokens_out),
        "roles_with_tokens_not_recorded": missing,
        "per_accepted_dialogue_recorded": total_recorded / acc if acc else None,
        "per_accepted_dialogue_reported": total_reported / acc if acc else None,
        "note": "reported = usage in the scripted LMs' responses (prompt characters / 4, answer characters / 4: an "
                "estimate, not a tokenizer); recorded = prompt + completion tokens in the store's usage, which the "
                "engine takes from DSPy usage tracking (ItemWorker.call)",
    }


def kind_summary(ks: Any) -> dict[str, Any]:
    if ks is None:
        return {}
    return {"total": ks.total, "accepted": ks.accepted, "rejected": ks.rejected, "stages": ks.stages,
            "yield": ks.accepted / ks.total if ks.total else None,
            "top_reasons": [{"reason": r.reason[:120], "count": r.count} for r in ks.top_reasons[:5]]}


def format_table(r: dict[str, Any]) -> str:
    s, c, t, u, o = r["settings"], r["calls"], r["tokens"], r["utilisation"], r["overhead"]
    acc = r["run"]["accepted_dialogues"]
    lines = [f"engine benchmark {r['date']}: {s['domain_desc']}, streams {s['streams']}, concurrency "
             f"{s['concurrency']}, latency {s['latency']} s, {s['rounds']} round(s) x {s['tasks_per_round']} "
             f"task(s) x {s['episodes']} episode(s)",
             f"run: wall {r['run']['wall_s']:.2f} s (ideal with waves and no CPU {u['ideal_wall_s_waves']:.2f} s), "
             f"{acc} accepted dialogues, {r['run']['accepted_tasks']} accepted tasks", "",
             f"{'role':<22}{'LM requests':>12}{'per accepted dialogue':>23}{'tokens reported':>17}{'recorded':>10}"]
    for role in ROLE_NAMES:
        n = c["lm_requests_by_role"].get(role, 0)
        if n:
            lines.append(f"{role:<22}{n:>12}{(n / acc if acc else 0):>23.2f}{t['reported_by_lm'].get(role, 0):>17}"
                         f"{t['recorded_by_engine'].get(role, 0):>10}")
    per = c["per_accepted_dialogue"] or 0
    lines.append(f"{'total':<22}{c['lm_requests']:>12}{per:>23.2f}{t['reported_total']:>17}{t['recorded_total']:>10}")
    lines.append(f"tokens per accepted dialogue: {t['per_accepted_dialogue_reported'] or 0:.0f} reported by the "
                 f"scripted LMs (chars / 4), {t['per_accepted_dialogue_recorded'] or 0:.0f} recorded by the engine"
                 + (f"; not recorded for: {', '.join(t['roles_with_tokens_not_recorded'])}"
                    if t["roles_with_tokens_not_recorded"] else ""))
    lines += ["", f"{'stage':<22}{'in':>6}{'out':>6}{'yield':>8}"]
    for row in r["yield"]["funnel"]:
        y = "-" if row["yield"] is None else f"{row['yield']:.3f}"
        lines.append(f"{row['label']:<22}{row['in']:>6}{row['out']:>6}{y:>8}")
    lines.append(f"duplicate tasks rejected: {r['yield']['duplicate_task_rejections']}")
    ce = u["ceilings"]
    lines += ["", "concurrency utilisation (LM requests in flight / concurrency):",
              f"  whole run {u['whole_run']:.3f}   steady state (waves) {u['steady_state']:.3f}   "
              f"slots held: {u['slots_whole_run']:.3f} / {u['slots_steady_state']:.3f}   peak {u['peak_in_flight']}",
              f"  zero-CPU ceilings: waves {ce['waves']:.3f}, per-stream pipelining {ce['pipelined']:.3f}; "
              f"CPU-bound ceiling of one process {ce['cpu_bound_one_process'] or 0:.3f}",
              f"  {'segment':<34}{'s':>7}{'in flight':>11}{'lost slot-s':>13}"]
    for seg in u["segments"]:
        lines.append(f"  {seg['segment']:<34}{seg['seconds']:>7.3f}{seg['mean_in_flight']:>11.1f}"
                     f"{seg['lost_slot_s']:>13.1f}")
    lines.append(f"  answers waited {u['mean_answer_wait_ms']:.1f} ms on average for the event loop (client view: "
                 f"{u['client_steady_state']:.3f} steady); the process used "
                 f"{u['latency_run_cpu_share_of_one_core']:.0%} of a core; plan saves "
                 f"{u['startup_plan_saves_s']:.2f} s, store appends (awaited, summed) "
                 f"{u['store_appends_wall_s']:.2f} s")
    hops = u.get("thread_hops") or {}
    if hops:
        lines.append("  thread hops (asyncio.to_thread): " + ", ".join(
            f"{k.rsplit('.', 1)[-1]} {v['count']} x {v['mean_wait_ms']:.1f} ms wait" for k, v in hops.items()))
    if u.get("what_if_pipelined"):
        w = u["what_if_pipelined"]
        busy = "-" if w["all_streams_busy"] is None else f"{w['all_streams_busy']:.3f}"
        lines.append(f"  what-if per-stream pipelining: wall {w['wall_s']:.2f} s, whole run {w['whole_run']:.3f}, "
                     f"items {w['steady_state']:.3f}, while all streams busy {busy} "
                     f"({w['accepted_dialogues']} accepted dialogues)")
    lines += ["", "engine overhead (CPU of eigendspy outside the DSPy calls, vs LM time = requests x latency):",
              f"  zero-latency runs: total CPU {_fmt(o['total_cpu_s'])} s; DSPy calls alone "
              f"{_fmt(o['dspy_calls_cpu_s'])} s; engine {_fmt(o['engine_cpu_s'])} s",
              f"  engine CPU {o['engine_cpu_s_median']:.2f} s = {o['engine_pct_of_lm_time']:.2f} % of LM time "
              f"{o['lm_time_s']:.0f} s (range {o['engine_pct_of_lm_time_range'][0]:.2f}-"
              f"{o['engine_pct_of_lm_time_range'][1]:.2f} %); {o['engine_cpu_ms_per_accepted_dialogue'] or 0:.1f} ms "
              f"per accepted dialogue, {o['engine_cpu_ms_per_lm_request']:.2f} ms per LM request"]
    if o.get("profile"):
        shares = o["profile"]["share_by_owner"]
        lines.append(f"  cProfile cross-check: eigendspy {o['profile']['eigendspy_share']:.1%} of CPU -> "
                     f"{o['engine_pct_of_lm_time_profile_estimate']:.2f} % of LM time; by owner: "
                     + ", ".join(f"{k} {v:.1%}" for k, v in shares.items() if v >= 0.005))
    tg = r["targets"]
    lines.append(f"targets: utilisation >= {tg['utilisation']:.0%}: {'met' if tg['utilisation_met'] else 'NOT met'}"
                 f" ({u['steady_state']:.3f} steady, {u['whole_run']:.3f} whole); engine overhead < "
                 f"{tg['overhead']:.0%} of LM time: {'met' if tg['overhead_met'] else 'NOT met'} "
                 f"({o['engine_pct_of_lm_time']:.2f} %)")
    return "\n".join(lines)


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)
