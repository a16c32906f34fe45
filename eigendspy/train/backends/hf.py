"""In-process ``transformers`` generation as a rollout backend, batching concurrent episodes.

Why batch: an RL step runs G episodes per task and many tasks at once; each episode asks for one
assistant turn at a time. Generating them one by one leaves the accelerator (or the CPU's SIMD
units) idle, so concurrent `generate` calls are collected for a few milliseconds and run as one
left-padded ``model.generate`` in a worker thread while the event loop keeps the other episodes
(user simulator, environment, checker) moving.

The backend shares the *live* model object with the trainer when given one, so in-process GRPO
always samples from the current weights with no sync step; `load_adapter` exists for callers that
train elsewhere and hand over a saved PEFT adapter.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import torch

from eigendspy.train.backends.base import Generation, SamplingParams

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

    Example::

        backend = HFBackend(model, tokenizer)
        gen = await backend.generate(prompt_ids, SamplingParams(temperature=0, max_new_tokens=64))
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 16, batch_window_s: float = 0.002) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; left-padded batching needs one")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._lock = threading.Lock()  # one generate at a time on the shared model
        self.stats: dict[str, float] = {"batches": 0, "requests": 0, "new_tokens": 0, "generate_s": 0.0}

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
        if params.seed is not None:
            torch.manual_seed(params.seed)
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                out = model.generate(input_ids=input_ids, attention_mask=attention, return_dict_in_generate=True,
                                     output_logits=True, **kwargs)
        finally:
            if was_training:
                model.train()
        new = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1).float()  # (batch, new, vocab): raw, before temperature
        chosen = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        results = []
        stop_set = set(stops)
        for row_ids, row_lp in zip(new.tolist(), chosen.tolist(), strict=True):
            end = next((i + 1 for i, t in enumerate(row_ids) if t in stop_set), None)
            reason = "stop" if end is not None else "length"
            end = end if end is not None else len(row_ids)
            results.append(Generation(token_ids=row_ids[:end], logprobs=row_lp[:end], finish_reason=reason))
        self.stats["batches"] += 1
        self.stats["requests"] += len(prompts)
        self.stats["new_tokens"] += sum(len(r.token_ids) for r in results)
        return results


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids
