"""Doubles of TRL's vLLM objects (``VLLMClient``, ``VLLMGeneration``) for CPU tests of the ``use_vllm`` path.

vLLM cannot run in-process on CPU here, yet `eigendspy.train.backends.trl_vllm.TRLVLLMBackend` and
`eigendspy.train.grpo.trainer.EigenGRPOTrainer` must be checked against what TRL calls and returns. These
doubles have the same method names, signatures and return shapes as TRL 1.16's (a test compares the
signatures), record every call in order, and answer from Python: a ``respond(prompt_ids, max_tokens)``
function chooses each completion's token ids and logprobs (`scripted_responder` tokenises a text script,
like `eigendspy.testing.backend.ScriptedBackend`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from eigendspy.testing.backend import Script

Respond = Callable[[list[int], int], tuple[list[int], list[float]]]
"""``respond(prompt_ids, max_tokens) -> (completion ids, the sampled tokens' logprobs)``."""


def scripted_responder(tokenizer: Any, script: Script, *, logprob: float = -1.0, seed: int = 0) -> Respond:
    """Answer with ``script(decoded prompt, rng)`` tokenised plus EOS, every token at ``logprob``."""
    rng = random.Random(seed)

    def respond(prompt_ids: list[int], max_tokens: int) -> tuple[list[int], list[float]]:
        text = script(tokenizer.decode(prompt_ids, skip_special_tokens=False), rng)
        ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id][:max_tokens]
        return ids, [logprob] * len(ids)

    return respond


class FakeVLLMClient:
    """`trl.generation.vllm_client.VLLMClient` for generation: ``calls`` holds each ``generate``'s arguments."""

    def __init__(self, respond: Respond, *, events: list[tuple[str, Any]] | None = None) -> None:
        self.respond = respond
        self.calls: list[dict[str, Any]] = []
        self.events = events if events is not None else []

    def generate(
        self,
        prompts: list[str] | list[list[int]],
        features: list[dict | None] | None = None,
        n: int = 1,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        max_tokens: int = 16,
        logprobs: int | None = 0,
        structured_outputs_regex: str | None = None,
        generation_kwargs: dict | None = None,
    ) -> dict[str, list[list[int]]]:
        call = dict(prompts=prompts, features=features, n=n, repetition_penalty=repetition_penalty,
                    temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, max_tokens=max_tokens,
                    logprobs=logprobs, structured_outputs_regex=structured_outputs_regex,
                    generation_kwargs=generation_kwargs)
        self.calls.append(call)
        self.events.append(("generate", len(prompts) * n))
        if any(isinstance(p, str) for p in prompts):
            raise TypeError("this double takes token-id prompts only (as eigendspy sends them)")
        outs = [self.respond(list(p), max_tokens) for p in prompts for _ in range(n)]
        return {
            "prompt_ids": [list(p) for p in prompts],
            "completion_ids": [ids for ids, _ in outs],
            "logprobs": None if logprobs is None else [[[lp] for lp in lps] for _, lps in outs],
            "logprob_token_ids": None if logprobs is None else [[[t] for t in ids] for ids, _ in outs],
        }

    def get_server_info(self) -> dict[str, Any]:
        """What ``trl vllm-serve`` reports (TRL's trainer checks the logprobs mode at start)."""
        return {"model_config": {"logprobs_mode": "processed_logprobs"}}

    def reset_prefix_cache(self) -> None:
        self.events.append(("reset_prefix_cache", None))


class FakeVLLMGeneration:
    """`trl.generation.vllm_generation.VLLMGeneration` without vLLM: TRL's constructor, `sync_weights`, `generate`.

    Args:
        respond: Chooses each completion (see `Respond`).
        model ... generation_kwargs: ``VLLMGeneration``'s own arguments, stored as TRL's object stores them,
            so ``functools.partial(FakeVLLMGeneration, respond)`` can replace the class TRL's trainer builds.

    ``events`` records ``("sync_weights", n)`` and ``("generate", prompts)`` in call order, so a test can
    check that TRL pushed the weights before a step's rollouts. In server mode ``vllm_client`` is a
    `FakeVLLMClient` sharing those events.
    """

    def __init__(
        self,
        respond: Respond,
        model: Any,
        accelerator: Any,
        processing_class: Any,
        mode: str = "colocate",
        structured_outputs_regex: str | None = None,
        server_base_url: str | None = None,
        server_host: str = "0.0.0.0",
        server_port: int = 8000,
        server_timeout: float = 240.0,
        group_port: int = 51216,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_length: int | None = None,
        max_num_seqs: int | None = None,
        enable_sleep_mode: bool = False,
        model_impl: str = "auto",
        trust_remote_code: bool = False,
        repetition_penalty: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        min_p: float = 0.0,
        max_completion_length: int = 16,
        logprobs: int | None = 0,
        generation_kwargs: dict | None = None,
    ) -> None:
        if mode not in ("server", "colocate"):
            raise ValueError(f"vllm_mode must be either 'server' or 'colocate', got '{mode}'.")
        settings = dict(locals())  # every argument, kept as VLLMGeneration keeps it: under its own name
        del settings["self"], settings["respond"]
        self.__dict__.update(settings)
        self.generation_kwargs = generation_kwargs or {}
        self.respond = respond
        self.events: list[tuple[str, Any]] = []
        self.generate_calls: list[dict[str, Any]] = []
        self.syncs = 0
        if mode == "server":
            self.vllm_client = FakeVLLMClient(respond, events=self.events)

    def sync_weights(self) -> None:
        self.syncs += 1
        self.events.append(("sync_weights", self.syncs))

    def generate(self, prompts: list[list[int]], images: list[list | None] | None, num_generations: int,
                 profiler: Any = None) -> tuple:
        self.generate_calls.append(dict(prompts=prompts, images=images, num_generations=num_generations))
        self.events.append(("generate", len(prompts)))
        outs = [self.respond(list(p), self.max_completion_length) for p in prompts for _ in range(num_generations)]
        return ([list(p) for p in prompts for _ in range(num_generations)], [ids for ids, _ in outs],
                [[[lp] for lp in lps] for _, lps in outs], [[[t] for t in ids] for ids, _ in outs])
