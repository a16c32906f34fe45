"""Local scale-out: the engine's items (task making, episodes) on N worker processes of this machine.

Why processes: one Python process spends ~1-3 ms of CPU per LM call (DSPy formatting and parsing, the
engine's own work, thread hand-offs under the GIL), so at 64 streams x 200 ms its single event loop
answers late and the LM slots sit idle. Spread over processes of ~16 streams each, every event loop
keeps up. `EngineConfig.workers` decides when this is the default (`worker_count`).

What stays the same: like `eigendspy.engine.ray.RayWorkerPool`, the driver keeps everything
order-dependent (plans, filters, the store) and each worker runs the same item code
(`eigendspy.engine.remote_items.RemoteItems`: the domain from the same ``get_domain`` arguments, the roles
from a picklable factory) with the same seeds, so records are identical to in-process ones. The configured
concurrency is split over the workers, so as many LM requests are in flight in total as in-process, and each
item goes to the least loaded worker with room (`ProcessWorkerPool._dispatch`), so no share idles while
another worker queues.

Transport: one duplex pipe per worker carrying JSON requests and answers. Each worker runs one asyncio loop
with many items in flight (a thread reads its pipe); on the driver, a reader thread per worker resolves the
futures the engine awaits. A worker that exits (crash, OOM kill) fails every item in flight on it, and every
later one, with `WorkerCrashedError` naming the worker, its pid and its exit code: never a hang. An item that
raises in a worker raises `WorkerItemError` with the worker's traceback (`LMUnavailableError` keeps its type
and role, so front ends can still name the failing endpoint).

```python
factory = functools.partial(roles_from_config, lm_config)      # picklable: each worker builds its own LMs
with ProcessWorkerPool.start(("mock", None, {}), factory, config, num_workers=4) as pool:
    result = asyncio.run(DataEngine(domain, factory(), store, config, worker=pool).run())
```
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eigendspy.core.records import DialogueRecord, TaskRecord
from eigendspy.engine.remote_items import CompiledSnapshot, DomainSpec, snapshot_compiled
from eigendspy.engine.worker_process import call_soon, child_main
from eigendspy.lm.resilience import LMUnavailableError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from eigendspy.core.plans import PlanPair
    from eigendspy.engine.config import EngineConfig, Roles

STREAMS_PER_WORKER = 16
"""Streams one worker process serves under ``workers="auto"`` (one event loop keeps up with ~16 x 200 ms)."""
ITEMS_PER_SLOT = 2
"""Items a worker may hold per LM slot of its share: an item spends part of its time on CPU between requests,
so a little more work than slots keeps the slots full; much more would only queue inside one worker."""


class WorkerCrashedError(RuntimeError):
    """A worker process exited while the engine still needed it (items in flight fail with this)."""


class WorkerItemError(RuntimeError):
    """An item raised in a worker process; the message carries the worker's traceback."""


def worker_count(config: EngineConfig, *, can_rebuild_roles: bool) -> int:
    """How many worker processes ``config.workers`` asks for (1: run the items in-process).

    ``"auto"``: ``max(2, ceil(streams / 16))`` processes, at most ``max(4, CPUs)``, when there are at least 16
    streams and the roles can be rebuilt in a child (``can_rebuild_roles``: a picklable roles factory is
    given, i.e. API or scripted LMs); 1 otherwise — fewer streams gain nothing, and an embedded local
    model must not load its weights once per process. An integer is taken as it is (at most one worker
    per stream and per LM slot); more than 1 without ``can_rebuild_roles`` is an error.
    """
    most = min(config.streams, config.concurrency)  # every worker needs a stream and an LM slot
    if config.workers == "auto":
        if config.streams < STREAMS_PER_WORKER or not can_rebuild_roles:
            return 1
        return min(max(2, math.ceil(config.streams / STREAMS_PER_WORKER)), max(4, os.cpu_count() or 1), most)
    n = min(int(config.workers), most)
    if n > 1 and not can_rebuild_roles:
        raise ValueError(f"workers={config.workers} needs roles that a worker process can rebuild (a picklable "
                         "roles factory); these roles (e.g. the embedded local model) run in-process: use workers=1")
    return max(1, n)


