"""LM fault handling for long runs: retries with backoff, and a circuit breaker.

Why: a synthesis run makes thousands of LM calls; one timeout, rate limit or unparsable answer
must cost a retry, not the run — and after the retries, the item is recorded as rejected with
that reason. But an LM that is simply unreachable must stop the run early with one clear message
instead of "rejecting" every remaining item. Each attempt forgets the cached answers it used when it
fails (`eigendspy.lm.cache.discard_on_failure`), so a retry is a fresh question, not a replay.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from eigendspy.lm.cache import discard_on_failure

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LMUnavailableError(RuntimeError):
    """Too many consecutive LM failures: the endpoint is down or misconfigured.

    ``role`` is the role whose call failed last (None when unknown), so a front end that knows
    the role's LM settings can name the endpoint and timeout without parsing the message.
    """

    def __init__(self, message: str, role: str | None = None) -> None:
        super().__init__(message)
        self.role = role

    def __reduce__(self) -> tuple[object, ...]:  # keeps ``role`` across processes (Ray workers)
        return type(self), (str(self), self.role)


class CallFailedError(RuntimeError):
    """An LM-backed call failed after all retries; ``reason`` says why (recorded on the item)."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(f"{role}: {reason}")
        self.role = role
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:  # the default would call __init__ with the message alone
        return type(self), (self.role, self.reason)


def _is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` or what it was raised from is a timeout (the transports name theirs differently).

    Follows the chain a traceback shows: ``__cause__``, else an unsuppressed ``__context__``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            return True
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return False


def describe_failure(exc: BaseException) -> str:
    """A short, stable reason: the exception type and the first line of its message (or its cause's).

    A timeout is said as ``Timeout: <what timed out>``, without the transport's advice on its own
    settings (DSPy's names a Python class): the fix a user has is ``timeout_s`` in the LM config.
    """
    root = exc.__cause__ or exc
    text = str(root).strip().splitlines()[0] if str(root).strip() else ""
    if _is_timeout(exc):
        return f"Timeout: {text.split(';')[0][:200]}" if text else "Timeout"
    return f"{type(root).__name__}: {text[:200]}" if text else type(root).__name__


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures across all callers; any success closes it."""

    def __init__(self, threshold: int = 20) -> None:
        self.threshold = threshold
        self.consecutive = 0
        self.last_reason = ""
        self.last_role: str | None = None

    def success(self) -> None:
        self.consecutive = 0

    def check(self) -> None:
        """Refuse new calls once open (calls already in flight finish on their own)."""
        if self.consecutive >= self.threshold:
            raise LMUnavailableError(
                f"{self.consecutive} LM calls in a row failed (last: {self.last_reason}); check the model id, API "
                "key and endpoint — stopping instead of rejecting every remaining item",
                role=self.last_role,
            )

    def failure(self, reason: str, role: str | None = None) -> None:
        self.consecutive += 1
        self.last_reason = reason
        self.last_role = role
        self.check()


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    role: str,
    attempts: int = 3,
    base_delay: float = 0.05,
    breaker: CircuitBreaker | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``fn()`` up to ``attempts`` times with jittered exponential backoff.

    Raises:
        CallFailedError: after the last attempt (the caller records the item as rejected).
        LMUnavailableError: when the shared circuit breaker opens.
    """
    rng = rng or random.Random()
    reason = "no attempt made"
    for attempt in range(attempts):
        if breaker is not None:
            breaker.check()
        try:
            with discard_on_failure():  # a retry asks the model again instead of replaying the bad answer
                result = await fn()
        except (LMUnavailableError, asyncio.CancelledError):
            raise
        except Exception as exc:  # every LM failure mode is retried the same way
            reason = describe_failure(exc)
            logger.info("%s call failed (attempt %d/%d): %s", role, attempt + 1, attempts, reason)
            if breaker is not None:
                breaker.failure(reason, role)
            if attempt + 1 < attempts:
                await asyncio.sleep(base_delay * (2**attempt) * (0.5 + rng.random()))
            continue
        if breaker is not None:
            breaker.success()
        return result
    raise CallFailedError(role, reason)
