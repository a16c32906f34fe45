"""Analysis and report of the engine benchmark: concurrency utilisation from the LM request log, whether two
schedules accepted the same records, cProfile attribution by owner, the yield funnel, and the printed table."""

from __future__ import annotations

import os
import pstats
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.engine_runs import RunResult

FUNNEL = [("generate", "drafted"), ("validate_task", "validated"), ("filter_task", "passed filters"),
          ("rollout", "rolled out"), ("check", "passed checker"), ("validate_trajectory", "passed validator")]


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


def utilisation(run: RunResult, concurrency: int, latency: float) -> dict[str, Any]:
    """Time-weighted mean of LM requests in flight / ``concurrency``, over the whole ``engine.run()`` and over the
    item phase: from the first request after the planner's to the end of the last request (what a long run
    repeats; the planner call and the final summary happen once per run).

    A request occupies its slot at the model for the latency from its start (what a server would see); the time
    until the client's event loop got around to the answer (``mean_answer_lag_ms``) is the client's delay, not a
    busy slot, so it is cut off. ``role_calls_open``: role calls in progress over the item phase (``ItemWorker.call``:
    DSPy formatting, the request, parsing, a validator's execution check), / ``concurrency``. The concurrency limit
    is held inside each LM request (`eigendspy.lm.request_slots`), so this may exceed 1: calls doing CPU work wait
    for no slot.
    """
    raw = run.requests
    rows = [(x, min(y, x + latency), role) for x, y, role in raw]
    if not rows:
        return {"whole_run": 0.0, "items": 0.0, "items_s": 0.0, "share_of_items_time_at_90pct": 0.0,
                "peak_in_flight": 0}
    items = [r for r in rows if r[2] != "planner"] or rows
    a, b = min(x for x, _, _ in items), max(y for _, y, _ in items)
    events = sorted([(x, 1) for x, _, _ in rows] + [(y, -1) for _, y, _ in rows])
    level = peak = 0
    at_least, prev = 0.0, a
    need = 0.9 * concurrency
    for t, delta in events:  # seconds of [a, b] with >= 90 % of the slots busy
        t_clip = min(max(t, a), b)
        if level >= need:
            at_least += t_clip - prev
        prev = t_clip
        level += delta
        peak = max(peak, level)

    def busy(x0: float, x1: float) -> float:
        return sum(max(0.0, min(y, x1) - max(x, x0)) for x, y, _ in rows)

    whole = run.run_end - run.run_start
    slots = sum(max(0.0, min(y, b) - max(x, a)) for x, y, _ in run.slots)
    return {"role_calls_open": slots / (concurrency * (b - a)) if run.slots and b > a else None,
            "whole_run": busy(run.run_start, run.run_end) / (concurrency * whole) if whole > 0 else 0.0,
            "items": busy(a, b) / (concurrency * (b - a)) if b > a else 0.0, "items_s": b - a,
            "share_of_items_time_at_90pct": at_least / (b - a) if b > a else 0.0, "peak_in_flight": peak,
            "mean_answer_lag_ms": 1000 * sum(max(0.0, y - x - latency) for x, y, _ in raw) / len(raw)}


def same_records(a: RunResult, b: RunResult) -> dict[str, Any]:
    """Whether two runs accepted the same tasks and dialogues: the same work keys with the same contents."""
    def diff(x: dict[str, str], y: dict[str, str]) -> list[str]:
        return sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))

    tasks, dialogues = diff(a.accepted_tasks, b.accepted_tasks), diff(a.accepted_dialogues, b.accepted_dialogues)
    return {"identical": not tasks and not dialogues, "accepted_tasks": len(a.accepted_tasks),
            "accepted_dialogues": len(a.accepted_dialogues), "differing_task_keys": tasks[:20],
            "differing_dialogue_keys": dialogues[:20],
            "compared": "accepted task records (work key, task JSON) and accepted dialogues (work key, task id, "
                        "every message's role and content), by sha256"}


_GROUPS = {  # top-level package under eigendspy/ -> owner
    "engine": "eigendspy.engine (loop, items, filters, store, pool)",
    "core": "eigendspy.core (rollout loop, env, records)", "scoring": "eigendspy.scoring + domains (execution)",
    "domains": "eigendspy.scoring + domains (execution)", "agents": "eigendspy.agents + signatures (role modules)",
    "signatures": "eigendspy.agents + signatures (role modules)", "lm": "eigendspy.lm (adapter cache, retries)",
    "testing": "scripted LM (simulated model)",
}


