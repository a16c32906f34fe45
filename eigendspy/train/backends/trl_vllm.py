"""A rollout backend over TRL's own vLLM integration: the trainer's ``vllm_generation``, token ids in and out.

Why TRL's integration rather than our server backend: with ``GRPOConfig(use_vllm=True)`` TRL owns the
vLLM side of training — it pushes the trained weights into vLLM before every rollout (LoRA merged, no
adapter files, no shared filesystem), asks vLLM for *processed* logprobs (after temperature, the
distribution the trainer scores), and applies its truncated importance-sampling correction to them.
This backend only lets our multi-turn episodes sample through the objects TRL built:

* ``vllm_mode="server"`` (``trl vllm-serve`` on its own GPUs): each turn is one
  ``VLLMClient.generate(prompts=[ids], n=1, logprobs=0, ...)`` call, issued from a worker thread so
  many episodes are in flight and the server batches them continuously. TRL creates its client on the
  main process only (it syncs the weights), so other ranks get a client of their own for generation.
* ``vllm_mode="colocate"`` (vLLM inside each training process): concurrent turns are collected for
  a few milliseconds and sent as one ``VLLMGeneration.generate(prompts, None, 1)`` call, TRL's own
  path with TRL's sampling parameters (the per-episode seed is not used: TRL seeds the engine once per
  process); calls are serialized (one engine per process).

Tested on: CPU only, against `eigendspy.testing.trl_vllm` doubles whose method signatures are checked
against TRL 1.16's ``VLLMClient`` and ``VLLMGeneration`` (call arguments, result parsing, a GRPO run
with TRL's weight-sync and importance-sampling path). Neither mode has run against a real vLLM yet:
server mode's weight sync is NCCL (CUDA only), colocate mode has not been tried with the CPU build of
vLLM, and the lent GPU machine cannot install vLLM.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import math
import threading
from typing import Any

from eigendspy.core.participants import InfrastructureError
from eigendspy.train.backends.base import Generation, SamplingParams


class TRLVLLMBackend:
    """Sample episodes' turns through a TRL ``VLLMGeneration`` (``trainer.vllm_generation``).

    Args:
        generation: The trainer's ``vllm_generation``; its mode, sampling settings and engine/client are used.
        client: Server mode: the ``VLLMClient`` to generate with. Default: the generation's own (main
            process) or, on other ranks, a new client to the same server (generation only, no weight sync).
        max_concurrency: Server mode: most requests in flight from this process.
        max_batch / batch_window_s: Colocate mode: most turns fused into one engine call, and how long the
            first turn of a batch waits for company.

    Example::

        trainer = GRPOTrainer(..., args=GRPOConfig(use_vllm=True, vllm_mode="server"), rollout_func=rollout)
        rollout.backend = TRLVLLMBackend(trainer.vllm_generation)
    """

    def __init__(self, generation: Any, *, client: Any | None = None, max_concurrency: int = 64,
                 max_batch: int = 64, batch_window_s: float = 0.002) -> None:
        if generation.mode not in ("server", "colocate"):
            raise ValueError(f"unknown vLLM mode {generation.mode!r}")
        if generation.mode == "colocate" and getattr(generation, "tensor_parallel_size", 1) != 1:
            raise ValueError("colocate rollouts need vllm_tensor_parallel_size=1: with tensor parallelism every "
                             "rank of a group must call vLLM together, and episodes take different numbers of turns")
        if getattr(generation, "enable_sleep_mode", False):
            raise ValueError("vllm_enable_sleep_mode is not supported: episodes call vLLM once per turn, and sleep "
                             "mode would discard and re-push the weights on every call")
        self.generation = generation
        self.mode = generation.mode
        self._client = client
        self.max_concurrency = max_concurrency
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._lock = threading.Lock()  # one colocated engine call at a time

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        self._check(params)
        if self.mode == "server":
            return await self._generate_remote(list(prompt_ids), params)
        return await self._generate_colocated(list(prompt_ids), params)

    def load_adapter(self, path: str, name: str) -> None:
        raise RuntimeError("TRL pushes the trained weights into vLLM before each rollout (use_vllm=True); "
                           "adapters are not loaded by path with this backend")

    # --- server mode ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """This process's ``VLLMClient`` (TRL's on the main process, a generation-only one elsewhere)."""
        if self._client is None:
            self._client = getattr(self.generation, "vllm_client", None)
        if self._client is None:
            from trl.generation.vllm_client import VLLMClient

            g = self.generation
            base_url = g.server_base_url or f"http://{g.server_host}:{g.server_port}"
            self._client = VLLMClient(base_url=base_url, group_port=g.group_port, connection_timeout=g.server_timeout)
        return self._client

    async def _generate_remote(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        g = self.generation
        extra = dict(g.generation_kwargs or {})
        if params.seed is not None:
            extra["seed"] = params.seed
        if params.stop_token_ids:
            extra["stop_token_ids"] = list(params.stop_token_ids)
        request = dict(prompts=[prompt_ids], n=1, repetition_penalty=g.repetition_penalty,
                       temperature=params.temperature, top_p=params.top_p, top_k=g.top_k,
                       min_p=0.0 if g.min_p is None else g.min_p, max_tokens=params.max_new_tokens, logprobs=0,
                       structured_outputs_regex=g.structured_outputs_regex, generation_kwargs=extra)
        if self._pool is None:  # VLLMClient's HTTP session is shared by threads (TRL does so too, up to 64)
            self._pool = concurrent.futures.ThreadPoolExecutor(self.max_concurrency, "eigendspy-trl-vllm")
        call = functools.partial(self.client.generate, **request)
        try:
            out = await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except OSError as exc:  # requests' connection errors and timeouts (after VLLMClient's own retries)
            raise InfrastructureError(f"vLLM server request failed: {exc!r}") from exc
        except Exception as exc:  # VLLMClient raises a bare Exception("Request failed: <status>, <body>")
            if _server_fault(exc):
                raise InfrastructureError(f"vLLM server error: {exc}") from exc
            raise
        logprobs = out["logprobs"]
        return self._generation(out["completion_ids"][0], None if logprobs is None else logprobs[0], params)

    # --- colocate mode -------------------------------------------------------------------
    async def _generate_colocated(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._worker is None or self._worker.get_loop() is not loop or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._batcher(self._queue))
        future: asyncio.Future = loop.create_future()
        await self._queue.put((prompt_ids, params, future))
        return await future

    async def _batcher(self, queue: asyncio.Queue) -> None:
        while True:
            batch = [await queue.get()]
            await asyncio.sleep(self.batch_window_s)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                outs = await asyncio.to_thread(self._colocated_batch, [ids for ids, _, _ in batch])
            except Exception as exc:  # fail the waiting turns, keep the batcher alive
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, params, future), (ids, logprobs) in zip(batch, outs, strict=True):
                if not future.done():
                    future.set_result(self._generation(ids, logprobs, params))

    def _colocated_batch(self, prompts: list[list[int]]) -> list[tuple[list[int], list]]:
        with self._lock:
            _, completion_ids, logprobs, _ = self.generation.generate(prompts, None, 1)
        if logprobs is None:
            raise RuntimeError("vLLM returned no logprobs; TRL's VLLMGeneration must be built with logprobs=0")
        return list(zip(completion_ids, logprobs, strict=True))

    # --- shared --------------------------------------------------------------------------
    def _check(self, params: SamplingParams) -> None:
        """The trainer scores tokens at TRL's temperature: sampling at another one would bias the IS ratio."""
        g = self.generation
        if not math.isclose(params.temperature, g.temperature):
            raise ValueError(f"the policy samples at temperature {params.temperature} but the trainer scores "
                             f"tokens at {g.temperature} (GRPOConfig.temperature); they must match")
        if self.mode == "colocate":
            pairs = [("top_p", params.top_p, g.top_p), ("max_new_tokens", params.max_new_tokens,
                     g.max_completion_length), ("stop_token_ids", params.stop_token_ids, ())]
            differ = {name: (ours, trls) for name, ours, trls in pairs if ours != trls}
            if differ:
                raise ValueError(f"colocate mode samples with TRL's settings; these differ (policy, TRL): {differ}")

    def _generation(self, token_ids: list[int], logprobs: list | None, params: SamplingParams) -> Generation:
        """One completion from TRL's shapes: ``logprobs[i]`` lists token i's logprobs, the sampled token's first.

        vLLM reports a NaN logprob as ``None``; it stays NaN here, and TRL's correction gives that token ratio 1.
        """
        if logprobs is None:
            raise RuntimeError("vLLM returned no logprobs; the importance-sampling correction needs them")
        lps = [math.nan if not row or row[0] is None else float(row[0]) for row in logprobs]
        stops = {*params.stop_token_ids, *_eos_ids(self.generation)}
        ids = [int(t) for t in token_ids]
        length = len(ids) >= params.max_new_tokens and not (ids and ids[-1] in stops)
        return Generation(token_ids=ids, logprobs=lps, finish_reason="length" if length else "stop")


def _eos_ids(generation: Any) -> set[int]:
    tokenizer = getattr(generation, "processing_class", None)
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps its tokenizer
    eos = getattr(tokenizer, "eos_token_id", None)
    return {eos} if isinstance(eos, int) else set()


def _server_fault(exc: Exception) -> bool:
    """5xx and 429 from VLLMClient's ``Request failed: <status>, ...`` message: not the caller's fault."""
    words = str(exc).removeprefix("Request failed: ").split(",", 1)[0].strip()
    return words.isdigit() and (int(words) >= 500 or int(words) == 429)
