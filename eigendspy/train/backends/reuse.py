"""Generation with prefix reuse for `eigendspy.train.backends.hf.HFBackend`: prefill what is new, decode packed.

One batch: each prompt's longest cached prefix is looked up (`PrefixCache`) and only the tokens after it are
prefilled, one row at a time and unpadded (`kv_rows.extend`); the result is stored at once, so later rows of the
same batch share it. Then all rows decode together as one packed sequence (`packed.decode_packed`), and each row's
prompt + completion keys/values are stored for its next turn.

Weights: the cache is only valid for the weights it was computed with. `WeightsWatch` is asked before every
batch and again after it (an optimizer step may run while a batch decodes); either time the whole cache goes.
"""

from __future__ import annotations

import time
from typing import Any

from eigendspy.train.backends.base import Generation, SamplingParams
from eigendspy.train.backends.kv_rows import extend
from eigendspy.train.backends.packed import decode_packed
from eigendspy.train.backends.prefix_cache import KV, PrefixCache, WeightsWatch

__all__ = ["PrefixReuse"]


class PrefixReuse:
    """A prefix cache, its weights watch, and the batch generation that uses them.

    Args:
        max_tokens: The cap on cached tokens (`PrefixCache`).
        stats: The backend's counters; ``prefill_tokens``, ``reused_tokens``, ``prefill_s`` and
            ``cache_invalidations`` are added to here.
    """

    def __init__(self, max_tokens: int, stats: dict[str, float]) -> None:
        self.cache = PrefixCache(max_tokens)
        self.watch = WeightsWatch()
        self.stats = stats

    def generate(self, model: Any, prompts: list[list[int]], params: SamplingParams, stops: set[int],
                 pad: int) -> list[Generation]:
        """Like ``model.generate`` on the left-padded batch, reusing and refreshing cached prefixes.

        Call under ``torch.inference_mode()`` with the model in eval mode and the RNG seeded.
        """
        if self.watch.changed(model):
            self.invalidate()
        rows = [self._prefill(model, p) for p in prompts]
        decoded = decode_packed(model, prompts, rows, max_new_tokens=params.max_new_tokens,
                                temperature=params.temperature, top_p=params.top_p, stops=stops, pad=pad)
        results = [Generation(token_ids=ids, logprobs=lps, finish_reason="stop" if done else "length")
                   for ids, lps, done in zip(decoded.ids, decoded.logprobs, decoded.finished, strict=True)]
        if self.watch.changed(model):  # the weights moved while this batch ran: nothing computed is safe to keep
            self.invalidate()
            return results
        for row, (prompt, ids) in enumerate(zip(prompts, decoded.ids, strict=True)):
            kept = min(len(ids), decoded.steps - 1)  # the last sampled token was never run
            self.cache.store(prompt + ids[:kept], decoded.kv(row, kept))
        return results

    def invalidate(self) -> None:
        """Drop every entry (counted in ``stats["cache_invalidations"]`` when there were any)."""
        if len(self.cache):
            self.stats["cache_invalidations"] += 1
        self.cache.clear()

    def _prefill(self, model: Any, prompt: list[int]) -> KV:
        """Keys/values of ``prompt[:-1]`` (the last token is the first decode step's query)."""
        n, kv = self.cache.lookup(prompt, limit=len(prompt) - 1)
        missing = prompt[n:-1]
        if missing:
            started = time.perf_counter()
            kv = extend(model, kv, missing)
            self.stats["prefill_s"] += time.perf_counter() - started
            self.cache.store(prompt[:-1], kv)
        self.stats["reused_tokens"] += n
        self.stats["prefill_tokens"] += len(missing) + 1
        return kv
