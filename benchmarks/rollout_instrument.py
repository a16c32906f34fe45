"""Timers for `benchmarks.bench_rollout`: what a rollout spends in the user, the environment and the checker.

Instrumentation lives only in the benchmarks: during a run the user's ``respond``, ``Environment.for_task`` /
``execute`` / ``sync`` and ``Checker.score`` are wrapped with timers (wall and thread CPU; only the outermost
timed call on a thread counts, so the checker's replays are the checker's) and restored afterwards; library
code is untouched. `CountingBackend` adds the left padding of its batches to `HFBackend`'s stats.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from eigendspy.core.environment import Environment
from eigendspy.scoring.checker import Checker
from eigendspy.train.backends.hf import HFBackend

__all__ = ["COMPONENTS", "CountingBackend", "TimedUser", "Timers", "instrumented"]

COMPONENTS = ("user", "environment", "checker")


class Timers:
    """Wall and thread-CPU seconds per component, from any thread; nested timed calls count once (outermost)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.reset()

    def reset(self) -> None:
        self.wall = dict.fromkeys(COMPONENTS, 0.0)
        self.cpu = dict.fromkeys(COMPONENTS, 0.0)
        self.calls = dict.fromkeys(COMPONENTS, 0)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        if getattr(self._local, "active", False):
            yield
            return
        self._local.active = True
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self._local.active = False
            with self._lock:
                self.wall[name] += time.perf_counter() - wall
                self.cpu[name] += time.thread_time() - cpu
                self.calls[name] += 1

    def snapshot(self) -> dict[str, Any]:
        return {"wall_s": dict(self.wall), "cpu_s": dict(self.cpu), "calls": dict(self.calls)}


class TimedUser:
    """Wraps a user participant; its ``respond`` is timed as the ``user`` component.

    Only correct for users that do not await while responding (the oracle user): an awaiting user would
    let other episodes run inside its timed section.
    """

    def __init__(self, inner: Any, timers: Timers) -> None:
        self.inner, self.timers = inner, timers

    async def respond(self, messages: Any, ctx: Any) -> Any:
        with self.timers.section("user"):
            return await self.inner.respond(messages, ctx)


@contextlib.contextmanager
def instrumented(timers: Timers) -> Iterator[Timers]:
    """Time ``Environment.for_task/execute/sync`` and ``Checker.score`` while inside the block; then restore."""
    patched = [(Environment, "for_task", "environment"), (Environment, "execute", "environment"),
               (Environment, "sync", "environment"), (Checker, "score", "checker")]
    saved = [(cls, attr, cls.__dict__[attr]) for cls, attr, _ in patched]

    def timed(fn: Any, name: str) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with timers.section(name):
                return fn(*args, **kwargs)
        return wrapper

    try:
        for (cls, attr, name), (_, _, original) in zip(patched, saved, strict=True):
            if isinstance(original, classmethod):
                setattr(cls, attr, classmethod(timed(original.__func__, name)))
            else:
                setattr(cls, attr, timed(original, name))
        yield timers
    finally:
        for cls, attr, original in saved:
            setattr(cls, attr, original)


class CountingBackend(HFBackend):
    """`HFBackend` that also counts the left padding its batches added.

    Why: a batch pads every prompt to its longest. Without prefix reuse the padding is prefilled with the
    prompts (`HFBackend` counts those in ``stats["prompt_tokens"]``, and what it actually ran through the model
    in ``stats["prefill_tokens"]``); with reuse it is masked cache every decode step still reads. Together
    these counts explain the c1/c8 ratio.
    """

    def __init__(self, model: Any, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(model, tokenizer, **kwargs)
        self.stats.update(padding_tokens=0)

    def generate_batch(self, prompts: list[list[int]], params: Any) -> Any:
        lengths = [len(p) for p in prompts]
        self.stats["padding_tokens"] += max(lengths) * len(lengths) - sum(lengths)
        return super().generate_batch(prompts, params)
