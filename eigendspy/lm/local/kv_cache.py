"""A KV cache layer that grows in place, for :mod:`eigendspy.lm.local.engine` (same states, no copy per token).

Why: transformers' ``DynamicLayer`` appends each new token's keys and values with ``torch.cat``, so every
decoding step copies the whole cache of every layer into freshly allocated memory. With a ~1-2k-token
prompt on SmolLM2-135M that is ~80 MB of copying (and page faults) per token, measured at ~30% of a
decoding step on the 2-core CPU (torch profiler, ``aten::cat``). `GrowingLayer` keeps a buffer with
spare room (doubling when full) and writes each step's states into it; ``keys``/``values`` are views of
the filled part. The numbers are the same tensors either way, so greedy decoding picks the same tokens
(tested token for token against ``model.generate`` with stock layers).

`new_cache` builds a ``DynamicCache`` whose full-attention layers are `GrowingLayer`s, optionally
holding a cached prompt prefix (copied in, so the prefix cache's stored tensors are never written).
Sliding-window and other layer types are left as transformers builds them.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["croppable", "growing_layer_class", "new_cache"]

MIN_ROOM = 256  # tokens of spare room a buffer starts with (a constrained answer is a few dozen to ~400 tokens)


def _growing_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """``DynamicLayer`` that writes new states into a preallocated buffer instead of concatenating."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._k: Any = None
            self._v: Any = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = self.get_seq_length()
            need = n + key_states.shape[-2]
            if self._k is None or self._k.shape[-2] < need:
                room = max(need + MIN_ROOM, 2 * (self._k.shape[-2] if self._k is not None else 0))
                shape = (*key_states.shape[:-2], room, key_states.shape[-1])
                k = torch.empty(shape, dtype=key_states.dtype, device=key_states.device)
                v = torch.empty((*shape[:-1], value_states.shape[-1]), dtype=value_states.dtype,
                                device=value_states.device)
                if n:
                    k[..., :n, :].copy_(self.keys)
                    v[..., :n, :].copy_(self.values)
                self._k, self._v = k, v
            self._k[..., n:need, :].copy_(key_states)
            self._v[..., n:need, :].copy_(value_states)
            self.keys, self.values = self._k[..., :need, :], self._v[..., :need, :]
            return self.keys, self.values

        def reset(self) -> None:
            self._k = self._v = None
            super().reset()

        def batch_repeat_interleave(self, repeats: int) -> None:
            super().batch_repeat_interleave(repeats)
            self._k = self._v = None  # the new tensors are not views of the buffer: re-buffer on the next update

        def batch_select_indices(self, indices: Any) -> None:
            super().batch_select_indices(indices)
            self._k = self._v = None

    return GrowingLayer


@functools.cache
def growing_layer_class() -> type:
    """The ``GrowingLayer`` class (built on first use: transformers is imported lazily, like torch)."""
    return _growing_layer_class()


def croppable(cache: Any) -> bool:
    """Whether every layer of ``cache`` is a plain full-attention ``DynamicLayer`` or a `GrowingLayer` (so it can be
    cropped back to a prefix: rejected drafts, a stored prompt)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(type(layer) in (DynamicLayer, growing_layer_class()) for layer in layers)


def new_cache(config: Any, layers: list[tuple[Any, Any]] | None = None, grow: bool = True) -> Any:
    """A ``DynamicCache`` for ``config`` (its full-attention layers `GrowingLayer` unless ``grow=False``),
    holding the per-layer ``(keys, values)`` of ``layers`` when given (copied, never aliased)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    if grow:
        growing = growing_layer_class()
        cache.layers = [growing() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    for layer, (k, v) in zip(cache.layers, layers, strict=True) if layers else ():
        layer.update(k, v)
    return cache
