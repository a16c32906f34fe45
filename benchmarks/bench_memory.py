"""Live memory over a long run of DSPy episodes: DSPy's trace and LM history kept (``old``) vs bounded (``new``).

What runs: the orchestrator benchmark's workload (`benchmarks.orchestrator_workload`: retail, the real
DSPy `Assistant` / `UserSimulator` role modules on scripted LMs, the deterministic 10-call dialogue) as
``batches`` batches of ``episodes`` episodes through `eigendspy.eval.runner.run_episodes`, with the same
role modules and LMs for the whole run (as in a long synthesis or evaluation run), zero latency.

Two modes, each in its own fresh (spawned) process, so one cannot inherit the other's DSPy state:

* ``old``: ``run_episodes(..., keep_lm_history=True)``: DSPy's defaults, i.e. what every run did before
  `eigendspy.lm.bounded_state`: each ``Predict`` call appended to DSPy's process-wide trace, each LM
  call to ``GLOBAL_HISTORY``, ``lm.history`` and the calling module's ``history`` (10,000 entries each).
* ``new``: the default: role calls run under `bounded_lm_state` (trace discarded, history off).

Measured: ``tracemalloc``'s live (traced) memory after each batch, after a full ``gc.collect()``; the
growth per batch after the first (the first batch also fills import-time and first-call caches) must
stay under ``MAX_GROWTH_MB``. Also recorded per batch: the lengths of DSPy's trace, ``GLOBAL_HISTORY``,
the LMs' and role modules' histories. The scripted LMs' own call logs (a test double's record of every
request) are cleared after each batch: they are not part of what a production run keeps.

Run: ``python -m benchmarks.bench_memory [--episodes 256 --batches 5 --concurrency 64 --out PATH]``;
writes ``benchmarks/results/memory.json``. tracemalloc slows Python ~2x: the wall times are not
throughput numbers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import multiprocessing as mp
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.orchestrator_workload import (  # noqa: E402
    assistant_policy,
    benchmark_tasks,
    domain_spec,
    load_domain,
    make_plan,
    user_policy,
)
from eigendspy.agents import Assistant, UserSimulator  # noqa: E402
from eigendspy.eval.runner import run_episodes  # noqa: E402
from eigendspy.testing.lm import scripted_lm  # noqa: E402

DEFAULTS = {"episodes": 256, "batches": 5, "concurrency": 64}
MAX_GROWTH_MB = 5.0
OUT = Path(__file__).parent / "results" / "memory.json"
MB = 1024 * 1024


def retained(lms: list[dspy.LM], modules: list[dspy.Module]) -> dict[str, int]:
    """How many trace entries and history entries DSPy holds right now."""
    from dspy.clients.base_lm import GLOBAL_HISTORY

    return {
        "trace": len(dspy.settings.trace or []),
        "global_history": len(GLOBAL_HISTORY),
        "lm_history": sum(len(lm.history) for lm in lms),
        "module_history": sum(len(getattr(m, "history", [])) for m in modules),
    }


def run_mode(mode: str, episodes: int, batches: int, concurrency: int, builtin: bool = False) -> dict[str, Any]:
    """One mode in this process: set up, then ``batches`` batches with tracemalloc on."""
    keep = mode == "old"
    domain = load_domain(domain_spec(builtin))
    tasks, source = benchmark_tasks(domain, episodes)
    plans = {t.user_scenario.render().strip(): make_plan(t, domain) for t in tasks}
    a_lm = scripted_lm(assistant_policy, model="scripted/assistant")
    u_lm = scripted_lm(user_policy(plans), model="scripted/user")
    assistant, user = Assistant(lm=a_lm), UserSimulator(lm=u_lm)
    modules = [m for role in (assistant, user) for _, m in role.named_sub_modules()]  # the roles and predictors
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    rows = []
    for b in range(batches):
        start = time.monotonic()
        done = run_episodes(domain, tasks, assistant, user, concurrency=concurrency, progress=False,
                            keep_lm_history=keep)
        wall = time.monotonic() - start
        calls = a_lm.call_count + u_lm.call_count
        terminations = sorted({ep.termination_reason.value for ep in done})
        del done
        a_lm.log.reset()
        u_lm.log.reset()
        gc.collect()
        live = tracemalloc.get_traced_memory()[0]
        rows.append({"batch": b + 1, "live_mb": round((live - base) / MB, 2), "wall_s": round(wall, 2),
                     "calls": calls, "terminations": terminations, "retained": retained([a_lm, u_lm], modules)})
        print(f"  {mode} batch {b + 1}: live {rows[-1]['live_mb']:8.2f} MB  {calls} calls  {wall:5.1f} s  "
              f"retained {rows[-1]['retained']}", flush=True)
    tracemalloc.stop()
    live = [r["live_mb"] for r in rows]
    growth = [round(y - x, 2) for x, y in zip(live, live[1:], strict=False)]
    return {"mode": mode, "keep_lm_history": keep, "task_source": source, "batches": rows,
            "growth_after_first_mb": growth, "max_growth_after_first_mb": max(growth, default=0.0),
            "mean_growth_after_first_mb": round(sum(growth) / len(growth), 2) if growth else 0.0}


def in_fresh_process(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(run_mode, mode, args.episodes, args.batches, args.concurrency, args.builtin).result()


def format_table(results: dict[str, dict[str, Any]]) -> str:
    old, new = results["old"], results["new"]
    lines = [f"{'batch':>5} | {'old live MB':>11} | {'new live MB':>11} | {'old retained (trace/hist)':>25} | "
             f"{'new retained':>12}"]
    for o, n in zip(old["batches"], new["batches"], strict=True):
        ro, rn = o["retained"], n["retained"]
        lines.append(f"{o['batch']:>5} | {o['live_mb']:>11.2f} | {n['live_mb']:>11.2f} | "
                     f"{ro['trace']:>11} / {ro['global_history']:>11} | {rn['trace']:>5}/{rn['global_history']:>5}")
    lines.append(f"growth per batch after the first (MB): old {old['growth_after_first_mb']}  "
                 f"new {new['growth_after_first_mb']}  (new must stay < {MAX_GROWTH_MB})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=DEFAULTS["episodes"])
    parser.add_argument("--batches", type=int, default=DEFAULTS["batches"])
    parser.add_argument("--concurrency", type=int, default=DEFAULTS["concurrency"])
    parser.add_argument("--builtin", action="store_true", help="built-in retail data instead of tau2's")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    results = {}
    for mode in ("new", "old"):
        print(f"{mode}: {args.batches} batches of {args.episodes} episodes", flush=True)
        results[mode] = in_fresh_process(mode, args)
    new_ok = results["new"]["max_growth_after_first_mb"] < MAX_GROWTH_MB
    report = {"episodes_per_batch": args.episodes, "batches": args.batches, "concurrency": args.concurrency,
              "max_growth_mb": MAX_GROWTH_MB, "passed": new_ok, "python": sys.version.split()[0],
              "dspy": dspy.__version__, "cpus": os.cpu_count(), **results}
    print(format_table(results))
    print("PASS" if new_ok else "FAIL", f"new max growth {results['new']['max_growth_after_first_mb']} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
