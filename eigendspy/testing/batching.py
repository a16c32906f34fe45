"""Batch requests that arrive from many threads, the way a serving engine batches continuously.

Why: a real vLLM server generates for every request in flight at once, so clients see their requests
overlap (and sampled ids that differ slightly from one-at-a-time generation). A test double that
served one request at a time would hide concurrency bugs (an adapter unloaded while another client's
request still names it) and make concurrent clients look slower than they are. Here a worker thread
takes whatever is queued, waits ``window_s`` for company, groups compatible requests by key and runs
each group as one batch while new requests queue up for the next one.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

RunBatch = Callable[[Hashable, list[Any]], list[Any]]
"""``run(key, items) -> results``: one result per item, in order; items of one call share ``key``."""


class RequestBatcher:
    """Run submitted items in batches on one worker thread; `submit` blocks until its item's result.

    Args:
        run: Executes one batch of items that share a key.
        max_batch: Most items in one batch (1 serializes: every request runs alone).
        window_s: How long the first item of a batch waits for others to arrive.
    """

    def __init__(self, run: RunBatch, *, max_batch: int = 8, window_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run, self.max_batch, self.window_s = run, max_batch, window_s
        self.batch_sizes: list[int] = []  # one entry per batch run: how many items it held
        self._queue: queue.Queue[tuple[Hashable, Any, concurrent.futures.Future] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, key: Hashable, item: Any) -> Any:
        """Queue ``item`` and wait for its result (or the exception its batch raised)."""
        with self._start_lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="request-batcher", daemon=True)
                self._worker.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((key, item, future))
        return future.result()

    def close(self) -> None:
        """Stop the worker after the batches already queued (a later `submit` starts a new one)."""
        with self._start_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout=30)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                try:
                    queued = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if queued is None:  # close() arrived while collecting: run what was collected, then stop
                    stop = True
                    break
                batch.append(queued)
            groups: dict[Hashable, list[tuple[Any, concurrent.futures.Future]]] = {}
            for key, item, future in batch:
                groups.setdefault(key, []).append((item, future))
            for key, members in groups.items():
                self._run_group(key, members)
            if stop:
                return

    def _run_group(self, key: Hashable, members: list[tuple[Any, concurrent.futures.Future]]) -> None:
        self.batch_sizes.append(len(members))
        try:
            results = self.run(key, [item for item, _ in members])
        except Exception as exc:  # every request of the failed batch gets the error; the worker lives on
            for _, future in members:
                future.set_exception(exc)
            return
        for (_, future), result in zip(members, results, strict=True):
            future.set_result(result)