def category(filename: str) -> str | None:
    """Who owns a profiled function, by its file; None for shared code (stdlib, pydantic, builtins)."""
    f = filename.replace(os.sep, "/")
    if "/eigendspy/" in f:
        top = f.split("/eigendspy/", 1)[1].split("/", 1)[0].removesuffix(".py")
        return _GROUPS.get(top, "eigendspy (other)")
    if "/dspy/" in f or "/litellm/" in f:
        return "dspy (adapter, LM client)"
    if "/asyncio/" in f or f.endswith(("/selectors.py", "/threading.py")) or "/concurrent/" in f:
        return "event loop"
    if "/multiprocessing/" in f:
        return "pipes (multiprocessing)"
    if "/benchmarks/" in f:
        return "benchmark instrumentation"
    return None


def shares(stats: pstats.Stats | None) -> dict[str, Any] | None:
    """The CPU a profile saw, split by owner; the engine's share = eigendspy.engine's (its own code plus the shared
    code it calls), and eigendspy's as a whole (excluding the scripted LM, which stands in for the model)."""
    if stats is None:
        return None
    owners = attribute(stats)
    total = sum(owners.values())
    share = {k: v / total for k, v in owners.items()} if total else {}
    return {"profiled_cpu_s": total, "engine_share": share.get(_GROUPS["engine"], 0.0),
            "eigendspy_share": sum(v for k, v in share.items() if k.startswith("eigendspy")),
            "dspy_share": share.get("dspy (adapter, LM client)", 0.0), "share_by_owner": share,
            "top_eigendspy_functions": top_functions(stats)}


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


def kind_summary(ks: Any) -> dict[str, Any]:
    if ks is None:
        return {}
    return {"total": ks.total, "accepted": ks.accepted, "rejected": ks.rejected, "stages": ks.stages,
            "yield": ks.accepted / ks.total if ks.total else None,
            "top_reasons": [{"reason": r.reason[:120], "count": r.count} for r in ks.top_reasons[:5]]}


def format_table(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [f"engine benchmark {r['date']}: {s['domain_desc']}, streams {s['streams']}, concurrency "
             f"{s['concurrency']}, latency {s['latency']} s, {s['rounds']} round(s) x {s['tasks_per_round']} task(s) "
             f"x {s['episodes']} episode(s); load average {r['machine']['loadavg_before'][0]:.2f} before, "
             f"{r['machine']['loadavg_after'][0]:.2f} after", "",
             f"{'schedule':<26}{'workers':>8}{'start s':>9}{'run s':>8}{'LM req':>8}{'whole run':>11}{'items':>8}"
             f"{'>=90% of time':>15}{'calls open':>12}{'lag ms':>8}{'accepted':>10}"]
    for name, m in r["modes"].items():
        u = m["utilisation"]
        lines.append(f"{name:<26}{m['workers']:>8}{m['startup_s']:>9.2f}{m['wall_s']:>8.2f}{m['lm_requests']:>8}"
                     f"{u['whole_run']:>11.3f}{u['items']:>8.3f}{u['share_of_items_time_at_90pct']:>15.2f}"
                     f"{u.get('role_calls_open') or 0.0:>12.3f}{u.get('mean_answer_lag_ms', 0.0):>8.1f}"
                     f"{m['accepted_dialogues']:>10}")
    lines.append("utilisation = LM requests in flight at the model / concurrency; lag = how late the client's loop "
                 "took an answer (mean)")
    same = r["same_accepted_set"]
    lines.append(f"same accepted set as in-process: {same['identical']} ({same['accepted_tasks']} tasks, "
                 f"{same['accepted_dialogues']} dialogues compared by content)")
    for name, prof in (r.get("profile") or {}).items():
        if prof is None:
            continue
        lines.append(f"profile {name}: {prof['profiled_cpu_s']:.2f} s CPU; eigendspy.engine "
                     f"{prof['engine_share']:.1%}, eigendspy {prof['eigendspy_share']:.1%}, "
                     f"dspy {prof['dspy_share']:.1%} of the process's CPU")
    if r.get("funnel"):
        lines += ["", f"{'stage':<22}{'in':>6}{'out':>6}{'yield':>8}"]
        for row in r["funnel"]:
            y = "-" if row["yield"] is None else f"{row['yield']:.3f}"
            lines.append(f"{row['label']:<22}{row['in']:>6}{row['out']:>6}{y:>8}")
    t = r["targets"]
    lines.append(f"targets: >= {t['utilisation']:.0%} of the slots busy (items phase, default schedule): "
                 f"{'met' if t['utilisation_met'] else 'NOT met'}; same accepted set: "
                 f"{'met' if t['same_accepted_set'] else 'NOT met'}")
    return "\n".join(lines)
