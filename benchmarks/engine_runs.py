"""One run of the engine benchmark: settings, the domain, and a full `DataEngine.run()` on fresh scripted roles,
in-process or with the items on worker processes (`ProcessWorkerPool`), optionally profiled in every process."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import pstats
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # worker processes import this checkout's benchmarks package too
    sys.path.insert(0, str(ROOT))

from benchmarks.engine_probe import (  # noqa: E402
    ProfileHook,
    RecordingRoles,
    SlotHook,
    last_end_by_process,
    now,
    profiled,
    read_requests,
    slots_logged,
)
from eigendspy.core.domain import Domain  # noqa: E402
from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.engine.config import EngineConfig  # noqa: E402
from eigendspy.engine.engine import DataEngine  # noqa: E402
from eigendspy.engine.processes import ProcessWorkerPool, worker_count  # noqa: E402
from eigendspy.engine.remote_items import DomainSpec  # noqa: E402
from eigendspy.engine.store.store import RunManifest, RunStore  # noqa: E402


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
    workers: str | int = "auto"
    seed: int = 0

    def config(self, **overrides: Any) -> EngineConfig:
        values = dict(domain=self.domain, seed=self.seed, streams=self.streams, rounds=self.rounds,
                      tasks_per_round=self.tasks_per_round, episodes_per_task=self.episodes,
                      concurrency=self.concurrency, workers=self.workers)  # the engine's default schedule
        return EngineConfig(**{**values, **overrides})

    def domain_spec(self) -> DomainSpec:
        if self.domain == "mock":
            return ("mock", None, {"num_users": self.num_users, "tasks_per_user": self.tasks_per_user})
        data = Path(os.environ.get("EIGENDSPY_TAU2_SHARED", "/work/shared/tau2")) / self.domain
        return (self.domain, str(data) if (data / "db.json").exists() else None, {})


def load_domain(s: Settings) -> tuple[Domain, str]:
    name, data_dir, kwargs = s.domain_spec()
    desc = (f"mock ({s.num_users} users x {s.tasks_per_user} tasks)" if name == "mock"
            else f"{name} ({data_dir or 'built-in'})")
    return get_domain(name, data_dir=data_dir, **kwargs), desc


@dataclass
class RunResult:
    mode: str
    workers: int
    startup_s: float  # spawning the workers and building their roles (0 in-process)
    run_start: float
    run_end: float
    driver_cpu_s: float
    requests: list[tuple[float, float, str]]
    slots: list[tuple[float, float, str]]  # role calls in progress (not in profiled runs)
    summary: Any
    accepted_tasks: dict[str, str]  # work key -> sha256 of the accepted task's JSON
    accepted_dialogues: dict[str, str]  # work key -> sha256 of (task id, every message)
    profiles: dict[str, pstats.Stats | None] = field(default_factory=dict)  # "driver", "workers"
    profiled_cpu_s: dict[str, float] = field(default_factory=dict)
    idle_before_end_s: list[float] = field(default_factory=list)  # per process: run end - its last LM request's end

    @property
    def wall_s(self) -> float:
        return self.run_end - self.run_start


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def run_engine(s: Settings, domain: Domain, mode: str, workdir: Path, *, latency: float | None = None,
               profile: bool = False, **overrides: Any) -> RunResult:
    """One full `DataEngine.run()` in a fresh run directory; ``mode`` is ``in-process`` or ``processes``
    (``Settings.workers`` worker processes, resolved like the engine's front ends do)."""
    config = s.config(**overrides)
    root = Path(tempfile.mkdtemp(dir=workdir))
    logs, profs = root / "lm", root / "prof"
    logs.mkdir()
    profs.mkdir()
    factory = RecordingRoles(s.latency if latency is None else latency, str(logs))
    n = worker_count(config, can_rebuild_roles=True) if mode == "processes" else 1
    pool = None
    store = RunStore.create(root / "run", RunManifest(config=config, seed=config.seed, domain=domain.name))
    try:
        started = now()
        if mode == "processes":
            pool = ProcessWorkerPool.start(s.domain_spec(), factory, config, num_workers=n,
                                           hook=ProfileHook(str(profs)) if profile else SlotHook(str(logs)))
        startup = now() - started if pool is not None else 0.0
        engine = DataEngine(domain, factory(), store, config, worker=pool)
        gc.collect()
        with profiled(profs / "driver.prof") if profile else nullcontext({}) as prof, \
                nullcontext() if profile else slots_logged(logs):
            cpu0, run_start = time.process_time(), now()
            asyncio.run(engine.run())
            run_end, cpu = now(), time.process_time() - cpu0
        if pool is not None:
            pool.close()  # the workers write their profiles as they stop
        summary = store.summary()
        tasks = {r.work_key: _digest(r.task.model_dump_json())
                 for r in store.iter_records("task", accepted=True) if r.task is not None}
        dialogues = {d.work_key: _digest(d.task_id + "".join(f"\x00{m.role}\x01{m.content or ''}"
                                                            for m in d.messages))
                     for d in store.accepted_dialogues()}
    finally:
        store.close()
        if pool is not None:
            pool.close()
    profiles: dict[str, pstats.Stats | None] = {}
    cpu_by: dict[str, float] = {}
    if profile:
        profiles["driver"] = pstats.Stats(str(profs / "driver.prof"))
        cpu_by["driver"] = prof["cpu_s"]
        worker_files = sorted(profs.glob("worker-*.prof"))
        if worker_files:
            profiles["workers"] = pstats.Stats(*map(str, worker_files))
    idle = sorted(run_end - t for t in last_end_by_process(logs).values())
    result = RunResult(mode, n, startup, run_start, run_end, cpu, read_requests(logs), read_requests(logs, "slots"),
                       summary, tasks, dialogues, profiles, cpu_by, idle)
    shutil.rmtree(root, ignore_errors=True)
    return result
