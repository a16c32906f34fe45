"""Greedy decoding with prompt-lookup drafts for :mod:`eigendspy.lm.local.engine` (same tokens, fewer forwards).

Why: batch-1 decoding of a small model on CPU is bound by reading the weights once per forward,
not by arithmetic, so checking several tokens in one forward costs little more than one. The
small-model answers copy much of their text from the prompt (ids, names, tool names, the schema's
keys, utterances stated in the scenario), so the tokens that followed the latest n-gram's earlier
occurrence in the prompt or the answer so far are a good guess of what comes next (prompt-lookup
decoding). Each guess is verified by the model itself: a drafted token is kept only while it is
the token greedy decoding picks at that position (grammar mask and closing mode applied, in the
same order as ``model.generate`` applies them), and the first disagreement is replaced by the
model's own pick. So the answer is greedy decoding's, token for token; only the number of
forwards changes. Rejected drafts are cropped off the KV cache.

Tokens the grammar forces (one allowed token: a key, a constant, the end of the answer) are taken
without computing logits: the forward only extends the cache, and none is run for the final end token.

Greedy calls without stop strings use this loop by default (``LocalEngine(greedy_loop=True)``, up to 3
drafts per forward: with the cache growing in place, `eigendspy.lm.local.kv_cache`, a short draft pays on this
CPU, a long one does not); sampling and stop strings go through ``model.generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eigendspy.lm.local.kv_cache import croppable

__all__ = ["DecodeStats", "Generation", "croppable", "draft_tokens", "greedy_decode"]


@dataclass(frozen=True)
class Generation:
    """One answer of `LocalEngine.generate` (lm.local.engine): what DSPy's usage and history record, plus timing.

    ``completion_tokens`` counts closing-mode tokens too; ``finish_reason`` is ``"length"`` when the
    budget ran out (a constrained answer is still valid JSON then); ``seconds`` is prefill + decoding,
    without waiting for the lock; ``prompt_truncated`` says the prompt was cut to fit the context;
    ``cached_tokens`` of the ``prompt_tokens`` came from the prefix cache (not prefilled).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float
    prompt_truncated: bool
    constrained: bool
    call_index: int
    cached_tokens: int = 0
    token_ids: tuple[int, ...] = ()


@dataclass
class DecodeStats:
    """Forwards run, drafted / accepted draft tokens and grammar-forced tokens (taken without logits) of one call."""

    forwards: int = 0
    drafted: int = 0
    accepted: int = 0
    forced: int = 0


def draft_tokens(seq: list[int], max_draft: int, max_ngram: int = 3, min_ngram: int = 2) -> list[int]:
    """Tokens that followed the most recent earlier occurrence of the longest matching tail n-gram of ``seq``."""
    n_seq = len(seq)
    for n in range(min(max_ngram, n_seq - 1), min_ngram - 1, -1):
        tail = seq[n_seq - n :]
        for start in range(n_seq - n - 1, -1, -1):  # most recent occurrence first
            if seq[start : start + n] == tail:
                follow = seq[start + n : start + n + max_draft]
                if follow:
                    return follow
    return []


def greedy_decode(
    model: Any,
    ids: list[int],
    cache: Any,
    reused: int,
    processor: Any,
    max_new_tokens: int,
    eos_ids: list[int],
    max_draft: int,
) -> tuple[list[int], DecodeStats]:
    """Greedy answer tokens for prompt ``ids`` (EOS included when produced), ``cache`` holding ``ids[:reused]``.

    ``processor`` is called like a transformers logits processor (``(input_ids, scores) -> scores``) once per
    position it picks at, in order; ``max_draft=0`` decodes one token per forward. Where the processor
    says the grammar allows one token only (``processor.forced``), that token is taken without computing
    logits (the forward only extends the cache; no forward at all when it is the end of the answer).
    """
    import torch

    device = model.device
    stats = DecodeStats()
    seq = list(ids)
    new: list[int] = []
    no_logits = torch.empty(0, dtype=torch.long, device=device)

    def forward(tokens: list[int], logits: bool = True) -> Any:
        stats.forwards += 1
        total = cache.get_seq_length() + len(tokens)
        out = model(
            input_ids=torch.tensor([tokens], device=device),
            attention_mask=torch.ones((1, total), dtype=torch.long, device=device),
            cache=cache,
            use_cache=True,
            logits_to_keep=len(tokens) if logits else no_logits,
        )
        return out.logits[0].to(dtype=torch.float32) if logits else None

    def pick(logits: Any) -> int:
        scores = logits[None, :].clone()
        if processor is not None:
            scores = processor(torch.tensor([seq], device=device), scores)
        return int(torch.argmax(scores, dim=-1)[0])

    def emit(token: int) -> bool:
        new.append(token)
        seq.append(token)
        return token in eos_ids or len(new) >= max_new_tokens

    token = pick(forward(ids[reused:])[-1])
    if emit(token):
        return new, stats
    while True:
        only = processor.forced(torch.tensor([seq], device=device)) if hasattr(processor, "forced") else None
        if only is not None:
            stats.forced += 1
            if only not in eos_ids:  # the cache needs `token` only if more is decoded after `only`
                forward([token], logits=False)
            token = only
            if emit(token):
                return new, stats
            continue
        draft = draft_tokens(seq, min(max_draft, max_new_tokens - len(new))) if max_draft > 0 else []
        rows = forward([token, *draft])  # rows[i]: the logits after `token` and draft[:i]
        stats.drafted += len(draft)
        for i in range(len(draft) + 1):
            token = pick(rows[i])
            if i < len(draft) and token == draft[i]:
                stats.accepted += 1
                if emit(token):
                    return new, stats
                continue
            if i < len(draft):
                cache.crop(i - len(draft))  # the states of the rejected drafts
            if emit(token):
                return new, stats
            break
