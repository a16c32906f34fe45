"""In-process ``transformers`` generation as a rollout backend, batching concurrent episodes.

Why batch: an RL step runs G episodes per task and many tasks at once; each episode asks for one
assistant turn at a time. Generating them one by one leaves the accelerator (or the CPU's SIMD
units) idle, so concurrent `generate` calls are collected for a few milliseconds and run as one
left-padded ``model.generate`` in a worker thread while the event loop keeps the other episodes
(user simulator, environment, checker) moving.

Prefix reuse (on by default): an episode's next request extends its previous prompt and completion,
and concurrent episodes share their system prompt, so the backend keeps keys and values of what it
has seen (`eigendspy.train.backends.reuse`), prefills only new tokens, and decodes the batch over one
packed sequence that holds each shared prefix once. Greedy ids are those of a full re-prefill;
logprobs agree to rounding. Models that cannot (sliding windows, flash-attention kernels, extra
logits processors in their generation config) generate as before.

The backend shares the *live* model object with the trainer when given one, so in-process GRPO
always samples from the current weights with no sync step. The prefix cache is dropped whenever
those weights may have changed — any optimizer step, an in-place write, another adapter — which is
checked before and after every batch. `load_adapter` exists for callers that train elsewhere and
hand over a saved PEFT adapter.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import torch

from eigendspy.train.backends.base import Generation, SamplingParams
from eigendspy.train.backends.kv_rows import reuse_blocker
from eigendspy.train.backends.reuse import PrefixReuse

logger = logging.getLogger(__name__)


class _Request:
    __slots__ = ("prompt_ids", "params", "future")

    def __init__(self, prompt_ids: list[int], params: SamplingParams, future: asyncio.Future) -> None:
        self.prompt_ids = prompt_ids
        self.params = params
        self.future = future


class HFBackend:
    """Generate with a ``transformers`` causal LM (optionally a PEFT model) in this process.

    Args:
        model: A causal LM (or ``peft.PeftModel``); its device is used.
        tokenizer: Its tokenizer; supplies the pad and EOS ids.
        max_batch: Most requests fused into one ``generate`` call.
        batch_window_s: How long the first request of a batch waits for company.
        prefix_cache_tokens: Most tokens whose keys/values are kept for reuse across turns and episodes
            (per token 2 x layers x kv_heads x head_dim values: 57 KB for a 7B Qwen2.5 in bf16, 4 KB for the
            benchmark's model). 0 turns reuse off.

    Example::

        backend = HFBackend(model, tokenizer)
        gen = await backend.generate(prompt_ids, SamplingParams(temperature=0, max_new_tokens=64))
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 16, batch_window_s: float = 0.002,
                 prefix_cache_tokens: int = 131_072) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; left-padded batching needs one")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._lock = threading.Lock()  # one generate at a time on the shared model
        self.stats: dict[str, float] = {"batches": 0, "requests": 0, "new_tokens": 0, "generate_s": 0.0,
                                        "prompt_tokens": 0, "prefill_tokens": 0, "reused_tokens": 0, "prefill_s": 0.0,
                                        "cache_invalidations": 0}
        self._reuse = PrefixReuse(prefix_cache_tokens, self.stats) if prefix_cache_tokens > 0 else None
        self.reuse_off_because: str | None = "prefix_cache_tokens=0" if self._reuse is None else None
        self._check_reuse()

    @property
    def reuses_prefixes(self) -> bool:
        """Whether turns prefill only their new tokens (on, and the model allows it: see ``reuse_off_because``)."""
        return self._reuse is not None and self.reuse_off_because is None

    @property
    def cached_tokens(self) -> int:
        """Tokens whose keys/values the prefix cache holds now (bounded by ``prefix_cache_tokens``)."""
        return self._reuse.cache.tokens if self._reuse is not None else 0

    def clear_prefix_cache(self) -> None:
        """Drop every cached prefix. Done automatically when the weights change; for callers that know better."""
        with self._lock:
            if self._reuse is not None:
                self._reuse.invalidate()

    def release(self, token_ids: list[int]) -> int:
        """Forget the cached turns of a finished dialogue whose last prompt + completion is ``token_ids``.

        Optional: the cap on cached tokens evicts finished dialogues anyway (least recently used first), and a
        weight change clears everything; a caller that knows when an episode ends frees its memory sooner.
        Returns the number of tokens freed.
        """
        if self._reuse is None:
            return 0
        with self._lock:
            return self._reuse.cache.release(list(token_ids))

    # --- public API ----------------------------------------------------------------------
    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.get_loop() is not loop or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._batcher(self._queue))
        future: asyncio.Future = loop.create_future()
        await self._queue.put(_Request(list(prompt_ids), params, future))
        return await future

    def generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Synchronous batched generation (all prompts share ``params``)."""
        with self._lock:
            started = time.perf_counter()
            try:
                return self._generate(prompts, params)
            finally:
                self.stats["generate_s"] += time.perf_counter() - started

    def load_adapter(self, path: str, name: str) -> None:
        """Switch generation to the PEFT adapter saved at ``path``."""
        from peft import PeftModel

        with self._lock:
            if isinstance(self.model, PeftModel):
                if name in self.model.peft_config:
                    self.model.delete_adapter(name)
                self.model.load_adapter(path, adapter_name=name)
                self.model.set_adapter(name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.eval()
            if self._reuse is not None:  # the same adapter name may come back with other weights
                self._reuse.invalidate()
                self._check_reuse()

    # --- batching ------------------------------------------------------------------------
    async def _batcher(self, queue: asyncio.Queue[_Request]) -> None:
        while True:
            first = await queue.get()
            batch = [first]
            await asyncio.sleep(self.batch_window_s)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            # Fuse requests that differ only in seed: one batch draws from one generator (seeded by its
            # first request), so per-row seeds cannot be honoured inside a batch anyway.
            groups: dict[SamplingParams, list[_Request]] = {}
            for req in batch:
                groups.setdefault(req.params.model_copy(update={"seed": None}), []).append(req)
            for key, reqs in groups.items():
                params = key.model_copy(update={"seed": reqs[0].params.seed})
                try:
                    outs = await asyncio.to_thread(self.generate_batch, [r.prompt_ids for r in reqs], params)
                except Exception as exc:  # fail the waiting episodes, keep the batcher alive
                    for r in reqs:
                        if not r.future.done():
                            r.future.set_exception(exc)
                    continue
                for r, out in zip(reqs, outs, strict=True):
                    if not r.future.done():
                        r.future.set_result(out)

    def _generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        model, tok = self.model, self.tokenizer
        device = next(model.parameters()).device
        width = max(len(p) for p in prompts)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        stops = sorted({*_eos_ids(model, tok), *params.stop_token_ids})
        greedy = params.temperature == 0.0
        kwargs: dict[str, Any] = {"do_sample": not greedy, "max_new_tokens": params.max_new_tokens,
                                  "eos_token_id": stops, "pad_token_id": pad}
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        self.stats["prompt_tokens"] += sum(len(p) for p in prompts)
        if params.seed is not None:
            torch.manual_seed(params.seed)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                if self._reuse is not None and self.reuse_off_because is None:
                    results = self._reuse.generate(model, prompts, params, set(stops), pad)
                    self._count(results)
                    return results
                self.stats["prefill_tokens"] += sum(len(p) for p in prompts)
                out = model.generate(input_ids=input_ids, attention_mask=attention, return_dict_in_generate=True,
                                     output_logits=True, **kwargs)
        finally:
            if was_training:
                model.train()
        new = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1).float()  # (batch, new, vocab): raw, before temperature
        if not greedy:  # report the sampling distribution's logprobs, as the trainer recomputes them
            logits = logits / params.temperature
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        results = []
        stop_set = set(stops)
        for row_ids, row_lp in zip(new.tolist(), chosen.tolist(), strict=True):
            end = next((i + 1 for i, t in enumerate(row_ids) if t in stop_set), None)
            reason = "stop" if end is not None else "length"
            end = end if end is not None else len(row_ids)
            results.append(Generation(token_ids=row_ids[:end], logprobs=row_lp[:end], finish_reason=reason))
        self._count(results)
        return results

    def _count(self, results: list[Generation]) -> None:
        self.stats["batches"] += 1
        self.stats["requests"] += len(results)
        self.stats["new_tokens"] += sum(len(r.token_ids) for r in results)

    def _check_reuse(self) -> None:
        if self._reuse is None:
            return
        self.reuse_off_because = reuse_blocker(self.model)
        if self.reuse_off_because is not None:
            logger.info("HFBackend: no prefix reuse (%s); every turn prefills its whole prompt", self.reuse_off_because)


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids
