"""Decode many dialogues together over one packed sequence of keys/values that holds shared prefixes once.

Why packed, not left-padded: concurrent episodes share most of their context — the system prompt (policy and
tool schemas, thousands of tokens) across tasks, the whole first prompt across GRPO's G episodes of a task.
A left-padded batch needs every row's full cache copied side by side each turn; here the rows' cached
sequences are laid out as a prefix tree — each shared segment once, then each row's own remainder — in a
single buffer with room for the tokens to come (`PackedLayer`), so a batch costs one row's memory plus the
differences, and nothing is concatenated per step.

How the model sees it: a batch of rows, each decoding one token, whose keys/values are that buffer expanded
over the rows (stride 0, no copy) and whose 4-D attention mask lets a row see only its path through the tree
and its own new tokens; position ids are each row's own. One token per row keeps grouped-query attention on
its copy-free path. The attention over a row's visible keys is the attention of its own unpadded sequence, so
greedy ids match a padded ``generate``; logits agree to rounding.

Sampling follows ``transformers``' ``generate`` for the parameters a `SamplingParams` has: raw float32 logits,
temperature then top-p warping, ``torch.multinomial`` over every row each step (finished rows too), so seeded
runs draw what ``generate`` draws from the same logits. Models whose generation config adds other logits
processors (repetition penalties, suppressed tokens, ...) are not decoded here (`eigendspy.train.backends.
kv_rows.reuse_blocker`).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from eigendspy.train.backends.kv_rows import cache_argument
from eigendspy.train.backends.prefix_cache import KV, common_prefix

__all__ = ["Decoded", "PackedLayer", "decode_packed", "tree_layout"]

#: A segment of the packed sequence: (source row, start, end, rows that see it) — positions [start, end) of
#: the source row's sequence, shared by every row listed.
Segment = tuple[int, int, int, list[int]]
#: Packed positions as ``range`` arguments (start, stop, step): where a row's keys/values sit.
Spans = list[tuple[int, int, int]]


def tree_layout(sequences: list[torch.Tensor]) -> list[Segment]:
    """The rows' sequences as a prefix tree in depth-first order: shared segments once, then each branch."""
    segments: list[Segment] = []

    def place(members: list[int], depth: int) -> None:
        first = sequences[members[0]]
        end = min(depth + common_prefix(sequences[m][depth:], first[depth:]) for m in members)
        if end > depth:
            segments.append((members[0], depth, end, members))
        branches: dict[int, list[int]] = {}
        for m in members:
            if len(sequences[m]) > end:
                branches.setdefault(int(sequences[m][end]), []).append(m)
        for branch in branches.values():
            place(branch, end)

    place(list(range(len(sequences))), 0)
    return segments


