"""Grammar-constrained decoding for :mod:`eigendspy.lm.local.engine`: xgrammar masking plus *closing mode*.

Decoding is masked token by token with xgrammar (a JSON schema compiled over the model's tokenizer),
so every answer parses. Past the budget the processor enters closing mode: among the tokens the
grammar allows it prefers ``"``, ``]``, ``}``, ``0`` and ``,``, which finishes the open
string/number/array/object by the shortest route.
"""

from __future__ import annotations

import json
from typing import Any

CLOSERS = '"]}0'  # closing-mode preference, best first: end a string, an array, an object, a number
BONUS = 1e6  # dwarfs any logit, so closing mode is greedy over the preferred tokens whatever the temperature


class GrammarProcessor:
    """Masks logits to the grammar (one sequence) and switches to closing mode past the budget.

    Like xgrammar's ``xgr.contrib.hf.LogitsProcessor`` but single-use per generate call with the
    matcher kept reachable, so the engine can tell whether the JSON was finished.
    """

    def __init__(self, compiled: Any, prompt_len: int, budget: int, bonus: Any) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
        self.prompt_len, self.budget, self.bonus = prompt_len, budget, bonus
        self.closing = False
        self.accepted = 0  # answer tokens the matcher has seen
        self._mask_at = -1  # `accepted` when the bitmask was last filled (`forced` fills it for `__call__` too)

    def _advance(self, input_ids: Any) -> int:
        """Feed the matcher the answer tokens of ``input_ids`` it has not seen; the number of answer tokens."""
        produced = input_ids.shape[1] - self.prompt_len
        while self.accepted < produced and not self.matcher.is_terminated():
            token = int(input_ids[0, self.prompt_len + self.accepted])
            if not self.matcher.accept_token(token):
                raise RuntimeError(f"grammar rejected token {token}; the vocabulary and tokenizer info disagree")
            self.accepted += 1
        return produced

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        produced = self._advance(input_ids)
        if self.matcher.is_terminated():
            return scores
        self._fill()
        self.xgr.apply_token_bitmask_inplace(scores, self.bitmask)
        if produced >= self.budget:
            self.closing = True
            scores = scores + self.bonus[: scores.shape[-1]]
        return scores

    def _fill(self) -> None:
        if self._mask_at != self.accepted:
            self.matcher.fill_next_token_bitmask(self.bitmask)
            self._mask_at = self.accepted

    def forced(self, input_ids: Any) -> int | None:
        """The only token the grammar allows after ``input_ids``, or None (several, or the grammar has ended).

        Why: greedy decoding can only pick that token whatever the logits (every other one is masked to
        ``-inf``; closing mode only adds bonuses), so the decoder skips the logits for it (`decode.greedy_decode`).
        """
        import torch

        produced = self._advance(input_ids)
        if self.matcher.is_terminated():
            return None
        self._fill()
        words = torch.nonzero(self.bitmask[0]).flatten()
        if len(words) != 1:
            return None
        index = int(words[0])
        word = int(self.bitmask[0, index]) & 0xFFFFFFFF
        if word & (word - 1):
            return None
        token = index * 32 + word.bit_length() - 1
        if produced >= self.budget:
            self.closing = True  # what __call__ would record at this position
        return token


def _closing_bonus(info: Any, vocab_size: int, device: str) -> Any:
    """Per-token logit bonus of closing mode: closers ranked by :data:`CLOSERS`, ``,`` last."""
    import torch

    bonus = torch.zeros(vocab_size)
    for i, raw in enumerate(info.decoded_vocab):
        text = raw.decode("utf-8", "ignore").strip()
        if text == ",":
            bonus[i] = 0.5 * BONUS
        elif text and set(text) <= set(CLOSERS):
            bonus[i] = (len(CLOSERS) - CLOSERS.index(text[0])) * BONUS
    return bonus.to(device)


def new_compiler(tokenizer: Any, vocab_size: int, eos_ids: list[int], device: str) -> tuple[Any, Any]:
    """An xgrammar compiler over ``tokenizer`` and the matching closing-mode bonus vector."""
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=eos_ids)
    return xgr.GrammarCompiler(info, max_threads=1), _closing_bonus(info, vocab_size, device)


def compile_schema(compiler: Any, schema: dict[str, Any], strict: bool) -> Any:
    """Compile ``schema`` to a compact-JSON grammar (no free whitespace, so no filling the budget with spaces)."""
    return compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, strict_mode=strict)
