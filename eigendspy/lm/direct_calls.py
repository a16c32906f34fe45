"""DSPy's async LM call without its two thread hops, for the calls that need neither.

Why: DSPy 3.4's ``BaseLM.acall`` runs the request preparation in a worker thread (it may read local
media files) and its ``aexecute`` prices the answer in another (a metadata lookup). For a text-only
prompt neither touches a file: the preparation is pure, and the price table is read once (off the loop,
by DSPy's own ``apreload``) and is in memory after that. Each hop still wakes a pool thread and then the
event loop (futexes, a self-pipe write, two context switches). Measured on 2 shared cores at 200 ms
simulated latency, 64 episodes in flight (the orchestrator benchmark, four interleaved pairs), CPU per LM
call went from 1.47-1.69 to 1.24-1.39 ms without them, and they stretch each call's wall time when the
loop is busy.

What runs inline: `prepare` for a text-only call (a ``str`` prompt or messages whose contents are strings),
and, when the call is uncached, single-candidate and not streamed, DSPy's own attempt, retry and pricing
steps. Everything else (media, cached calls whose lookups read the disk cache, ``n > 1``, streaming, an
explicit ``Request``) takes DSPy's stock path unchanged. The steps are DSPy's functions, called in DSPy's
order; only the thread hops are left out. `available` is False if a DSPy release renames them, and then
every call takes the stock path (tests assert the fast path is live on the pinned DSPy).
"""

from __future__ import annotations

import asyncio
from typing import Any

import dspy
from dspy.clients import execution as _execution
from dspy.clients._deprecation import warn_legacy_lm, warn_openai_messages
from dspy.clients.model_metadata import apreload
from dspy.utils.callback import with_callbacks

__all__ = ["available", "direct_acall", "is_text_only"]

_STEPS = ("prepare", "aexecute", "finalize", "error_boundary", "_engine", "_Attempt", "_aattempt", "_retryable",
          "_delay", "_price_result", "_hint_responses_api", "_account_failed_call", "combine")

available: bool = all(hasattr(_execution, name) for name in _STEPS)
"""Whether this DSPy has the steps `direct_acall` runs (else callers use the stock ``acall``)."""


def is_text_only(lm: Any, prompt: Any, messages: Any, kwargs: dict[str, Any]) -> bool:
    """A call `direct_acall` may take: a ``dspy.LM``, no explicit ``Request``, text contents only."""
    if not available or not isinstance(lm, dspy.LM) or "request" in kwargs:
        return False
    if messages is None:
        return prompt is None or isinstance(prompt, str)
    return prompt is None and isinstance(messages, list) and all(
        isinstance(m, dict) and (m.get("content") is None or isinstance(m.get("content"), str)) for m in messages)


async def _execute_inline(lm: Any, call: Any) -> Any:
    """DSPy's ``aexecute`` for an uncached, single-candidate, unstreamed managed call, pricing on the loop."""
    x = _execution
    backend, request, provider = x._engine(lm, call, True)
    results: list[Any] = []
    retries = lm.num_retries
    try:
        for attempt in range(retries + 1):
            state = x._Attempt()
            try:
                with x.error_boundary(lm.model, provider=provider, unexpected=True):
                    await x._aattempt(lm, call, backend, request, provider, state, results)
                break
            except Exception as exc:
                if not x._retryable(state, exc, attempt, retries):
                    raise
                await asyncio.sleep(x._delay(exc, attempt))
        if request is not None:
            if provider is not None:
                await apreload()  # DSPy's price table: read once, off the loop (a no-op once loaded)
            x._price_result(lm, state.result, state.response, provider, request)
        return results[0] if len(results) == 1 else x.combine(results, model_type=lm.model_type)
    except BaseException as exc:
        x._hint_responses_api(lm, exc)
        x._account_failed_call(lm, results, exc)
        raise


@with_callbacks
async def direct_acall(self: Any, prompt: str | None = None, *, messages: list[dict[str, Any]] | None = None,
                       **kwargs: Any) -> Any:
    """``self.acall`` (``self`` an LM) for a call `is_text_only` accepted: the same preparation, execution,
    history, usage and callbacks as DSPy's, without the thread hops (see the module docstring). The first
    parameter is named ``self`` so callbacks see the same inputs as for DSPy's ``acall``."""
    call = _execution.prepare(self, prompt, messages, kwargs, asynchronous=True)
    if not call.managed:
        warn_legacy_lm()
    warn_openai_messages(self, messages)
    inline = call.managed and not call.cache and call.n == 1 and dspy.settings.send_stream is None
    result = await (_execute_inline(self, call) if inline else _execution.aexecute(self, call))
    return _execution.finalize(self, call, result)
