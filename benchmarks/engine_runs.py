"""One run of the engine benchmark: settings, the domain, a full instrumented `DataEngine.run()` on fresh scripted
roles, the replay of its DSPy calls without the engine, and a profiled zero-latency run."""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the scripted roles live in tests/ (the benchmark runs from a checkout)
    sys.path.insert(0, str(ROOT))

from benchmarks.engine_probe import BenchEngine, Probe, RunResult, instrument_roles, now, thread_hops  # noqa: E402
from eigendspy.core.domain import Domain  # noqa: E402
from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.engine.config import EngineConfig  # noqa: E402
from eigendspy.engine.store.store import RunManifest, RunStore  # noqa: E402
from eigendspy.testing.roles import scripted_roles  # noqa: E402


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
                      concurrency=self.concurrency, schedule="waves")  # engine_analysis needs waves
        return EngineConfig(**{**values, **overrides})


def load_domain(s: Settings) -> tuple[Domain, str]:
    if s.domain == "mock":
        return (get_domain("mock", num_users=s.num_users, tasks_per_user=s.tasks_per_user),
                f"mock ({s.num_users} users x {s.tasks_per_user} tasks)")
    data = Path(os.environ.get("EIGENDSPY_TAU2_SHARED", "/work/shared/tau2")) / s.domain
    if (data / "db.json").exists():
        return get_domain(s.domain, data_dir=data), f"{s.domain} ({data})"
    return get_domain(s.domain), f"{s.domain} (built-in)"


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
