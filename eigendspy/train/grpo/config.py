"""`GRPORunConfig`: everything ``eigendspy train grpo --config FILE`` needs, validated once at the boundary."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eigendspy.train.participant_spec import ParticipantSpec


class GRPORunConfig(BaseModel):
    """Multi-turn GRPO on LoRA with trajectory-level advantages and dynamic filtering.

    Batch geometry: each optimizer step (per process) trains on ``tasks_per_step`` groups of
    ``num_generations`` episodes of one task each. With dynamic filtering on, a group whose rewards
    are all equal is dropped and replaced by a fresh task from the pool (up to
    ``max_refill_rounds`` rounds) *before* the step, so every trained group carries signal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="Base model directory (a transformers causal LM with a tool-aware chat template)")
    adapter: str | None = Field(None, description="SFT LoRA adapter to start from (trained further)")
    output_dir: str
    domain: str = "mock"
    data_dir: str | None = Field(None, description="tau2 domain directory overlay (policy, DB, tasks)")
    domain_options: dict[str, Any] = Field(default_factory=dict, description="get_domain kwargs (e.g. DB size)")
    tasks: str | None = Field(None, description="rl_tasks dataset dir (from `eigendspy export`); else domain tasks")
    split: str | None = None
    task_ids: list[str] | None = None

    user: str = Field("oracle", description="A participant spec (eigendspy.train.participant_spec): 'oracle', "
                      "'model:<dir>', 'vllm:<url>#<name>', 'lm:<LiteLLM id>' or 'dspy:<role LM id>'")
    user_api_base: str | None = Field(None, description="Endpoint of an 'lm:' or 'dspy:' user's server")
    user_tokenizer: str | None = Field(None, description="Tokenizer folder of a 'vllm:' user's model")

    num_generations: int = Field(4, ge=2)
    tasks_per_step: int = Field(2, ge=1)
    max_steps: int = Field(20, ge=1)
    learning_rate: float = 1e-5
    beta: float = Field(0.0, ge=0.0, description="KL weight; > 0 uses the adapter-disabled model as reference")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    epsilon: float = 0.2
    seed: int = 0

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    temperature: float = Field(1.0, ge=0.0)
    top_p: float = 1.0
    max_new_tokens: int = 256
    max_context_tokens: int | None = 8192
    max_episode_steps: int = Field(30, ge=2, description="Orchestrator step limit per episode")
    concurrency: int = 32

    dynamic_filtering: bool = True
    max_refill_rounds: int = Field(3, ge=0)

    backend: Literal["hf", "vllm"] = "hf"
    overlap_rollouts: bool = Field(False, description="vLLM only: sample step t+1 while step t trains (1-step lag)")
    vllm_url: str | None = None
    vllm_model: str | None = None

    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"])
    logging_steps: int = 1
    save_steps: int = 10
    resume: bool = True
    use_cpu: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> GRPORunConfig:
        if self.backend == "vllm" and not (self.vllm_url and self.vllm_model):
            raise ValueError("backend='vllm' needs vllm_url (e.g. http://localhost:8000) and vllm_model")
        if self.overlap_rollouts and self.backend != "vllm":
            raise ValueError("overlap_rollouts needs backend='vllm': in-process generation shares the trained weights")
        try:
            ParticipantSpec.parse(self.user).check_options("user", tokenizer=self.user_tokenizer,
                                                           api_base=self.user_api_base)
        except ValueError as exc:
            raise ValueError(f"user: {exc}") from None
        return self
