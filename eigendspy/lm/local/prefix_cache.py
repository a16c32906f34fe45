"""A bounded LRU of prompt KV caches for :mod:`eigendspy.lm.local.engine`, matched by token ids.

Why: every call of a role repeats the same long prefix (DSPy's field descriptions, the policy, the
tool schemas) and only its tail changes (the task, the dialogue so far). Prefilling that prefix is
most of a call's prompt cost on CPU, so the engine keeps the key/value states of a few recent
prompts and, for a new prompt, starts from the longest one that shares a token prefix with it:
only the rest is prefilled.

Why token ids, not text: two texts that share a prefix need not tokenize to a shared prefix (a BPE
merge may straddle the seam), and the KV states belong to tokens. Matching ids makes reuse exact:
the cached states are the ones a full prefill would compute for those positions.

The stored tensors are never written in place: :meth:`PrefixCache.finish` stores a copy of the prompt part
(a growing layer's buffer, `eigendspy.lm.local.kv_cache`, is written by its own call), and a hit hands out
views of them that the new cache copies when it is built. Only full-attention dynamic layers are cached (a
sliding window cannot be cropped back to a prefix); the engine turns the cache off for other models.

How much it saves depends on the prompts: in small-model mode each role's prompt is laid out stable-first
(`eigendspy.lm.small_model_adapter`), so a role's calls share the instructions, policy and tools as a prefix.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PrefixCache", "PrefixCacheStats"]


@dataclass
class PrefixCacheStats:
    """Counters since the engine was built: calls that reused a prefix, tokens reused and tokens prefilled."""

    hits: int = 0
    misses: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0


class PrefixCache:
    """LRU of ``prompt ids -> per-layer (keys, values)``, bounded by entries and by cached tokens.

    Args:
        max_entries: Prompts kept (a few roles' prefixes; the least recently used goes first).
        max_tokens: Total cached prompt tokens kept (bounds memory: ~46 kB per token for SmolLM2-135M, so ~0.4 GB).
        min_prefix: Shorter shared prefixes are not worth building a cache for; prefill from scratch.
    """

    def __init__(self, max_entries: int = 4, max_tokens: int = 8192, min_prefix: int = 16) -> None:
        self.max_entries, self.max_tokens, self.min_prefix = max_entries, max_tokens, min_prefix
        self._entries: OrderedDict[int, tuple[np.ndarray, list[tuple[Any, Any]]]] = OrderedDict()
        self._next_key = 0
        self.stats = PrefixCacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _common(a: np.ndarray, b: np.ndarray) -> int:
        m = min(len(a), len(b))
        diff = np.flatnonzero(a[:m] != b[:m])
        return int(diff[0]) if len(diff) else m

    def lookup(self, ids: list[int]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """``(n, layers)``: the KV states of ``ids[:n]`` for the longest cached shared prefix, or ``(0, None)``.

        ``n < len(ids)`` always (the model must see at least one new token to produce logits).
        """
        query = np.asarray(ids, dtype=np.int64)
        best_key, best = None, 0
        for key, (stored, _) in self._entries.items():
            n = self._common(stored, query)
            if n > best:
                best_key, best = key, n
        best = min(best, len(ids) - 1)
        if best_key is None or best < self.min_prefix:
            self.stats.misses += 1
            self.stats.prefilled_tokens += len(ids)
            return 0, None
        self._entries.move_to_end(best_key)
        self.stats.hits += 1
        self.stats.reused_tokens += best
        self.stats.prefilled_tokens += len(ids) - best
        return best, [(k[..., :best, :], v[..., :best, :]) for k, v in self._entries[best_key][1]]

    def store(self, ids: list[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep the KV states of prompt ``ids`` (each layer's tensors hold at least ``len(ids)`` positions).

        Entries whose prompt is a prefix of ``ids`` are dropped: the new one serves every call they would.
        """
        query = np.asarray(ids, dtype=np.int64)
        for key in [k for k, (stored, _) in self._entries.items()
                    if len(stored) <= len(query) and self._common(stored, query) == len(stored)]:
            del self._entries[key]
        n = len(ids)
        self._entries[self._next_key] = (query, [(k[..., :n, :], v[..., :n, :]) for k, v in layers])
        self._next_key += 1
        while len(self._entries) > self.max_entries or (
            len(self._entries) > 1 and sum(len(s) for s, _ in self._entries.values()) > self.max_tokens
        ):
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    # --- transformers glue ----------------------------------------------------------------------------

    def start(self, ids: list[int], config: Any, grow: bool = True) -> tuple[Any, int]:
        """A fresh ``DynamicCache`` (`eigendspy.lm.local.kv_cache.new_cache`; in-place growing layers unless
        ``grow=False``) holding the longest cached prefix of ``ids``, and how many tokens it holds (0 on a miss:
        then it starts empty and :meth:`finish` fills the LRU)."""
        from eigendspy.lm.local.kv_cache import new_cache

        n, layers = self.lookup(ids)
        return new_cache(config, layers, grow=grow), n

    def finish(self, ids: list[int], cache: Any) -> bool:
        """Keep the prompt part of ``cache`` after generation (copied: a growing layer's buffer has spare room);
        False (nothing kept) for layers that can't be cropped."""
        from eigendspy.lm.local.kv_cache import croppable

        layers = getattr(cache, "layers", None) or []
        if not croppable(cache) or any(not layer.is_initialized for layer in layers):
            return False
        if any(layer.keys.shape[-2] < len(ids) for layer in layers):
            return False
        n = len(ids)
        self.store(ids, [(layer.keys[..., :n, :].clone(), layer.values[..., :n, :].clone()) for layer in layers])
        return True
