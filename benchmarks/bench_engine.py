"""Data-engine throughput: the default schedule (items on worker processes) side by side with in-process.

What runs: the real `DataEngine` (plan -> generate -> validate by execution -> filter -> roll out -> check ->
validate -> store, fsync per record) on the scripted roles of ``eigendspy/testing/roles.py`` (real DSPy role
modules; only the answers are scripted, and each LM request ``asyncio.sleep``s the simulated latency), over a
mock DB large enough that 64 streams draw (almost) distinct tasks (600 users x 5 tasks). Two schedules of the
same workload, one after the other in one invocation (ratios, not absolute numbers, on a shared machine):

  * ``processes (default)``: what ``synth`` does at >= 16 streams with API LMs (``EngineConfig.workers="auto"``):
    the items on ``ceil(streams / 16)`` worker processes (`eigendspy.engine.processes.ProcessWorkerPool`), stream
    ``s`` on worker ``s % N``, the concurrency split over the workers; plans, filters and the store on the driver.
  * ``in-process``: everything in one process and one event loop (``workers=1``).

Measured:
  * Utilisation of the LM slots = time-weighted mean number of LM requests in flight at the simulated model /
    concurrency. Every process logs each request's start and end (``time.monotonic``: one clock for all
    processes); over the whole ``engine.run()`` and over the item phase (first request after the planner's to
    the end of the last request: what a long run repeats; the planner call happens once per run), plus the
    share of the item phase with >= 90 % of the slots busy. Worker start-up (spawn, imports, building roles) is
    timed apart: once per run, before ``engine.run()``.
  * Same accepted set: accepted task records (work key, task JSON) and accepted dialogues (work key, task id,
    every message) of the two schedules, compared by content.
  * The engine's share of each process's own CPU, by cProfile (CPU-time timer; ``asyncio.to_thread`` inlined so
    thread work is profiled too) of one more run per schedule: the driver and the workers profiled apart; own
    time of shared code (stdlib, pydantic, builtins) charged to its callers, then split by owner package.
    ``engine_share`` = eigendspy.engine (loop, items, filters, store, pool); ``eigendspy_share`` = all of
    eigendspy except the scripted LM. (Not CPU divided by the simulated latency: that ratio says nothing about
    whether a process keeps up.)

Measured on 2026-12-06 at low load (2 cores, load average 1.1 before, 1.4 after; Python 3.11.7, dspy 3.4.1;
defaults: 64 streams, concurrency 64, latency 0.2 s, 1 round x 4 tasks x 1 episode, 1,731 LM requests;
``benchmarks/results/engine.json``), with the concurrency limit held inside each LM request
(`eigendspy.lm.request_slots`), items handed to the least loaded worker (2 items per LM slot of its share) and
text-only LM calls without DSPy's thread hops (`eigendspy.lm.direct_calls`):

    schedule              workers  start-up  run    whole run  items  >=90% busy  answer lag  accepted
    processes (default)   4        1.9 s     6.3 s  0.865      0.932  91 % of it  1.6 ms      238
    in-process            1        -         6.6 s  0.823      0.878  79 % of it  13.2 ms     238

    Three more default runs that hour (no profile): items 0.935 / 0.945 / 0.931, whole run 0.867 / 0.870 /
    0.871 (in-process 0.830-0.863 / 0.771-0.802). Before the direct calls (same day): items 0.880-0.904, whole
    run 0.838. A longer run (16 tasks per stream, 5,944 LM requests, load 0.6, ``results/engine_tasks16.json``):
    processes **0.964** of the slots over the item phase and **0.918** over the whole run, in-process 0.863 /
    0.832. Same accepted set: yes in every run (238 / 748 tasks and dialogues, compared by content).
    Profiled share of each process's own CPU: in-process, eigendspy.engine 15.7 %, all of eigendspy 46.2 %, DSPy
    44.3 % of 8.6 s; with the pool, the workers 12.2 % / 45.2 % / 44.0 % of 9.9 s, the driver (filters, store,
    JSON of the records) 66.2 % / 78.3 % of 0.9 s.
    Target >= 0.9 of the slots busy at 0.2 s: met over the item phase in every run (0.931-0.964) and over the
    whole of the longer run (0.918); a short default run's whole-run figure is 0.865-0.871, because of (1) its
    end: once fewer items remain than slots, the last episodes are chains of 5-6 sequential requests and the
    slots empty out (a longer run dilutes it, an overnight run even more); (2) its start: the planner's one
    call, then the first drafts. Before the concurrency limit moved into the LM request (same day, load 7.7 ->
    10.2) the pool reached 0.736 and in-process 0.712: the engine held a slot 0.89 of the time but had a request
    at the model only 0.74 of it, the rest being DSPy formatting and parsing, thread hops and the validator's
    execution check inside the slot.

Run: ``python -m benchmarks.bench_engine [--streams 64 --concurrency 64 --latency 0.2 --tasks-per-round 4
--episodes 1 --workers auto --repeats 1 --json benchmarks/results/engine.json]`` (``--no-profile`` to shorten).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from benchmarks.engine_analysis import FUNNEL, format_table, funnel, kind_summary, same_records, shares, utilisation  # noqa: E402
from benchmarks.engine_probe import ROLE_NAMES, now, requests_by_role  # noqa: E402
from benchmarks.engine_runs import RunResult, Settings, load_domain, run_engine  # noqa: E402

__all__ = ["DEFAULTS", "FUNNEL", "ROLE_NAMES", "TARGET_UTILISATION", "Settings", "format_table", "main",
           "run_benchmark"]

DEFAULTS = {"streams": 64, "concurrency": 64, "latency": 0.2, "tasks_per_round": 4, "episodes": 1, "rounds": 1,
            "domain": "mock", "num_users": 600, "tasks_per_user": 5, "repeats": 1, "workers": "auto"}
TARGET_UTILISATION = 0.90
MODES = {"processes (default)": "processes", "in-process": "in-process"}


def _mode_record(runs: list[RunResult], concurrency: int, latency: float) -> dict[str, Any]:
    """Medians over the repeats of one schedule (each repeat's numbers kept too)."""
    utils = [utilisation(r, concurrency, latency) for r in runs]
    first = runs[0]
    return {
        "workers": first.workers,
        "startup_s": statistics.median(r.startup_s for r in runs),
        "wall_s": statistics.median(r.wall_s for r in runs),
        "driver_cpu_s": statistics.median(r.driver_cpu_s for r in runs),
        "driver_cpu_ms_per_lm_request": statistics.median(1000 * r.driver_cpu_s / max(1, len(r.requests))
                                                          for r in runs),
        "processes_idle_before_run_end_s": first.idle_before_end_s,
        "lm_requests": len(first.requests), "lm_requests_by_role": requests_by_role(first.requests),
        "accepted_tasks": len(first.accepted_tasks), "accepted_dialogues": len(first.accepted_dialogues),
        "utilisation": {k: statistics.median(u[k] for u in utils) for k in utils[0]},
        "utilisation_per_repeat": utils,
    }


def run_benchmark(s: Settings, *, repeats: int = 1, profile: bool = True, log: Any = print) -> dict[str, Any]:
    """Both schedules ``repeats`` times, alternating; then (optionally) one profiled run of each."""
    if s.streams < 1 or s.concurrency < 1 or s.latency <= 0 or repeats < 1:
        raise ValueError("need streams >= 1, concurrency >= 1, latency > 0, repeats >= 1")
    started, load_before = now(), os.getloadavg()
    domain, domain_desc = load_domain(s)
    workdir = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    runs: dict[str, list[RunResult]] = {name: [] for name in MODES}
    profiles: dict[str, Any] = {}
    try:
        run_engine(s, domain, "in-process", workdir, latency=0.0, streams=2, tasks_per_round=1)  # imports, caches
        log(f"domain: {domain_desc}; streams {s.streams}, concurrency {s.concurrency}, latency {s.latency} s")
        for k in range(repeats):
            for name, mode in MODES.items():
                run = run_engine(s, domain, mode, workdir)
                runs[name].append(run)
                log(f"  {k + 1}/{repeats} {name}: {run.workers} worker(s), start-up {run.startup_s:.2f} s, run "
                    f"{run.wall_s:.2f} s, {len(run.requests)} LM requests, {len(run.accepted_dialogues)} accepted; "
                    f"utilisation {utilisation(run, s.concurrency, s.latency)['items']:.3f}")
        if profile:
            for name, mode in MODES.items():
                prun = run_engine(s, domain, mode, workdir, profile=True)
                for part, stats in prun.profiles.items():
                    profiles[f"{name}: {part}"] = shares(stats)
                log(f"  profiled {name}: " + "; ".join(
                    f"{k.split(': ')[1]} engine {v['engine_share']:.1%} / eigendspy {v['eigendspy_share']:.1%} of "
                    f"{v['profiled_cpu_s']:.2f} s" for k, v in profiles.items() if k.startswith(name) and v))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    modes = {name: _mode_record(rs, s.concurrency, s.latency) for name, rs in runs.items()}
    default, single = runs["processes (default)"], runs["in-process"]
    same = same_records(default[0], single[0])
    same["identical_in_every_repeat"] = all(same_records(a, b)["identical"] for a, b in zip(default, single,
                                                                                           strict=True))
    util = modes["processes (default)"]["utilisation"]["items"]
    kinds = single[0].summary.kinds
    return {
        "benchmark": "engine",
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": _cores(), "python": platform.python_version(), "platform": platform.platform(),
                    "dspy": getattr(dspy, "__version__", "?"), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "settings": {**s.__dict__, "domain_desc": domain_desc, "repeats": repeats, "profile": profile},
        "modes": modes,
        "same_accepted_set": same,
        "profile": profiles or None,
        "profile_method": "cProfile (process_time timer) of one more run per schedule at the same latency, "
                          "asyncio.to_thread inlined; own time of shared code charged to its callers; shares of "
                          "each process's own CPU (workers: all worker processes together)",
        "funnel": funnel(single[0].summary),
        "yield": {"tasks": kind_summary(kinds.get("task")), "dialogues": kind_summary(kinds.get("dialogue"))},
        "total_s": now() - started,
        "targets": {"utilisation": TARGET_UTILISATION, "utilisation_met": util >= TARGET_UTILISATION,
                    "same_accepted_set": same["identical_in_every_repeat"]},
    }


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _workers(value: str) -> str | int:
    return value if value == "auto" else int(value)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_engine", description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=DEFAULTS["streams"])
    parser.add_argument("--concurrency", type=int, default=DEFAULTS["concurrency"])
    parser.add_argument("--latency", type=float, default=DEFAULTS["latency"], help="simulated LM latency (s)")
    parser.add_argument("--tasks-per-round", type=int, default=DEFAULTS["tasks_per_round"])
    parser.add_argument("--episodes", type=int, default=DEFAULTS["episodes"], help="episodes per task")
    parser.add_argument("--rounds", type=int, default=DEFAULTS["rounds"])
    parser.add_argument("--domain", default=DEFAULTS["domain"], choices=["mock", "retail"])
    parser.add_argument("--num-users", type=int, default=DEFAULTS["num_users"], help="mock DB size")
    parser.add_argument("--tasks-per-user", type=int, default=DEFAULTS["tasks_per_user"], help="mock DB size")
    parser.add_argument("--workers", type=_workers, default=DEFAULTS["workers"],
                        help="worker processes of the default schedule: 'auto' (as synth) or N")
    parser.add_argument("--repeats", type=int, default=DEFAULTS["repeats"], help="runs of each schedule")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled runs")
    parser.add_argument("--json", type=Path, default=None, help="write the result record here")
    args = parser.parse_args(argv)
    settings = Settings(streams=args.streams, concurrency=args.concurrency, latency=args.latency,
                        tasks_per_round=args.tasks_per_round, episodes=args.episodes, rounds=args.rounds,
                        domain=args.domain, num_users=args.num_users, tasks_per_user=args.tasks_per_user,
                        workers=args.workers)
    result = run_benchmark(settings, repeats=args.repeats, profile=not args.no_profile)
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
