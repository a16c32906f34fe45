"""Rollout backends: the one narrow interface between an RL policy and whatever generates its tokens.

Why token ids in and token ids out: GRPO must score exactly the tokens the policy sampled. A backend
that took chat messages and returned text would force a re-tokenisation, and re-tokenised text is not
always the sampled sequence (BPE merges differ across a boundary), which silently biases the loss.

Implementations: `eigendspy.train.backends.hf.HFBackend` (in-process ``transformers`` generation, CPU
tests and single-GPU runs) and `eigendspy.train.backends.vllm.VLLMServerBackend` (a vLLM
OpenAI-compatible server). A backend does *not* own chat templating (`eigendspy.train.tokens`), the
episode loop (the orchestrator), or scoring (the checker).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SamplingParams(BaseModel):
    """How to sample one completion. ``temperature == 0`` means greedy decoding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()


class Generation(BaseModel):
    """One sampled completion: the exact token ids and each token's log-probability under the policy.

    ``logprobs`` are of the distribution sampled from: log-softmax of the logits divided by the sampling
    temperature (raw logits for greedy decoding). That is what TRL recomputes (it scales by its
    ``temperature``) when it corrects off-policy samples, and what vLLM returns with ``--logprobs-mode
    processed_logprobs`` (its default is raw logprobs: start servers with that flag unless temperature is 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: Literal["stop", "length"]

    @model_validator(mode="after")
    def _same_length(self) -> Generation:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} token ids but {len(self.logprobs)} logprobs")
        return self


@runtime_checkable
class RolloutBackend(Protocol):
    """Generates completions for token-id prompts; many calls may be in flight at once.

    Implementations batch concurrent calls themselves (HF) or rely on the server's continuous
    batching (vLLM). ``adapter`` names the LoRA adapter to sample from (None: the base weights, or
    whatever the backend was last told to serve via `load_adapter`).
    """

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> Generation: ...

    def load_adapter(self, path: str, name: str) -> None:
        """Serve the LoRA adapter saved at ``path`` (PEFT format) from now on, under ``name``."""
        ...
