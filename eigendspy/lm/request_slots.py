"""Request slots: a concurrency limit held only while an LM request is in flight.

Why: the data engine promises a model server at most ``concurrency`` requests at once. Holding a
slot around a whole role call (prompt formatting, DSPy's thread hops, parsing, the execution check
inside a validator, tool calls between turns) keeps slots busy with CPU work while the server sits
idle: measured on 2 shared cores at 200 ms latency, 0.89 of the slots were held but only 0.74 had a
request at the model. With the slot taken inside the LM's ``acall`` — the request itself — the
same limit holds and every held slot is a request in flight.

How: the caller (`eigendspy.engine.items.ItemWorker`) opens a `request_slots` scope; an LM whose
class mixes in `SlotLimited` takes a slot from the scope's `RequestSlots` around each ``acall``.
Outside any scope (notebooks, optimizers, evaluation) nothing is limited. An LM that does not mix
it in cannot be limited this way, so callers check `limits_requests` over every LM a call may reach
and hold a slot around the whole call otherwise (the old, safe behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import dspy

from eigendspy.lm.direct_calls import direct_acall, is_text_only

__all__ = ["RequestSlots", "SlotLimited", "SlottedLM", "limits_requests", "request_slots"]


class RequestSlots:
    """An asyncio semaphore of ``limit`` slots with a check run once a slot is granted (e.g. a circuit
    breaker: a request queued behind the limit must not start once the breaker has opened)."""

    def __init__(self, limit: int, on_acquire: Callable[[], None] | None = None) -> None:
        if limit < 1:
            raise ValueError(f"request slots need a limit >= 1, got {limit}")
        self.limit = limit
        self._semaphore = asyncio.Semaphore(limit)
        self._on_acquire = on_acquire

    async def __aenter__(self) -> RequestSlots:
        await self._semaphore.acquire()
        if self._on_acquire is not None:
            try:
                self._on_acquire()
            except BaseException:
                self._semaphore.release()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


_current: ContextVar[RequestSlots | None] = ContextVar("eigendspy_request_slots", default=None)


@contextlib.contextmanager
def request_slots(slots: RequestSlots | None) -> Iterator[None]:
    """Every `SlotLimited` LM request made in this scope (tasks started in it too) takes a slot of ``slots``."""
    token = _current.set(slots)
    try:
        yield
    finally:
        _current.reset(token)


class SlotLimited:
    """Mixin for a ``dspy.BaseLM`` subclass: ``acall`` (one request, with DSPy's own preparation, cache lookup
    and retries of that request) holds a slot of the current `request_slots` scope.

    ``acall``, not ``aforward``: DSPy 3.4 runs a managed LM's request through its engine from ``acall`` and treats
    a subclass that overrides ``aforward`` as a deprecated legacy plugin (a different code path)."""

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        slots = _current.get()
        if slots is None:
            return await self._acall_unslotted(prompt, messages, kwargs)
        async with slots:
            return await self._acall_unslotted(prompt, messages, kwargs)

    async def _acall_unslotted(self, prompt: Any, messages: Any, kwargs: dict[str, Any]) -> Any:
        # a text-only call skips DSPy's two thread hops (`eigendspy.lm.direct_calls`); anything else is stock
        if is_text_only(self, prompt, messages, kwargs):
            return await direct_acall(self, prompt, messages=messages, **kwargs)
        return await super().acall(prompt, messages=messages, **kwargs)  # type: ignore[misc]


class SlottedLM(SlotLimited, dspy.LM):
    """``dspy.LM`` whose async requests respect the engine's request slots (what `build_role_lms` makes)."""


def limits_requests(lms: Iterable[Any]) -> bool:
    """Whether every LM a call may reach takes request slots itself (``None`` = DSPy's configured LM)."""
    resolved = [lm if lm is not None else dspy.settings.lm for lm in lms]
    return all(lm is None or isinstance(lm, SlotLimited) for lm in resolved)
