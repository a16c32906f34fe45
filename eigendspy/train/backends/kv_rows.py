"""Keys/values in and out of ``transformers`` caches: which models allow reuse, one-row prefill, growing room.

Why `ReservedLayer`: `DynamicLayer` appends by ``torch.cat``, copying the whole cache at every decoded token.
At a few thousand tokens of context that copy costs more than the attention itself (measured on CPU: 70 % of a
decode step of 8 rows x 5k tokens), and it grows with the batch. A reserved layer writes each new token into
spare room, so a step reads the cache but never copies it; ``keys``/``values`` stay what a `DynamicLayer`
exposes (views of the filled part), so model code reads them unchanged.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from eigendspy.train.backends.prefix_cache import KV

__all__ = ["ReservedLayer", "cache_argument", "extend", "reserved_cache", "reuse_blocker"]


#: Generation-config fields that make ``generate`` search otherwise or add logits processors beyond temperature
#: and top-p, with the values that do neither. A model that sets one keeps generating through ``generate`` (no
#: reuse), so its ids stay what they were.
NEUTRAL_GENERATION = {"num_beams": 1, "num_beam_groups": 1, "penalty_alpha": None, "dola_layers": None,
                      "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                      "min_length": 0, "min_new_tokens": None, "bad_words_ids": None, "suppress_tokens": None,
                      "begin_suppress_tokens": None, "sequence_bias": None, "forced_bos_token_id": None,
                      "forced_eos_token_id": None, "exponential_decay_length_penalty": None, "min_p": None,
                      "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "top_h": None,
                      "renormalize_logits": False, "guidance_scale": None, "watermarking_config": None}


def reuse_blocker(model: Any) -> str | None:
    """Why ``model`` cannot generate with prefix reuse, or None when it can.

    Reuse needs a plain growing cache in every layer (full attention: sliding-window, chunked, linear-attention
    or KV-sharing layers keep something else, which cannot be cut and re-packed), an attention implementation
    that honours a custom 4-D mask (``sdpa`` or ``eager``; flash-attention kernels take none), and no logits
    processors from the generation config that the packed decoder does not reproduce.
    """
    try:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
    except Exception as exc:  # an older transformers or an unusual config
        return f"no dynamic cache for this config ({exc})"
    layers = getattr(cache, "layers", None)
    if not hasattr(DynamicLayer, "lazy_initialization"):
        return "this transformers has no layered cache API"
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return "not every layer keeps a full-attention cache"
    attention = getattr(model.config, "_attn_implementation", None)
    if attention not in ("sdpa", "eager"):
        return f"attention implementation {attention!r} takes no custom mask (sdpa or eager do)"
    config = getattr(model, "generation_config", None)
    for field, neutral in NEUTRAL_GENERATION.items():
        value = getattr(config, field, None)
        if value is not None and value != neutral:
            return f"generation config sets {field}={value!r}"
    return None


def cache_argument(model: Any) -> tuple[str, bool]:
    """The forward's name for the cache (``cache`` from transformers 5.2x, ``past_key_values`` before) and
    whether it takes ``logits_to_keep`` (so a prefill computes one row of logits, not one per token)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _forward_arguments(type(base))


@functools.lru_cache(maxsize=32)
def _forward_arguments(cls: type) -> tuple[str, bool]:
    params = inspect.signature(cls.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


class ReservedLayer(DynamicLayer):
    """A `DynamicLayer` whose keys/values live in a buffer with room for ``capacity`` tokens.

    ``keys``/``values`` are views of the filled part, so everything that reads a `DynamicLayer` works
    unchanged. Anything that replaces them (cropping, beam reordering) is noticed at the next update, which
    then starts a new buffer from them; outgrowing the room does the same with twice the length.

    Args:
        capacity: Tokens to reserve room for (the prompt plus the most tokens that will be generated).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        buffers = self._buffers
        if buffers is None or end > buffers[0].shape[-2] or not _views_of(self.keys, buffers[0]):
            capacity = self.capacity if end <= self.capacity else 2 * end
            buffers = (_room(key_states, capacity), _room(value_states, capacity))
            if start:
                buffers[0][:, :, :start] = self.keys
                buffers[1][:, :, :start] = self.values
            self._buffers = buffers
        buffers[0][:, :, start:end] = key_states
        buffers[1][:, :, start:end] = value_states
        self.keys, self.values = buffers[0][:, :, :end], buffers[1][:, :, :end]
        return self.keys, self.values


def _room(states: torch.Tensor, capacity: int) -> torch.Tensor:
    return states.new_empty(states.shape[0], states.shape[1], capacity, states.shape[3])


def _views_of(tensor: torch.Tensor, buffer: torch.Tensor) -> bool:
    return (tensor.numel() > 0 and tensor.data_ptr() == buffer.data_ptr() and tensor.shape[:2] == buffer.shape[:2]
            and tensor.stride() == buffer.stride())


def reserved_cache(model: Any, layers: KV, capacity: int) -> Any:
    """A `DynamicCache` of `ReservedLayer`\\ s (one per model layer), holding ``layers`` to start with."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache.layers[:] = [ReservedLayer(capacity) for _ in cache.layers]
    for index, (keys, values) in enumerate(layers):
        cache.update(keys, values, index)
    return cache


def extend(model: Any, kv: KV, new_ids: list[int]) -> KV:
    """Run ``new_ids`` through ``model`` after the cached ``kv`` (one row, no padding); return the longer cache.

    Positions continue from the cache's length, so the result equals a prefill of the whole sequence (up to
    floating-point rounding). Call under ``torch.inference_mode()`` with the model in eval mode.
    """
    name, logits_to_keep = cache_argument(model)
    length = kv[0][0].shape[2] if kv else 0
    cache = reserved_cache(model, kv, length + len(new_ids))
    kwargs: dict[str, Any] = {name: cache, "use_cache": True}
    if logits_to_keep:
        kwargs["logits_to_keep"] = 1
    model(input_ids=torch.tensor([new_ids], device=next(model.parameters()).device), **kwargs)
    return [(layer.keys, layer.values) for layer in cache.layers]