class PackedLayer(DynamicLayer):
    """One packed sequence of keys/values that every row queries; each step appends one token per row.

    ``keys``/``values`` are the filled part expanded (stride 0, no copy) over the rows, so the model sees a batch
    of rows each decoding one token — the shape whose grouped-query attention runs without copying keys — while
    memory holds the shared prefix once.

    Args:
        rows: How many rows query the sequence.
        capacity: Room in tokens (the packed prompt plus ``rows`` tokens per decoding step).
    """

    def __init__(self, rows: int, capacity: int) -> None:
        super().__init__()
        self.rows, self.capacity, self.length = rows, capacity, 0
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def fill(self, segments: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Start with ``segments`` (each keys/values of shape (1, heads, n, dim)) laid end to end."""
        for keys, values in segments:
            self._write(keys, values)
        self._expose()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Append one token per row (``key_states`` is (rows, heads, 1, dim)), in row order."""
        flat = key_states.shape[0] * key_states.shape[2]
        self._write(key_states.transpose(0, 1).reshape(1, key_states.shape[1], flat, key_states.shape[3]),
                    value_states.transpose(0, 1).reshape(1, value_states.shape[1], flat, value_states.shape[3]))
        self._expose()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def gather(self, spans: Spans) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values at the packed positions ``range(start, stop, step)`` of each span, as one row of their own."""
        assert self._buffers is not None
        keys, values = self._buffers
        return (torch.cat([keys[:, :, a:b:step] for a, b, step in spans], dim=2),
                torch.cat([values[:, :, a:b:step] for a, b, step in spans], dim=2))

    def _write(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if self._buffers is None:
            self.lazy_initialization(keys, values)
            self._buffers = (_room(keys, self.capacity), _room(values, self.capacity))
        end = self.length + keys.shape[2]
        self._buffers[0][:, :, self.length:end] = keys
        self._buffers[1][:, :, self.length:end] = values
        self.length = end

    def _expose(self) -> None:
        if self._buffers is not None:
            keys, values = self._buffers
            self.keys = keys[:, :, :self.length].expand(self.rows, -1, -1, -1)
            self.values = values[:, :, :self.length].expand(self.rows, -1, -1, -1)


class Decoded:
    """What `decode_packed` sampled: per row its new ids (stop token included) and raw logprobs, and the cache.

    ``kv(row, tokens)`` cuts a row's keys/values back out: its prompt plus its first ``tokens`` sampled ids
    (at most ``steps - 1``: the last sampled token is never run).
    """

    def __init__(self, ids: list[list[int]], logprobs: list[list[float]], finished: list[bool],
                 layers: list[PackedLayer], paths: list[Spans], prompt_end: int,
                 steps: int) -> None:
        self.ids, self.logprobs, self.finished, self.steps = ids, logprobs, finished, steps
        self._layers, self._paths, self._prompt_end = layers, paths, prompt_end

    def kv(self, row: int, tokens: int) -> KV:
        rows = len(self._paths)
        first = self._prompt_end + row  # the row's last prompt token, then one position per step
        own = (first, first + rows * (min(tokens, self.steps - 1) + 1), rows)
        return [layer.gather([*self._paths[row], own]) for layer in self._layers]


def decode_packed(model: Any, prompts: list[list[int]], rows: list[KV], *, max_new_tokens: int, temperature: float,
                  top_p: float, stops: set[int], pad: int) -> Decoded:
    """Sample up to ``max_new_tokens`` per prompt; ``rows[i]`` holds the keys/values of ``prompts[i][:-1]``.

    Call under ``torch.inference_mode()`` with the model in eval mode (and the RNG seeded, for sampling).
    """
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    device = next(model.parameters()).device
    batch = len(prompts)
    cache, layers, visible, paths, width = _pack(model, prompts, rows, width_room=batch * max_new_tokens)
    dtype = layers[0].keys.dtype if layers[0].is_initialized else getattr(model, "dtype", torch.float32)
    warpers = [w for w in (TemperatureLogitsWarper(temperature) if temperature not in (0.0, 1.0) else None,
                           TopPLogitsWarper(top_p) if temperature > 0.0 and top_p < 1.0 else None) if w is not None]
    name, _ = cache_argument(model)
    tokens = torch.tensor([[p[-1]] for p in prompts], device=device)
    positions = torch.tensor([[len(p) - 1] for p in prompts], device=device)
    diagonal = torch.arange(batch, device=device)
    unfinished = torch.ones(batch, dtype=torch.bool, device=device)
    stop_ids = torch.tensor(sorted(stops), device=device)
    sampled: list[torch.Tensor] = []
    chosen: list[torch.Tensor] = []
    end = width
    for _ in range(max_new_tokens):
        visible[diagonal, end + diagonal] = True  # each row sees its own new token
        end += batch
        out = model(input_ids=tokens, position_ids=positions, attention_mask=_additive(visible[:, :end], dtype),
                    use_cache=True, **{name: cache})
        logits = out.logits[:, -1].to(dtype=torch.float32, copy=True)
        scores = logits
        for warp in warpers:  # in generate's order: temperature, then top-p
            scores = warp(None, scores)
        if temperature > 0.0:
            step = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            step = torch.argmax(scores, dim=-1)
        step = torch.where(unfinished, step, torch.full_like(step, pad))
        sampled.append(step)
        scaled = logits / temperature if temperature > 0.0 else logits  # the sampling distribution's logprobs
        chosen.append(torch.log_softmax(scaled, dim=-1).gather(-1, step[:, None]).squeeze(1))
        unfinished &= ~torch.isin(step, stop_ids)
        tokens, positions = step[:, None], positions + 1
        if not unfinished.any():
            break
    new_ids, new_lps, finished = [], [], []
    for row_ids, row_lp in zip(torch.stack(sampled, 1).tolist(), torch.stack(chosen, 1).tolist(), strict=True):
        stop = next((i + 1 for i, t in enumerate(row_ids) if t in stops), len(row_ids) + 1)
        finished.append(stop <= len(row_ids))
        new_ids.append(row_ids[:stop])
        new_lps.append(row_lp[:stop])
    return Decoded(new_ids, new_lps, finished, layers, paths, width, len(sampled))


def _pack(model: Any, prompts: list[list[int]], rows: list[KV],
          width_room: int) -> tuple[Any, list[PackedLayer], torch.Tensor, list[Spans], int]:
    """The packed cache of the rows' prompts (all but their last tokens), which rows see which positions, and
    each row's spans of packed positions."""
    from transformers import DynamicCache

    segments = tree_layout([torch.tensor(p[:-1], dtype=torch.long) for p in prompts])
    width = sum(end - start for _, start, end, _ in segments)
    cache = DynamicCache(config=model.config)
    cache.layers[:] = layers = [PackedLayer(len(prompts), width + width_room) for _ in cache.layers]
    for index, layer in enumerate(layers):
        layer.fill([(rows[source][index][0][:, :, start:end], rows[source][index][1][:, :, start:end])
                    for source, start, end, _ in segments])
    visible = torch.zeros(len(prompts), width + width_room, dtype=torch.bool, device=next(model.parameters()).device)
    paths: list[Spans] = [[] for _ in prompts]
    at = 0
    for _, start, end, members in segments:
        visible[members, at:at + end - start] = True
        for m in members:
            paths[m].append((at, at + end - start, 1))
        at += end - start
    return cache, layers, visible, paths, width


def _room(states: torch.Tensor, capacity: int) -> torch.Tensor:
    return states.new_empty(1, states.shape[1], capacity, states.shape[3])


def _additive(visible: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The (rows, 1, 1, keys) float mask attention adds: 0 where a row may look, the dtype's minimum elsewhere."""
    mask = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
    mask.masked_fill_(~visible, torch.finfo(dtype).min)
    return mask[:, None, None]
