"""Instrumentation of the engine benchmark that works the same in-process and in worker processes.

* `RecordingRoles`: a picklable roles factory (the scripted roles of ``eigendspy/testing/roles.py``) whose LMs
  write one line per LM request — start, end (``time.monotonic``, one clock for every process on Linux), role —
  to a file per process. The driver builds its roles from it and every worker process builds its own from it,
  so both schedules are measured by the same code, at the simulated model.
* `SlotHook` / `slots_logged`: the same kind of log for the engine's concurrency slots (``ItemWorker.call`` holds
  one from before DSPy formats the prompt until it has parsed the answer), in each worker and in the driver.
* `ProfileHook`: a picklable per-worker hook (``ProcessWorkerPool.start(hook=...)``) that runs the worker under
  cProfile and writes its stats when the worker stops; `profiled` does the same for the driver.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from eigendspy.engine.config import Roles  # noqa: E402
from eigendspy.testing.roles import scripted_roles  # noqa: E402

ROLE_NAMES = tuple(f.name for f in fields(Roles))


def now() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class RecordingRoles:
    """Scripted roles with ``latency_s`` whose LM requests are logged to ``log_dir/lm-<pid>.tsv``."""

    latency_s: float
    log_dir: str

    def __call__(self) -> Roles:
        roles = scripted_roles(latency_s=self.latency_s)
        # one line per request, line-buffered; open as long as the process and its LMs live
        log = open(Path(self.log_dir) / f"lm-{os.getpid()}.tsv", "a", buffering=1)
        seen: set[int] = set()
        for role in ROLE_NAMES:
            for _, predictor in getattr(roles, role).named_predictors():
                engine = getattr(predictor.lm, "_async_engine_spec", None)
                if engine is None or id(engine) in seen:
                    continue
                seen.add(id(engine))
                original = engine.complete

                async def complete(request: Any, _original: Any = original, _role: str = role) -> Any:
                    started = now()
                    try:
                        return await _original(request)
                    finally:
                        log.write(f"{started}\t{now()}\t{_role}\n")

                engine.complete = complete
        return roles


def read_requests(log_dir: Path, prefix: str = "lm") -> list[tuple[float, float, str]]:
    """Every logged LM request (or, with ``prefix="slots"``, role call): (start, end, role), by start."""
    rows = []
    for path in sorted(Path(log_dir).glob(f"{prefix}-*.tsv")):
        for line in path.read_text().splitlines():
            a, b, role = line.split("\t")
            rows.append((float(a), float(b), role))
    return sorted(rows)


def last_end_by_process(log_dir: Path) -> dict[str, float]:
    """When each process's last LM request ended (by log file): how unevenly the workers ran out of work."""
    out = {}
    for path in sorted(Path(log_dir).glob("lm-*.tsv")):
        ends = [float(line.split("\t")[1]) for line in path.read_text().splitlines()]
        if ends:
            out[path.stem] = max(ends)
    return out


def requests_by_role(rows: list[tuple[float, float, str]]) -> dict[str, int]:
    return dict(Counter(role for _, _, role in rows))


@contextmanager
def slots_logged(log_dir: Path) -> Iterator[None]:
    """Log every role call this process's `ItemWorker`s make (start, end) to ``log_dir/slots-<pid>.tsv``."""
    from eigendspy.engine.items import ItemWorker

    log = open(Path(log_dir) / f"slots-{os.getpid()}.tsv", "a", buffering=1)
    original = ItemWorker.call

    async def call(self: Any, role: str, fn: Callable[[], Any], usage: Any) -> Any:
        async def held() -> Any:  # the role call, inside the engine's retries
            started = now()
            try:
                return await fn()
            finally:
                log.write(f"{started}\t{now()}\t{role}\n")

        return await original(self, role, held, usage)

    ItemWorker.call = call  # type: ignore[method-assign]
    try:
        yield
    finally:
        ItemWorker.call = original  # type: ignore[method-assign]
        log.close()


@dataclass(frozen=True)
class SlotHook:
    """`slots_logged` in each worker process while it serves items."""

    log_dir: str

    def __call__(self, index: int) -> Any:
        return slots_logged(Path(self.log_dir))


async def _inline_to_thread(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@contextmanager
def profiled(path: Path) -> Iterator[dict[str, float]]:
    """cProfile (CPU-time timer) of this process until exit, stats written to ``path``; yields {"cpu_s": ...}.

    ``asyncio.to_thread`` runs inline meanwhile, so the work DSPy and the engine hand to threads (prompt
    preparation, execution checks, store appends) is profiled in the thread that owns it: the profile
    attributes every CPU second of the process (a profiled run is for shares, not for timing).
    """
    profiler = cProfile.Profile(time.process_time)
    original = asyncio.to_thread
    asyncio.to_thread = _inline_to_thread  # type: ignore[assignment]
    out = {"cpu_s": 0.0}
    cpu0 = time.process_time()
    profiler.enable()
    try:
        yield out
    finally:
        profiler.disable()
        out["cpu_s"] = time.process_time() - cpu0
        asyncio.to_thread = original  # type: ignore[assignment]
        profiler.dump_stats(str(path))


@dataclass(frozen=True)
class ProfileHook:
    """Profile each worker process while it serves items: stats to ``out_dir/worker-<i>.prof``."""

    out_dir: str

    @contextmanager
    def __call__(self, index: int) -> Iterator[None]:
        with profiled(Path(self.out_dir) / f"worker-{index}.prof"):
            yield
