"""Keys and values of earlier turns, kept so a dialogue's next turn prefills only its new tokens.

Why: an episode's next request is its previous prompt and completion plus a few template tokens and the
other side's reply (`eigendspy.train.chat_tokens` extends ids by deltas, never re-tokenises), so without a
cache every turn prefills the whole dialogue again (the rollout benchmark: 112,800 prompt tokens prefilled
for 1,152 sampled).
Concurrent episodes of one task also share their system prompt (policy and tool schemas, thousands of
tokens) and GRPO's G episodes of a task share their whole first prompt: lookup is by the longest common
token prefix with any entry, so those are prefilled once too (vLLM's "automatic prefix caching", by rows).

What is kept: one entry per token sequence, each a list of per-layer ``(keys, values)`` of shape
``(1, kv_heads, len(ids), head_dim)``. Entries are never written once stored (prefill and decoding copy them
into buffers of their own), so the same tensors may serve many rows of a batch. A stored entry
drops every entry that is a prefix of it (an episode keeps one entry: its latest turn), and the least recently
used entries go when the cap on cached tokens is passed — how the entries of finished episodes leave.

When entries are wrong: when the weights they were computed with change. `WeightsWatch` notices (every
optimizer step, in-place writes, swapped tensors, another active adapter); the backend clears the cache then.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["KV", "PrefixCache", "WeightsWatch", "common_prefix"]

#: One row's cache: per layer, (keys, values) of shape (1, kv_heads, tokens, head_dim).
KV = list[tuple[torch.Tensor, torch.Tensor]]


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """Length of the longest common prefix of two 1-d id tensors.

    Why tensors: lookups compare every request with every entry, and a vectorised comparison of 10k-token
    dialogues costs microseconds where a Python loop (or list slices, which incref every element) costs
    milliseconds.
    """
    m = min(len(a), len(b))
    diff = (a[:m] != b[:m]).nonzero()
    return int(diff[0]) if len(diff) else m


class PrefixCache:
    """Per-sequence KV caches, looked up by longest common token prefix, bounded by a token cap.

    Args:
        max_tokens: Most tokens kept over all entries (an entry sharing storage with another still counts
            in full, so the bound is conservative). Entries beyond it go least recently used first.
    """

    def __init__(self, max_tokens: int) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int, tuple[torch.Tensor, KV]] = OrderedDict()
        self._keys = itertools.count()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: list[int], limit: int) -> tuple[int, KV]:
        """The cached keys/values of the longest stored prefix of ``ids`` (at most ``limit`` tokens).

        Returns ``(n, kv)``: ``kv`` covers ``ids[:n]`` (empty list when ``n == 0``). A partial match is copied,
        so the returned tensors never pin a longer entry's storage.
        """
        query = _as_tensor(ids)
        best, best_key = 0, None
        for key, (stored, _) in self._entries.items():
            n = common_prefix(stored, query)
            if n > best:
                best, best_key = n, key
        n = min(best, limit)
        if best_key is None or n == 0:
            return 0, []
        self._entries.move_to_end(best_key)
        stored, kv = self._entries[best_key]
        if n == len(stored):
            return n, kv
        return n, [(k[:, :, :n].clone(), v[:, :, :n].clone()) for k, v in kv]

    def store(self, ids: list[int], kv: KV) -> None:
        """Keep ``kv`` (covering all of ``ids``); drop entries it extends and evict past the cap."""
        if not ids or len(ids) > self.max_tokens:
            return
        query = _as_tensor(ids)
        self._drop_prefixes_of(query)
        self._entries[next(self._keys)] = (query, kv)
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            self._drop(next(iter(self._entries)))

    def release(self, ids: list[int]) -> int:
        """Drop every entry that ``ids`` extends or equals (a finished episode's turns); return tokens freed."""
        return self._drop_prefixes_of(_as_tensor(ids))

    def clear(self) -> None:
        self._entries.clear()
        self.tokens = 0

    def _drop_prefixes_of(self, query: torch.Tensor) -> int:
        prefixes = [k for k, (stored, _) in self._entries.items() if common_prefix(stored, query) == len(stored)]
        return sum(self._drop(key) for key in prefixes)

    def _drop(self, key: int) -> int:
        stored, _ = self._entries.pop(key)
        self.tokens -= len(stored)
        return len(stored)


def _as_tensor(ids: list[int]) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long)


class WeightsWatch:
    """Notices that the weights generation uses may have changed since the last look, cheaply enough for every batch.

    Why these signals: GRPO trains the very model the backend samples from, and a cache computed with the old
    weights would silently make rollouts off-policy. Optimizers update in place and fused kernels (the default
    AdamW in transformers on torch >= 2.8) do not bump tensors' version counters, so every optimizer step in the
    process is counted through torch's global step hook; other in-place writes (``load_state_dict``, ``copy_``)
    bump the version counter (``Tensor._version``, what autograd itself checks); a replaced tensor changes its
    data pointer; another model object or another active PEFT adapter changes the identity parts.
    """

    _steps = 0
    _hook: Any = None

    def __init__(self) -> None:
        if WeightsWatch._hook is None:
            WeightsWatch._hook = register_optimizer_step_post_hook(_count_step)
        self._seen: tuple[Any, ...] | None = None

    @staticmethod
    def fingerprint(model: Any) -> tuple[Any, ...]:
        params = hash(tuple((p.data_ptr(), p._version) for p in model.parameters()))
        return WeightsWatch._steps, id(model), _active_adapter(model), params

    def changed(self, model: Any) -> bool:
        """True when ``model``'s weights may differ from those of the previous call; then re-arms."""
        now = self.fingerprint(model)
        changed, self._seen = now != self._seen, now
        return changed


def _active_adapter(model: Any) -> str | None:
    """PEFT's active adapter (a property), or transformers' integrated one (a method raising without one)."""
    adapter = getattr(model, "active_adapter", None)
    if callable(adapter):
        try:
            adapter = adapter()
        except (ValueError, RuntimeError):
            return None
    return None if adapter is None else str(adapter)


def _count_step(optimizer: Any, args: Any, kwargs: Any) -> None:
    WeightsWatch._steps += 1
