"""Data-engine throughput: LM calls per accepted dialogue, yield per stage, concurrency use, engine CPU.

What runs: the real `DataEngine` (plan -> generate -> validate by execution -> filter -> roll out -> check ->
validate -> store, fsync per record) on the scripted roles of ``tests/engine/scripted_roles.py`` (real DSPy
role modules; only the answers are scripted, and each LM request ``asyncio.sleep``s the simulated latency),
over a mock DB large enough that 64 streams draw (almost) distinct tasks: 600 users x 5 tasks (~1,560
pending tasks; 40 users gave 56 near-duplicates in 128 drafts, 600 give 1). Scale ``--num-users`` with
streams x tasks: task picks are seeded draws, so duplicates follow the birthday bound.

Measured, in one process, on the same deterministic workload:
  * LM requests per role (counted in each role LM's engine) and per accepted dialogue; the engine's own
    per-attempt counts (store summary usage) too. Tokens: the scripted LMs report an estimate (prompt
    characters / 4, answer characters / 4) in their responses; the engine records what DSPy usage tracking
    gives it (``ItemWorker.call``). Both are shown per role.
  * Yield per stage from the store summary: drafted -> validated -> passed filters -> rolled out -> passed
    checker -> passed validator.
  * Concurrency utilisation = time-weighted mean number of LM requests in flight at the model / configured
    concurrency. A request counts for the latency from its start (what a server would see); the client view
    (until the engine got the answer) and the slots held in the engine's semaphore (which also cover DSPy
    formatting and parsing and the execution check inside ``TaskValidator``) are reported too. Over the whole
    run, and over the steady state = first wave start to last wave end (without the planner call and the final
    summary, with the wave boundaries: a long run repeats them). Every phase is timed (startup, per wave: task
    phase, serial filter+store, rollouts; teardown) with the slot-seconds it lost.
  * Two zero-CPU ceilings from the calls each stream made (record usage): ``waves`` (each wave lasts as long
    as its slowest stream, tasks then rollouts) and ``pipelined`` (each stream runs its items back to back,
    so the run lasts as long as the busiest stream); and a what-if run of the same workload with per-stream
    pipelining (`PipelinedEngine` here, not the engine: its filters see tasks in completion order, so it is
    not deterministic). ``asyncio.to_thread`` hops are timed (queue wait until a pool thread runs them).
  * Engine overhead = CPU of eigendspy outside the DSPy calls / LM time (LM requests x latency). Method:
    ``time.process_time()`` (all threads) of a zero-latency run of the same workload, minus the CPU of
    replaying the very same DSPy predictor calls (inputs recorded during that run, same zero-latency scripted
    LMs) without the engine; median of ``--repeats``, range reported. Cross-check: a cProfile of one more
    zero-latency run (process-time timer, ``asyncio.to_thread`` inlined so thread work is profiled) with the own
    time of shared code (stdlib, pydantic, builtins) charged to its callers, split by module owner.
    Uncertainty: the subtraction takes the difference of two noisy numbers (the replay runs warmer and without
    the engine's usage tracking, so it slightly overstates engine CPU); the profile inflates call-heavy code
    and the attribution of shared code is approximate; the two agree within a factor of ~2, both far under
    the target. Why waves leave gaps: the engine advances in waves so a run is deterministic and exactly
    resumable — all streams make their task, the order-dependent filters decide in stream order, then all
    roll out. Every wave therefore lasts as long as its slowest stream (one repaired task = 2 more LM round
    trips for everyone), the filter+store section runs with nothing in flight, and streams move in lockstep,
    so their answers (and their CPU work) arrive in bursts.

Measured on 2026-11-26 (2 cores, Python 3.11.7, dspy 3.4.1; shared machine, load average 1.0-1.3 during the
runs; defaults: 64 streams, concurrency 64, latency 0.2 s, 1 round x 2 tasks x 1 episode, 38.6 s in all):

    LM requests 902 for 127 accepted dialogues = 7.10 per accepted dialogue: generator 1.09, task_validator
    1.01, user 2.00, assistant 2.00, trajectory_validator 1.00, planner 0.01 (10 drafts redone in repairs).
    Tokens per accepted dialogue: 6,746 reported by the scripted LMs (chars / 4), 3,891 recorded by the engine.
    Yield: drafted 128/128, validated 128/128, passed filters 127/128 (1 near-duplicate), rolled out, checker
    and validator 127/127 each.
    Utilisation: whole run 0.517, steady state 0.547 (client view 0.583, slots held 0.796); >= 90 % of the
    slots busy during 40 % of the steady state, none in flight during 19 %. Zero-CPU ceilings: waves 0.791,
    pipelined 0.791 (two items per stream: one unlucky stream bounds both). Lost slot-seconds: startup 16.0
    (planner call + 64 plan files), task phases 39.5 + 48.3, filter+store 1.8 + 2.5 (28-39 ms each),
    rollouts 22.6 + 34.8, teardown 3.0. Answers waited 13.4 ms on average for the event loop; the process used
    49 % of a core. Thread hops: DSPy's prepare 902 x 7.0 ms and _price_result 902 x 3.6 ms queue wait,
    execution checks 138 x 7.1 ms, store appends 255 x 2.1 ms. What-if pipelined: 0.638 (whole run 0.600).
    Engine overhead: zero-latency CPU 2.18/2.84/2.26 s, DSPy calls alone 1.56/1.79/1.51 s -> engine 0.74 s =
    0.41 % of 180 s LM time (range 0.34-0.58 %; 5.9 ms per accepted dialogue, 0.82 ms per LM request);
    cProfile: eigendspy 18.9 % of the CPU -> 0.24 % (DSPy 76 %, execution & checkers 8.8 %, role modules'
    own code 5.6 %, scripted LM 3.6 %, engine loop & filters 2.0 %, store 1.5 %, rollout loop 1.0 %).
    Targets: engine overhead < 2 % of LM time: met. >= 90 % of the concurrency busy: NOT met.

Why the utilisation target is missed (each measured with this file's options, same day and machine):
  1. Waves, structurally: at latency 1.0 s (``--latency 1.0``) CPU no longer matters and the run takes
     18.90 s against the zero-CPU wave ideal of 19.00 s: steady state 0.791 = exactly the waves ceiling.
     A wave costs max over streams (task calls + rollout calls) = 4 + 5 round trips while the mean stream
     needs ~7.1. It gets worse with more waves: 64 streams x 8 tasks: waves ceiling 0.646 (some stream
     repairs in every wave; max 6 task calls), whereas the pipelined ceiling rises to 0.854 and tends to 1
     (mean / max calls per stream) as runs get longer.
  2. One process's event loop, at 0.2 s latency: the steady state (0.547) sits 0.24 below its ceiling. All
     streams' answers arrive together; each then needs ~2.5 ms of CPU (76 % DSPy) plus two DSPy thread hops
     (``prepare``, ``_price_result`` via ``asyncio.to_thread``: 7-13 ms and 3.6-4.9 ms of queue wait, GIL
     hand-offs, not pool size: 32 or 128 pool threads did not help), and the engine's own hops (execution
     check, checker, store append with fsync) share the same pool. Running DSPy's two hops inline (a
     monkeypatch, not kept here) lifted waves 0.545 -> 0.637 and pipelined 0.571 -> 0.706.
  3. What fixes it, measured with the what-if: per-stream pipelining at 64 streams gives 0.638 (2 tasks) /
     0.676 (8 tasks, 0.725 while all streams are busy) in one process — better, not enough; at latency 1.0 s
     0.926 while all streams are busy. With 16 streams per process (``--streams 16 --concurrency 16
     --tasks-per-round 8``): waves 0.728 (ceiling 0.738), pipelined 0.891 over the items and 0.952 while all
     streams are busy. So >= 90 % at 64 x 0.2 s needs both: (a) per-stream pipelining in the engine, keeping
     determinism with a commit frontier (a stream's task is filtered once every task before it in canonical
     order has been filtered, its rollouts start right after; later items may be drafted speculatively), and
     (b) <= ~16 streams per process, i.e. the items spread over ~4 worker processes (``RayWorkerPool`` or a
     process pool; 0.16-0.35 of a core per 16 streams here). Smaller: batch the per-wave task-record appends
     into one write + one fsync (28-39 ms per wave with nothing in flight), write the 64 initial plans with one
     fsync (0.03-0.04 s at startup here, more on slow disks).

Run: ``python -m benchmarks.bench_engine [--streams 64 --concurrency 64 --latency 0.2 --tasks-per-round 2
--episodes 1 --domain mock --json out.json]`` (``--no-profile``, ``--no-what-if``, ``--repeats N`` to shorten).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the scripted roles live in tests/ (the benchmark runs from a checkout)
    sys.path.insert(0, str(ROOT))

import dspy  # noqa: E402

from eigendspy.domain import Domain  # noqa: E402
from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.engine import DataEngine, EngineConfig, Roles  # noqa: E402
from eigendspy.records import DialogueRecord, TaskRecord, Usage  # noqa: E402
from eigendspy.store import RunManifest, RunStore  # noqa: E402
from tests.engine.scripted_roles import scripted_roles  # noqa: E402

DEFAULTS = {"streams": 64, "concurrency": 64, "latency": 0.2, "tasks_per_round": 2, "episodes": 1, "rounds": 1,
            "domain": "mock", "num_users": 600, "tasks_per_user": 5, "repeats": 3}
TARGET_UTILISATION = 0.90
TARGET_OVERHEAD = 0.02
ROLE_NAMES = tuple(f.name for f in fields(Roles))
FUNNEL = [("generate", "drafted"), ("validate_task", "validated"), ("filter_task", "passed filters"),
          ("rollout", "rolled out"), ("check", "passed checker"), ("validate_trajectory", "passed validator")]


def now() -> float:
    return time.perf_counter()


# --- in-flight timelines ----------------------------------------------------------------------------------


class Timeline:
    """Intervals during which something was in flight (entered and left on the event-loop thread)."""

    def __init__(self) -> None:
        self.open: list[float] = []
        self.intervals: list[tuple[float, float]] = []
        self.level = 0
        self.peak = 0

    def enter(self) -> float:
        self.level += 1
        self.peak = max(self.peak, self.level)
        return now()

    def leave(self, started: float) -> None:
        self.level -= 1
        self.intervals.append((started, now()))

    def clipped(self, duration: float) -> Timeline:
        """The same intervals cut to ``duration`` from their start: an LM request occupies the server for the
        latency; whatever it spends beyond is the client's event loop not getting to the answer yet."""
        out = Timeline()
        out.intervals = [(a, min(b, a + duration)) for a, b in self.intervals]
        out.peak = self.peak
        return out

    def busy(self, a: float, b: float) -> float:
        """Integral of the in-flight count over [a, b] (item-seconds)."""
        return sum(max(0.0, min(y, b) - max(x, a)) for x, y in self.intervals)

    def time_at_least(self, a: float, b: float, n: int) -> float:
        """Seconds of [a, b] with at least ``n`` in flight."""
        events = sorted([(x, 1) for x, _ in self.intervals] + [(y, -1) for _, y in self.intervals])
        total, level, prev = 0.0, 0, a
        for t, delta in events:
            if t > a:
                if level >= n:
                    total += min(t, b) - prev
                prev = min(t, b)
            if t >= b:
                break
            level += delta
        return total + (max(0.0, b - prev) if level >= n else 0.0)

    def mean_duration(self) -> float:
        return statistics.fmean(b - a for a, b in self.intervals) if self.intervals else 0.0


