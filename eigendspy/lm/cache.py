"""DSPy's response cache, made safe for runs that talk to several servers and retry bad answers.

Why: DSPy 3.4.1 computes its cache key with ``api_key``, ``api_base`` and ``base_url`` left out
(``dspy.clients.execution.IGNORED_CACHE_KEYS``), so an answer cached from one server is replayed
for the same prompt sent to another (a different checkpoint behind the same model id). And DSPy
stores the LM's raw answer *before* the adapter parses it: an answer that fails to parse stays
cached, so every retry replays the same unparsable answer instead of asking the model again.

`EndpointKeyedCache` keeps DSPy's cache (same stores, same entries) but puts the endpoint into the
key; `discard_on_failure` forgets every answer read or written inside a block that raised, which
`eigendspy.lm.resilience.call_with_retries` wraps around each attempt. Only ``api_key`` stays out
of the key (a secret, and it does not change the answer); ``timeout`` is left out too, because
it bounds the wait, not the answer, and a non-JSON timeout object would silently disable caching.

Limits: requests keyed by an explicit ``dspy.lm15.Request`` (not used by the adapters) carry no
endpoint; a parse failure that a DSPy module handles itself (ChatAdapter's JSON fallback, ReAct's
error feedback) raises nothing, so the answer it could not parse stays cached.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dspy
from dspy.clients.cache import Cache

#: Request keys DSPy leaves out of the cache key that this cache keeps in: where the answer came from.
ENDPOINT_KEYS = ("api_base", "base_url")
#: Request keys that never belong in the key: they change neither the question nor the answer.
UNKEYED = ("api_key", "timeout")

_journal: contextvars.ContextVar[list[tuple[EndpointKeyedCache, str]] | None] = contextvars.ContextVar(
    "eigendspy_cache_journal", default=None)


class EndpointKeyedCache(Cache):
    """DSPy's `Cache` with the endpoint in the key, recording what a `discard_on_failure` block used."""

    def cache_key(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
        ignored = [k for k in (ignored_args_for_cache_key or []) if k not in ENDPOINT_KEYS]
        return super().cache_key(request, [*ignored, *UNKEYED])

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        value = super().get(request, ignored_args_for_cache_key)
        if value is not None:
            self._note(request, ignored_args_for_cache_key)
        return value

    def put(self, request: dict[str, Any], value: Any, ignored_args_for_cache_key: list[str] | None = None,
            enable_memory_cache: bool = True) -> None:
        super().put(request, value, ignored_args_for_cache_key, enable_memory_cache)
        self._note(request, ignored_args_for_cache_key)

    def discard(self, key: str) -> None:
        """Forget one entry in memory and on disk (a no-op when it is absent)."""
        with self._lock:
            self.memory_cache.pop(key, None)
        if self.enable_disk_cache:
            self.disk_cache.delete(key)

    def _note(self, request: dict[str, Any], ignored: list[str] | None) -> None:
        journal = _journal.get()
        if journal is None:
            return
        try:
            journal.append((self, self.cache_key(request, ignored)))
        except Exception:  # DSPy neither caches nor looks up a request it cannot key
            return


def install_endpoint_cache() -> EndpointKeyedCache:
    """Make ``dspy.cache`` endpoint-keyed, keeping its stores and entries (idempotent).

    Entries written by plain DSPy before this call were keyed without the endpoint and are simply
    not found again; nothing is replayed across servers.
    """
    current = dspy.cache
    if isinstance(current, EndpointKeyedCache):
        return current
    keyed = EndpointKeyedCache.__new__(EndpointKeyedCache)
    keyed.__dict__.update(current.__dict__)  # same memory/disk stores and lock: one cache, a new key
    dspy.cache = keyed
    return keyed


@contextmanager
def discard_on_failure() -> Iterator[None]:
    """Forget every cached answer read or written in this block if the block raises.

    The answer that led to the failure (an unparsable reply, a reply that broke a later step) is
    then asked for again on the next attempt instead of being replayed from the cache.
    """
    outer = _journal.get()
    journal: list[tuple[EndpointKeyedCache, str]] = []
    token = _journal.set(journal)
    try:
        yield
    except BaseException:
        for cache, key in journal:
            try:
                cache.discard(key)
            except Exception:  # a cache that cannot forget must not hide the failure being raised
                continue
        raise
    finally:
        _journal.reset(token)
    if outer is not None:  # an enclosing block that fails later forgets these answers too
        outer.extend(journal)
