"""Instrumentation of the engine benchmark: in-flight timelines, the probe one run fills, the `DataEngine`
subclass with timestamps at its phase boundaries, the per-stream pipelining what-if, and the wrappers around the
role LMs and ``asyncio.to_thread``."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from eigendspy.core.records import DialogueRecord, TaskRecord, Usage  # noqa: E402
from eigendspy.engine.config import Roles  # noqa: E402
from eigendspy.engine.engine import DataEngine  # noqa: E402

ROLE_NAMES = tuple(f.name for f in fields(Roles))


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