@dataclass
class Probe:
    """What one instrumented run records."""

    lm: Timeline = field(default_factory=Timeline)  # LM requests in flight (inside the LM engine)
    slots: Timeline = field(default_factory=Timeline)  # concurrency slots held (inside the engine's semaphore)
    lm_requests: Counter = field(default_factory=Counter)
    tokens_in: Counter = field(default_factory=Counter)
    tokens_out: Counter = field(default_factory=Counter)
    waves: list[dict[str, Any]] = field(default_factory=list)
    store_wall_s: float = 0.0
    stores: int = 0
    stream_done: list[float] = field(default_factory=list)  # pipelined what-if: when each stream finished
    plan_save_s: float = 0.0
    plan_saves: int = 0
    recorded: list[tuple[Any, tuple, dict]] | None = None  # (predictor, args, kwargs) when recording
    hops: defaultdict = field(default_factory=lambda: defaultdict(lambda: [0, 0.0, 0.0]))  # n, wait s, run s
    run_start: float = 0.0
    run_end: float = 0.0


class BenchEngine(DataEngine):
    """The real `DataEngine` with timestamps at its phase boundaries and around every slot-holding LM call.

    Role calls go through ``ItemWorker.call`` (``self.driver``; also ``self.worker`` in-process), which takes the
    engine's semaphore around ``fn``; the instance-level wrapper hands it an ``fn`` that counts itself in flight.
    """

    def __init__(self, *args: Any, probe: Probe, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.probe = probe
        worker = self.driver
        original = worker.call
        slots = probe.slots

        async def call(role: str, fn: Callable[[], Awaitable[Any]], usage: Usage) -> Any:
            async def held() -> Any:  # runs inside the semaphore
                started = slots.enter()
                try:
                    return await fn()
                finally:
                    slots.leave(started)

            return await original(role, held, usage)

        worker.call = call

    async def _wave(self, r: int, i: int, plans: Any, failures: Any) -> None:
        wave: dict[str, Any] = {"round": r, "item": i, "start": now()}
        self.probe.waves.append(wave)
        await super()._wave(r, i, plans, failures)
        wave["end"] = now()

    def _filter(self, rec: TaskRecord) -> TaskRecord:
        if self.probe.waves:  # the pipelined schedule has no waves
            self.probe.waves[-1].setdefault("filter_start", now())
        return super()._filter(rec)

    async def _rollout(self, stream: int, rec: TaskRecord, trial: int, failures: Any) -> None:
        if self.probe.waves:
            self.probe.waves[-1].setdefault("rollout_start", now())
        await super()._rollout(stream, rec, trial, failures)

    async def _store(self, record: TaskRecord | DialogueRecord) -> None:
        started = now()
        await super()._store(record)
        self.probe.store_wall_s += now() - started
        self.probe.stores += 1

    def _save_plan(self, name: str, plan: Any) -> None:
        started = now()
        super()._save_plan(name, plan)
        self.probe.plan_save_s += now() - started
        self.probe.plan_saves += 1


class PipelinedEngine(BenchEngine):
    """WHAT-IF, not the engine's behaviour: each stream runs its items back to back (make task, filter, store,
    roll out) with no barrier between streams. Filters see tasks in completion order, so which of two colliding
    tasks is the duplicate depends on timing: this run is not deterministic or exactly resumable. It only
    measures the utilisation that per-stream pipelining would reach on the same workload."""

    async def run(self) -> Any:
        cfg = self.config
        plans = await self._initial_plans()
        wave: dict[str, Any] = {"round": 0, "item": 0, "start": now(), "pipelined": True}
        self.probe.waves.append(wave)
        for r in range(cfg.rounds):
            failures: dict[int, list] = {s: [] for s in range(cfg.streams)}

            async def stream(s: int, r: int = r, failures: dict = failures, plans: list = plans) -> None:
                for i in range(cfg.tasks_per_round):
                    made = await self.worker.make_task(s, r, f"s{s}/r{r}/t{i}", plans[s])
                    rec = DataEngine._filter(self, made)
                    await self._store(rec)
                    if rec.accepted:
                        await asyncio.gather(*(DataEngine._rollout(self, s, rec, k, failures)
                                               for k in range(cfg.episodes_per_task)))
                self.probe.stream_done.append(now())

            await asyncio.gather(*(stream(s) for s in range(cfg.streams)))
            if r + 1 < cfg.rounds:
                plans = await self._reflect(r, plans, failures)
        wave["end"] = now()
        self.store.write_summary()
        return _Result(accepted_dialogues=self.store.summary().kinds["dialogue"].accepted
                       if "dialogue" in self.store.summary().kinds else 0)


@dataclass
class _Result:
    accepted_dialogues: int


def instrument_roles(roles: Roles, probe: Probe) -> Callable[[], None]:
    """Wrap each role LM's async engine (requests in flight, simulated tokens) and, when ``probe.recorded``
    is a list, each role predictor's ``acall`` (to replay the same DSPy calls without the engine).

    Returns a function that removes the wrappers.
    """
    undo: list[Callable[[], None]] = []
    seen: set[int] = set()
    for role in ROLE_NAMES:
        for _, predictor in getattr(roles, role).named_predictors():
            engine = getattr(predictor.lm, "_async_engine_spec", None)
            if engine is not None and id(engine) not in seen:
                seen.add(id(engine))
                original = engine.complete

                async def complete(request: Any, _original: Any = original, _role: str = role) -> Any:
                    started = probe.lm.enter()
                    try:
                        response = await _original(request)
                    finally:
                        probe.lm.leave(started)
                    probe.lm_requests[_role] += 1
                    usage = getattr(response, "usage", None)
                    probe.tokens_in[_role] += getattr(usage, "input_tokens", 0) or 0
                    probe.tokens_out[_role] += getattr(usage, "output_tokens", 0) or 0
                    return response

                engine.complete = complete
                undo.append(lambda e=engine: e.__dict__.pop("complete", None))
            if probe.recorded is not None:
                original_acall = predictor.acall

                async def acall(*args: Any, _original: Any = original_acall, _p: Any = predictor,
                                **kwargs: Any) -> Any:
                    probe.recorded.append((_p, args, kwargs))
                    return await _original(*args, **kwargs)

                predictor.acall = acall
                undo.append(lambda p=predictor: p.__dict__.pop("acall", None))

    def remove() -> None:
        for fn in undo:
            fn()

    return remove


# --- one run ----------------------------------------------------------------------------------------------


@dataclass
class Settings:
    streams: int
    concurrency: int
    latency: float
    tasks_per_round: int
    episodes: int
    rounds: int
    domain: str
    num_users: int
    tasks_per_user: int
    seed: int = 0

    def config(self, **overrides: Any) -> EngineConfig:
        values = dict(domain=self.domain, seed=self.seed, streams=self.streams, rounds=self.rounds,
                      tasks_per_round=self.tasks_per_round, episodes_per_task=self.episodes,
                      concurrency=self.concurrency, schedule="waves")  # the wave analysis below needs waves
        return EngineConfig(**{**values, **overrides})


def load_domain(s: Settings) -> tuple[Domain, str]:
    if s.domain == "mock":
        return (get_domain("mock", num_users=s.num_users, tasks_per_user=s.tasks_per_user),
                f"mock ({s.num_users} users x {s.tasks_per_user} tasks)")
    data = Path(os.environ.get("EIGENDSPY_TAU2_SHARED", "/work/shared/tau2")) / s.domain
    if (data / "db.json").exists():
        return get_domain(s.domain, data_dir=data), f"{s.domain} ({data})"
    return get_domain(s.domain), f"{s.domain} (built-in)"


@dataclass
class RunResult:
    probe: Probe
    wall_s: float
    cpu_s: float
    summary: Any
    tasks: list[TaskRecord]
    dialogues: list[DialogueRecord]
    accepted_dialogues: int


@contextmanager
def thread_hops(probe: Probe) -> Iterator[None]:
    """Time every ``asyncio.to_thread`` hop (DSPy's and the engine's): queue wait until a pool thread runs it
    (the default executor has min(32, cores + 4) threads, and a thread needs the GIL) and run time."""
    original = asyncio.to_thread

    async def to_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        submitted, box = now(), {}

        def run() -> Any:
            box["start"] = now()
            try:
                return fn(*args, **kwargs)
            finally:
                box["end"] = now()

        try:
            return await original(run)
        finally:
            if "end" in box:
                stat = probe.hops[getattr(fn, "__qualname__", repr(fn))]
                stat[0] += 1
                stat[1] += box["start"] - submitted
                stat[2] += box["end"] - box["start"]

    asyncio.to_thread = to_thread  # type: ignore[assignment]
    try:
        yield
    finally:
        asyncio.to_thread = original  # type: ignore[assignment]


def run_engine(domain: Domain, config: EngineConfig, latency: float, workdir: Path, *, record: bool = False,
               profiler: cProfile.Profile | None = None, engine_cls: type[BenchEngine] = BenchEngine,
               hops: bool = False) -> RunResult:
    """One full `DataEngine.run()` on fresh scripted roles in a fresh run directory."""
    probe = Probe(recorded=[] if record else None)
    roles = scripted_roles(latency_s=latency)
    remove = instrument_roles(roles, probe)
    root = Path(tempfile.mkdtemp(dir=workdir))
    store = RunStore.create(root / "run", RunManifest(config=config, seed=config.seed, domain=domain.name))
    engine = engine_cls(domain, roles, store, config, probe=probe)
    gc.collect()
    try:
        cpu0, probe.run_start = time.process_time(), now()
        if profiler is not None:
            profiler.enable()
        with thread_hops(probe) if hops else nullcontext():
            result = asyncio.run(engine.run())
        if profiler is not None:
            profiler.disable()
        probe.run_end, cpu = now(), time.process_time() - cpu0
        summary = store.summary()
        tasks = list(store.iter_records("task"))
        dialogues = list(store.iter_records("dialogue"))
    finally:
        store.close()
        remove()  # a replay of the recorded calls must not be counted or recorded again
    shutil.rmtree(root, ignore_errors=True)
    return RunResult(probe, probe.run_end - probe.run_start, cpu, summary, tasks, dialogues, result.accepted_dialogues)


def replay_cpu(recorded: list[tuple[Any, tuple, dict]], concurrency: int) -> float:
    """CPU seconds of the same DSPy predictor calls (same inputs, same zero-latency LMs) without the engine."""

    async def go() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(p: Any, args: tuple, kwargs: dict) -> None:
            async with gate:
                await p.acall(*args, **kwargs)

        await asyncio.gather(*(one(*call) for call in recorded))

    gc.collect()
    cpu0 = time.process_time()
    asyncio.run(go())
    return time.process_time() - cpu0


# --- analysis ---------------------------------------------------------------------------------------------


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


async def _inline_to_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def profile_run(domain: Domain, config: EngineConfig, workdir: Path) -> tuple[RunResult, pstats.Stats]:
    """A zero-latency run under cProfile (CPU-time timer); ``asyncio.to_thread`` runs inline so the work it
    hands to threads (execution validation, checker scoring, store appends) is profiled too."""
    profiler = cProfile.Profile(time.process_time)
    original = asyncio.to_thread
    asyncio.to_thread = _inline_to_thread  # type: ignore[assignment]
    try:
        run = run_engine(domain, config, 0.0, workdir, profiler=profiler)
    finally:
        asyncio.to_thread = original  # type: ignore[assignment]
    return run, pstats.Stats(profiler)


# --- the benchmark ----------------------------------------------------------------------------------------


def run_benchmark(s: Settings, *, repeats: int = 3, profile: bool = True, what_if: bool = True,
                  log: Any = print) -> dict[str, Any]:
    """Measure one engine run at the simulated latency, CPU at zero latency, and (optionally) a cProfile
    attribution and the per-stream pipelining what-if; returns the JSON record."""
    if s.streams < 1 or s.concurrency < 1 or s.latency <= 0 or repeats < 1:
        raise ValueError("need streams >= 1, concurrency >= 1, latency > 0, repeats >= 1")
    started, load_before = now(), os.getloadavg()
    domain, domain_desc = load_domain(s)
    workdir = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    try:
        warm = Settings(**{**s.__dict__, "streams": 2, "tasks_per_round": 1})
        run_engine(domain, warm.config(), 0.0, workdir)  # imports, first-call caches, pydantic schemas
        log(f"domain: {domain_desc}; streams {s.streams}, concurrency {s.concurrency}, latency {s.latency} s")

        main = run_engine(domain, s.config(), s.latency, workdir, hops=True)
        log(f"  latency run: wall {main.wall_s:.2f} s, cpu {main.cpu_s:.2f} s, "
            f"{sum(main.probe.lm_requests.values())} LM requests, {main.accepted_dialogues} accepted dialogues")

        piped = None
        if what_if:
            piped = run_engine(domain, s.config(schedule="pipelined"), s.latency, workdir)
            log(f"  the engine's pipelined schedule (default): wall {piped.wall_s:.2f} s, "
                f"{sum(piped.probe.lm_requests.values())} LM requests, {piped.accepted_dialogues} accepted dialogues")

        totals, replays = [], []
        workload_same = True
        for k in range(repeats):
            zero = run_engine(domain, s.config(), 0.0, workdir, record=True)
            dspy_cpu = replay_cpu(zero.probe.recorded or [], s.concurrency)
            workload_same &= zero.probe.lm_requests == main.probe.lm_requests
            totals.append(zero.cpu_s)
            replays.append(dspy_cpu)
            log(f"  zero-latency run {k + 1}/{repeats}: cpu {zero.cpu_s:.2f} s (wall {zero.wall_s:.2f} s); "
                f"DSPy calls replayed alone: {dspy_cpu:.2f} s")

        prof = None
        if profile:
            prun, stats = profile_run(domain, s.config(), workdir)
            owners = attribute(stats)
            total_prof = sum(owners.values())
            eigen = sum(v for k, v in owners.items() if k.startswith("eigendspy"))
            prof = {"method": "cProfile (process-time timer) of one zero-latency run, asyncio.to_thread inlined; "
                              "own time of shared code (stdlib, pydantic, builtins) charged to its callers",
                    "profiled_cpu_s": total_prof, "profiled_run_wall_s": prun.wall_s,
                    "seconds_by_owner": owners, "share_by_owner": {k: v / total_prof for k, v in owners.items()},
                    "eigendspy_share": eigen / total_prof if total_prof else 0.0,
                    "event_loop_share": owners.get("event loop", 0.0) / total_prof if total_prof else 0.0,
                    "top_eigendspy_functions_by_owned_cpu": top_functions(stats)}
            log(f"  profiled run: {total_prof:.2f} s CPU under cProfile; eigendspy share {prof['eigendspy_share']:.1%}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    p = main.probe
    lm_requests = sum(p.lm_requests.values())
    acc = main.accepted_dialogues
    store_calls = dict(main.summary.usage.calls)
    lm_time = lm_requests * s.latency
    engine_cpu = [t - r for t, r in zip(totals, replays, strict=True)]
    engine_med = statistics.median(engine_cpu)
    total_med = statistics.median(totals)
    overhead = {
        "method": "engine CPU = CPU of a zero-latency run of the same workload (process_time, all threads) minus "
                  "the CPU of the same DSPy predictor calls (recorded inputs, same zero-latency scripted LMs) "
                  "replayed without the engine; LM time = LM requests x latency",
        "total_cpu_s": totals, "dspy_calls_cpu_s": replays, "engine_cpu_s": engine_cpu,
        "engine_cpu_s_median": engine_med,
        "engine_cpu_ms_per_lm_request": 1000 * engine_med / lm_requests if lm_requests else None,
        "engine_cpu_ms_per_accepted_dialogue": 1000 * engine_med / acc if acc else None,
        "total_cpu_ms_per_lm_request": 1000 * total_med / lm_requests if lm_requests else None,
        "lm_time_s": lm_time,
        "engine_pct_of_lm_time": 100 * engine_med / lm_time if lm_time else None,
        "engine_pct_of_lm_time_range": [100 * min(engine_cpu) / lm_time, 100 * max(engine_cpu) / lm_time]
        if lm_time else None,
        "engine_cpu_share_of_latency_run_wall": engine_med / main.wall_s if main.wall_s else None,
        "latency_run_cpu_s": main.cpu_s,
        "same_workload_in_every_run": workload_same,
        "profile": prof,
    }
    if prof is not None:
        overhead["engine_cpu_s_profile_estimate"] = prof["eigendspy_share"] * total_med
        overhead["engine_pct_of_lm_time_profile_estimate"] = (100 * prof["eigendspy_share"] * total_med / lm_time
                                                              if lm_time else None)
    cpu_per_request = total_med / lm_requests if lm_requests else 0.0
    util = utilisation(main, s.concurrency, s.latency)
    util["ceilings"]["cpu_bound_one_process"] = (min(1.0, s.latency / (s.concurrency * cpu_per_request))
                                                 if cpu_per_request else None)
    util["ideal_wall_s_waves"] = (util["ceilings"]["wave_steps"] + 1) * s.latency  # + the planner call
    util["startup_plan_saves_s"] = p.plan_save_s
    util["store_appends_wall_s"] = p.store_wall_s
    util["latency_run_cpu_share_of_one_core"] = main.cpu_s / main.wall_s if main.wall_s else None
    util["thread_hops"] = {name: {"count": n, "mean_wait_ms": 1000 * wait / n, "mean_run_ms": 1000 * run / n}
                           for name, (n, wait, run) in sorted(p.hops.items(), key=lambda kv: -kv[1][1])}
    util["thread_hops_note"] = ("asyncio.to_thread calls in the latency run: DSPy makes two per LM request "
                                "(prepare, _price_result), the engine one per execution check, checker score and "
                                "store append; wait = from submission until a pool thread started it")
    if piped is not None:
        pu = utilisation(piped, s.concurrency, s.latency)
        busy = [x for x in pu["segments"] if x["segment"].endswith("all streams busy")]
        util["what_if_pipelined"] = {
            "note": "PipelinedEngine in this file: streams run their items back to back with no wave barrier; "
                    "filters see tasks in completion order (not deterministic): a measurement, not the engine",
            "wall_s": piped.wall_s, "cpu_s": piped.cpu_s, "accepted_dialogues": piped.accepted_dialogues,
            "lm_requests": sum(piped.probe.lm_requests.values()),
            "whole_run": pu["whole_run"], "steady_state": pu["steady_state"],
            "all_streams_busy": (busy[0]["mean_in_flight"] / s.concurrency) if busy else None,
            "all_streams_busy_s": busy[0]["seconds"] if busy else None,
            "client_steady_state": pu["client_steady_state"], "mean_answer_wait_ms": pu["mean_answer_wait_ms"],
            "segments": pu["segments"]}
    kinds = main.summary.kinds
    dup = sum(r.count for r in kinds["task"].top_reasons if "near-duplicate" in r.reason) if "task" in kinds else 0
    result = {
        "benchmark": "engine",
        "date": datetime.date.today().isoformat(),
        "machine": {"cores": _cores(), "python": platform.python_version(), "platform": platform.platform(),
                    "dspy": getattr(dspy, "__version__", "?"), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "settings": {**s.__dict__, "domain_desc": domain_desc, "repeats": repeats, "profile": profile},
        "run": {"wall_s": main.wall_s, "cpu_s": main.cpu_s, "accepted_dialogues": acc,
                "accepted_tasks": kinds["task"].accepted if "task" in kinds else 0,
                "store_wall_s": p.store_wall_s, "stores": p.stores},
        "calls": {
            "lm_requests_by_role": dict(p.lm_requests), "lm_requests": lm_requests,
            "engine_calls_by_role": store_calls,
            "engine_calls_note": "store summary usage: one per attempt of a role call, planner/reflector excluded",
            "per_accepted_dialogue_by_role": {k: v / acc for k, v in p.lm_requests.items()} if acc else {},
            "per_accepted_dialogue": lm_requests / acc if acc else None,
        },
        "tokens": tokens_section(main.summary.usage, p, acc),
        "yield": {"tasks": _kind(kinds.get("task")), "dialogues": _kind(kinds.get("dialogue")),
                  "funnel": funnel(main.summary), "duplicate_task_rejections": dup},
        "utilisation": util,
        "overhead": overhead,
        "total_s": now() - started,
        "targets": {"utilisation": TARGET_UTILISATION, "utilisation_met": util["steady_state"] >= TARGET_UTILISATION,
                    "overhead": TARGET_OVERHEAD,
                    "overhead_met": bool(lm_time and engine_med / lm_time < TARGET_OVERHEAD)},
    }
    return result


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


def _kind(ks: Any) -> dict[str, Any]:
    if ks is None:
        return {}
    return {"total": ks.total, "accepted": ks.accepted, "rejected": ks.rejected, "stages": ks.stages,
            "yield": ks.accepted / ks.total if ks.total else None,
            "top_reasons": [{"reason": r.reason[:120], "count": r.count} for r in ks.top_reasons[:5]]}


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    parser.add_argument("--repeats", type=int, default=DEFAULTS["repeats"], help="zero-latency CPU measurements")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile cross-check")
    parser.add_argument("--no-what-if", action="store_true", help="skip the per-stream pipelining what-if run")
    parser.add_argument("--json", type=Path, default=None, help="write the result record here")
    args = parser.parse_args(argv)
    settings = Settings(streams=args.streams, concurrency=args.concurrency, latency=args.latency,
                        tasks_per_round=args.tasks_per_round, episodes=args.episodes, rounds=args.rounds,
                        domain=args.domain, num_users=args.num_users, tasks_per_user=args.tasks_per_user)
    result = run_benchmark(settings, repeats=args.repeats, profile=not args.no_profile, what_if=not args.no_what_if)
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
