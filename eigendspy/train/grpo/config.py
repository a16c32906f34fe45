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
    ``max_refill_rounds`` rounds) *before* the step, so every trained group carries signal. A group
    that lost an episode to an infrastructure error (after ``infra_retries`` reruns) is refilled the
    same way. The step's episodes are then trained on in micro-batches of ``micro_batch_size`` with
    gradient accumulation (advantages are computed over whole groups first).
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
    user_device: str | None = Field(None, description="Device of a 'model:' user (default: this rank's GPU, else CPU)")

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
    max_refill_rounds: int = Field(3, ge=0, description="Refill rounds for filtered and infra-error-lost groups")
    infra_retries: int = Field(2, ge=0, description="Reruns of an episode that ends on an infrastructure error")
    max_infra_error_share: float = Field(
        0.25, ge=0.0, le=1.0, description="A step whose share of episode attempts that end on infrastructure errors "
        "passes this stops the run (those episodes are never trained on either way)")

    micro_batch_size: int | None = Field(
        None, ge=1, description="Episodes per forward/backward pass; the step's num_generations x tasks_per_step "
        "episodes are accumulated over micro-batches (None: the whole step in one)")
    activation_checkpointing: bool = Field(True, description="Recompute activations in backward (saves memory)")
    memory_budget_gib: float | None = Field(
        80.0, gt=0, description="Per-process memory a step may use; a config whose estimate exceeds it is refused "
        "at load (eigendspy.train.grpo.geometry; None: no check)")

    backend: Literal["hf", "vllm", "trl-vllm"] = Field(
        "hf", description="'hf': in-process generation from the trained weights (CPU, small GPU runs); 'trl-vllm': "
        "TRL's vLLM integration (use_vllm=True: weights pushed to vLLM before each rollout; the GPU path); 'vllm': a "
        "vLLM server that loads each step's saved LoRA adapter (vllm_url, vllm_model)")
    overlap_rollouts: bool = Field(False, description="vLLM only: sample step t+1 while step t trains (1-step lag)")
    vllm_url: str | None = None
    vllm_model: str | None = None
    vllm_mode: Literal["server", "colocate"] = Field(
        "server", description="backend='trl-vllm': 'server' (`trl vllm-serve` on its own GPUs) or 'colocate' "
        "(a vLLM engine inside each training process, sharing its GPU)")
    vllm_server_host: str = Field("127.0.0.1", description="backend='trl-vllm', server mode: the server's host")
    vllm_server_port: int = 8000
    vllm_server_timeout: float = Field(
        240.0, gt=0, description="Seconds to wait at start for the vLLM server (`trl vllm-serve`, or "
        "backend='vllm') to be ready")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0.0, le=1.0, description="Colocate: vLLM's share of the GPU")

    importance_sampling_correction: bool = Field(
        True, description="Reweight off-policy samples (vLLM's numerics, a server's adapter, overlapped rollouts) "
        "with TRL's truncated importance sampling (its vllm_importance_sampling_correction). It needs the sampler's "
        "logprobs after temperature, as trl vllm-serve reports them; a plain vLLM server needs "
        "--logprobs-mode processed_logprobs unless temperature is 1")
    importance_sampling_mode: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] = Field(
        "token_truncate", description="Per-token ratios clipped at importance_sampling_clip_max (TRL defaults to "
        "sequence_mask; a sequence ratio over a multi-turn episode is a product of thousands of token ratios, so "
        "small per-token drift masks whole episodes)")
    importance_sampling_clip_min: float | None = None
    importance_sampling_clip_max: float | None = 3.0

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
        if self.overlap_rollouts and not self.importance_sampling_correction:
            raise ValueError("overlap_rollouts trains one step off-policy: it needs importance_sampling_correction")
        try:
            ParticipantSpec.parse(self.user).check_options("user", tokenizer=self.user_tokenizer,
                                                           api_base=self.user_api_base)
        except ValueError as exc:
            raise ValueError(f"user: {exc}") from None
        step = self.num_generations * self.tasks_per_step
        if step % self.episodes_per_micro_batch:
            raise ValueError(f"micro_batch_size={self.micro_batch_size} must divide the {step} episodes of a step "
                             f"(num_generations x tasks_per_step)")
        return self

    @property
    def episodes_per_micro_batch(self) -> int:
        return self.micro_batch_size or self.num_generations * self.tasks_per_step