def concurrency_shares(total: int, n: int) -> list[int]:
    """Split ``total`` LM slots over ``n`` workers as evenly as possible (each gets at least 1)."""
    return [max(1, total // n + (1 if i < total % n else 0)) for i in range(n)]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is built from (pickled once into the child by the spawn start method)."""

    domain_spec: DomainSpec
    roles_factory: Callable[[], Roles]
    config: EngineConfig
    compiled: CompiledSnapshot | None
    hook: Callable[[int], AbstractContextManager[Any]] | None


class ProcessWorkerPool:
    """N spawned worker processes; the same two async methods as `ItemWorker` (and `RayWorkerPool`).

    Close it (``close()`` or ``with``) when the run ends: workers finish nothing further and exit.
    """

    def __init__(self, workers: list[_Worker]) -> None:
        if not workers:
            raise ValueError("a process worker pool needs at least one worker")
        self.workers = workers
        self._room: tuple[asyncio.AbstractEventLoop, asyncio.Condition] | None = None

    @classmethod
    def start(cls, domain_spec: DomainSpec, roles_factory: Callable[[], Roles], config: EngineConfig, *,
              num_workers: int, compiled: str | Path | None = None,
              hook: Callable[[int], AbstractContextManager[Any]] | None = None,
              start_timeout_s: float = 600.0) -> ProcessWorkerPool:
        """Spawn ``num_workers`` processes and wait until each has built its domain and roles.

        Args:
            domain_spec: ``(name, data_dir, get_domain kwargs)``: the driver's domain must be built the same way.
            roles_factory: A picklable zero-argument callable returning the `Roles` (e.g.
                ``functools.partial(roles_from_config, lm_config)``, or `scripted_roles_factory` in tests).
            config: The run's config; worker ``i`` runs it with its share of ``config.concurrency``.
            compiled: A folder of compiled ``<role>.json`` programs every worker loads (the driver's roles should too).
            hook: A picklable callable ``hook(worker_index)`` returning a context manager each worker holds
                while it serves (e.g. a profiler that writes its stats on exit); entered after the roles are built.
            start_timeout_s: How long a worker may take to import and build its roles.

        Raises:
            WorkerCrashedError: a worker exited or failed while starting (its traceback in the message).
        """
        snapshot = snapshot_compiled(compiled)
        ctx = multiprocessing.get_context("spawn")  # no fork: the driver may hold threads, locks and an event loop
        workers: list[_Worker] = []
        try:
            for i, share in enumerate(concurrency_shares(config.concurrency, num_workers)):
                spec = WorkerSpec(domain_spec, roles_factory, config.model_copy(update={"concurrency": share}),
                             snapshot, hook)
                ours, theirs = ctx.Pipe(duplex=True)
                process = ctx.Process(target=child_main, args=(theirs, i, spec), daemon=True,
                                      name=f"eigendspy-item-worker-{i}")
                process.start()
                theirs.close()  # only the child holds its end: its exit is then EOF here
                workers.append(_Worker(i, process, ours, capacity=ITEMS_PER_SLOT * share))
            deadline = time.monotonic() + start_timeout_s
            for worker in workers:  # they start in parallel; wait for each in turn
                worker.wait_ready(deadline)
        except BaseException:
            if workers:
                cls(workers).close()
            raise
        return cls(workers)

    async def _dispatch(self, op: str, **args: Any) -> str:
        """Run one item on the least loaded worker that has room, waiting (first come, first served) until one has.

        Why not a fixed stream -> worker map: items differ in length (a repaired task, a long episode), so
        pinned workers run dry at different times and their share of the LM slots idles while another
        worker still queues; handing each item to whichever worker has room keeps every share busy."""
        loop = asyncio.get_running_loop()
        if self._room is None or self._room[0] is not loop:
            self._room = (loop, asyncio.Condition())
        room = self._room[1]
        async with room:
            worker = await room.wait_for(self._least_loaded)  # the predicate's value: a worker with room
            worker.outstanding += 1
        try:
            return await worker.request(op, **args)
        finally:
            worker.outstanding -= 1
            async with room:
                room.notify()

    def _least_loaded(self) -> _Worker | None:
        open_ = [w for w in self.workers if w.outstanding < w.capacity]
        return min(open_, key=lambda w: w.outstanding / w.capacity) if open_ else None

    async def make_task(self, stream: int, r: int, key: str, plan: PlanPair) -> TaskRecord:
        text = await self._dispatch("make_task", stream=stream, r=r, key=key, plan_json=plan.model_dump_json())
        return TaskRecord.model_validate_json(text)

    async def episode(self, rec: TaskRecord, trial: int, key: str) -> DialogueRecord:
        text = await self._dispatch("episode", rec_json=rec.model_dump_json(), trial=trial, key=key)
        return DialogueRecord.model_validate_json(text)

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask every worker to stop (items still in flight are cancelled), wait, then terminate stragglers."""
        for worker in self.workers:
            worker.ask_to_close()
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            worker.finish(max(0.0, deadline - time.monotonic()))

    shutdown = close  # the name `RayWorkerPool` uses

    def __enter__(self) -> ProcessWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Worker:
    """The driver's side of one worker process: its pipe, its pending futures and the thread that reads answers."""

    def __init__(self, index: int, process: Any, conn: Connection, capacity: int = 1) -> None:
        self.index, self.process, self.conn = index, process, conn
        self.capacity, self.outstanding = capacity, 0  # items it may hold / holds (`ProcessWorkerPool._dispatch`)
        self.pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[str]]] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()  # pending and failure
        self.send_lock = threading.Lock()
        self.failure: str | None = None
        self.closing = False
        self.reader: threading.Thread | None = None

    def describe(self) -> str:
        code = self.process.exitcode
        how = "is still running" if code is None else (
            f"was killed by signal {-code}" if code < 0 else f"exited with code {code}")
        return f"item worker {self.index} (pid {self.process.pid}) {how}"

    def wait_ready(self, deadline: float) -> None:
        while not self.conn.poll(0.05):
            if not self.process.is_alive() and not self.conn.poll(0):
                self.process.join(1)
                raise WorkerCrashedError(f"{self.describe()} while starting")
            if time.monotonic() > deadline:
                raise WorkerCrashedError(f"{self.describe()} but did not finish starting in time")
        try:
            msg = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            self.process.join(1)
            raise WorkerCrashedError(f"{self.describe()} while starting") from exc
        if "error" in msg:
            raise WorkerCrashedError(f"item worker {self.index} could not start: {_remote_error(msg)}")
        self.reader = threading.Thread(target=self._read, daemon=True, name=f"eigendspy-pool-reader-{self.index}")
        self.reader.start()

    async def request(self, op: str, **args: Any) -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        with self.lock:
            if self.failure is not None:
                raise WorkerCrashedError(self.failure)
            rid = next(self.ids)
            self.pending[rid] = (loop, future)
        if not self._send({"id": rid, "op": op, "args": args}):
            with self.lock:
                self.pending.pop(rid, None)
            await asyncio.to_thread(self.process.join, 1)  # its exit code for the message, off the loop
            raise WorkerCrashedError(self.failure or f"{self.describe()}; its pipe is closed")
        try:
            return await future
        except asyncio.CancelledError:
            self._send({"id": rid, "op": "cancel"})  # the engine gave up on it: stop the work there too
            with self.lock:
                self.pending.pop(rid, None)
            raise

    def _send(self, msg: dict[str, Any]) -> bool:
        try:
            with self.send_lock:
                self.conn.send_bytes(json.dumps(msg).encode())
            return True
        except (OSError, ValueError):  # broken pipe, or closed here
            return False

    def _read(self) -> None:
        while True:
            try:
                msg = json.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                break
            with self.lock:
                entry = self.pending.pop(msg["id"], None)
            if entry is not None:
                call_soon(entry[0], _settle, entry[1], msg, self.index)
        self.process.join(5)  # the pipe closed: the worker has exited (or is about to)
        reason = "the worker pool was closed" if self.closing else (
            f"{self.describe()}; the items it was running are lost (rerun with --resume to redo them)")
        with self.lock:
            self.failure = reason
            entries, self.pending = list(self.pending.values()), {}
        for loop, future in entries:
            call_soon(loop, _fail, future, WorkerCrashedError(reason))

    def ask_to_close(self) -> None:
        self.closing = True
        self._send({"id": 0, "op": "close"})

    def finish(self, timeout_s: float) -> None:
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.reader is not None:
            self.reader.join(5)
        self.conn.close()


def _settle(future: asyncio.Future[str], msg: dict[str, Any], index: int) -> None:
    if future.done():
        return
    if "ok" in msg:
        future.set_result(msg["ok"])
    elif msg.get("type") == "LMUnavailableError":
        future.set_exception(LMUnavailableError(msg["message"], role=msg.get("role")))
    else:
        future.set_exception(WorkerItemError(f"an item failed in item worker {index}: {_remote_error(msg)}"))


def _remote_error(msg: dict[str, Any]) -> str:
    """A worker's error message: its type and text, then its traceback (kept across the process boundary)."""
    return f"{msg['type']}: {msg['message']}\n--- worker traceback ---\n{msg['traceback']}"


def _fail(future: asyncio.Future[str], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
