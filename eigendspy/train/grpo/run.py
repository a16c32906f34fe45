"""`train_grpo(config)`: build the domain, task pool, user, policy (LoRA) and TRL trainer, then train.

Kept apart from `eigendspy.train.grpo.trainer` (the rollout function and trainer class) so tests and notebooks
can assemble their own trainer around scripted backends while the CLI uses this one entry point.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eigendspy.core.orchestrator import EpisodeConfig
from eigendspy.core.participants import Participant
from eigendspy.core.task import Task
from eigendspy.train.backends.base import RolloutBackend, SamplingParams
from eigendspy.train.grpo.config import GRPORunConfig
from eigendspy.train.grpo.trainer import EigenGRPOTrainer, EpisodeRollout, checker_reward

logger = logging.getLogger(__name__)


class GRPOResult(BaseModel):
    output_dir: str
    adapter_dir: str
    global_step: int
    rollouts: list[dict[str, Any]]


def load_domain(config: GRPORunConfig) -> Any:
    """The domain the config names, with its tau2 overlay and generator options (the DB the tasks live in)."""
    from eigendspy.domains import get_domain

    return get_domain(config.domain, data_dir=config.data_dir, **config.domain_options)


def load_tasks(config: GRPORunConfig) -> tuple[Any, dict[str, Task]]:
    """The domain and the RL task pool: an exported ``rl_tasks`` set, or the domain's own tasks."""
    domain = load_domain(config)
    if config.tasks:
        from datasets import load_from_disk

        from eigendspy.engine.export import task_from_row
        from eigendspy.train.grpo.provenance import check_rows

        rows = [row for row in load_from_disk(config.tasks) if row.get("domain", config.domain) == config.domain]
        check_rows(rows, domain)
        tasks = [task_from_row(row) for row in rows]
    else:
        tasks = list(domain.tasks(config.split))
    if config.task_ids is not None:
        by_id = {t.id: t for t in tasks}
        missing = [tid for tid in config.task_ids if tid not in by_id]
        if missing:
            raise ValueError(f"task_ids not found in the pool: {missing}")
        tasks = [by_id[tid] for tid in config.task_ids]  # the given order (the dataset's, unshuffled)
    if not tasks:
        raise ValueError(f"no RL tasks for domain {config.domain!r} (tasks={config.tasks}, split={config.split})")
    if config.tasks:  # exported tasks must still be solvable here; the domain's own tasks are its ground truth
        from eigendspy.train.grpo.provenance import check_gold

        check_gold(tasks, domain)
    return domain, {t.id: t for t in tasks}


def task_dataset(task_ids: list[str], steps: int, groups_per_step: int):  # a datasets.Dataset
    """The trainer's dataset: one ``prompt`` (a task id) per group, enough rows for ``steps`` steps.

    The fingerprint is computed here (a hash of the ids) instead of by ``datasets``, whose dill-based
    hashing of the Arrow table failed on the GPU machine's Python 3.12 (``Can't pickle MonthDayNano``).
    """
    import hashlib

    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    need = max(steps * groups_per_step, len(task_ids))
    prompts = [task_ids[i % len(task_ids)] for i in range(need)]
    fingerprint = hashlib.sha256("\n".join(prompts).encode()).hexdigest()[:16]
    return Dataset(InMemoryTable(pa.table({"prompt": prompts})), fingerprint=fingerprint)


def grpo_args(config: GRPORunConfig, **overrides: Any):  # a trl.GRPOConfig
    from trl import GRPOConfig

    kwargs: dict[str, Any] = dict(
        output_dir=config.output_dir, max_steps=config.max_steps, learning_rate=config.learning_rate,
        num_generations=config.num_generations,
        **batch_args(config), beta=config.beta, loss_type=config.loss_type,
        epsilon=config.epsilon, seed=config.seed, logging_steps=config.logging_steps, save_steps=config.save_steps,
        report_to=config.report_to, max_completion_length=config.max_new_tokens,
        temperature=max(config.temperature, 1e-3),
        top_p=config.top_p, disable_tqdm=False, remove_unused_columns=False, shuffle_dataset=True,
    )
    if config.use_cpu is not None:
        kwargs["use_cpu"] = config.use_cpu
    kwargs.update(_vllm_args(config))
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


def batch_args(config: GRPORunConfig) -> dict[str, Any]:
    """TRL's batch geometry: one rollout call per step over all its episodes, trained in micro-batches.

    TRL calls ``rollout_func`` once per *generation batch* of ``per_device_train_batch_size x
    steps_per_generation`` prompts per process, computes the group-relative advantages over it, then
    shuffles it and feeds it to the loss one ``per_device_train_batch_size`` slice at a time. With
    ``steps_per_generation == gradient_accumulation_steps`` that is exactly one optimizer step: the
    step's ``num_generations x tasks_per_step`` episodes are sampled (and filtered, refilled) together
    and their gradients accumulated over micro-batches of ``micro_batch_size``.
    """
    micro = config.episodes_per_micro_batch
    accumulation = config.num_generations * config.tasks_per_step // micro
    return dict(per_device_train_batch_size=micro, gradient_accumulation_steps=accumulation,
                steps_per_generation=accumulation, gradient_checkpointing=config.activation_checkpointing)


def _vllm_args(config: GRPORunConfig) -> dict[str, Any]:
    """TRL's vLLM arguments (backend 'trl-vllm') and its importance-sampling knobs, which `EigenGRPOTrainer`
    applies to every off-policy batch, whichever backend sampled it."""
    args: dict[str, Any] = dict(
        vllm_importance_sampling_correction=config.importance_sampling_correction,
        vllm_importance_sampling_mode=config.importance_sampling_mode,
        vllm_importance_sampling_clip_min=config.importance_sampling_clip_min,
        vllm_importance_sampling_clip_max=config.importance_sampling_clip_max,
    )
    if config.backend == "trl-vllm":
        context = config.max_context_tokens + config.max_new_tokens if config.max_context_tokens else None
        args.update(use_vllm=True, vllm_mode=config.vllm_mode, vllm_server_host=config.vllm_server_host,
                    vllm_server_port=config.vllm_server_port, vllm_server_timeout=config.vllm_server_timeout,
                    vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization, vllm_max_model_length=context)
    return args


def build_trainer(
    config: GRPORunConfig,
    *,
    user: Participant | None = None,
    backend: RolloutBackend | None = None,
    tasks: list[Task] | None = None,
    capture: bool = False,
    **arg_overrides: Any,
) -> tuple[EigenGRPOTrainer, EpisodeRollout]:
    """Assemble the trainer; ``user`` / ``backend`` / ``tasks`` override what the config names."""
    from peft import LoraConfig

    from eigendspy.train.grpo.geometry import check_memory
    from eigendspy.train.models import load_model
    from eigendspy.train.participants import build_user

    check_memory(config)  # before loading anything: an impossible micro-batch is refused with its numbers
    if tasks is None:
        domain, pool = load_tasks(config)
    else:
        domain, pool = load_domain(config), {t.id: t for t in tasks}
    if user is None:
        user = build_user(config.user, api_base=config.user_api_base, seed=config.seed,
                          tokenizer=config.user_tokenizer, device=config.user_device)
    if backend is None and config.backend == "vllm":
        from eigendspy.train.backends.vllm import VLLMServerBackend

        backend = VLLMServerBackend(config.vllm_url, config.vllm_model)
    if callable(getattr(backend, "wait_ready", None)):  # before loading anything: fail fast, with the reason
        backend.wait_ready(timeout_s=config.vllm_server_timeout)
    if config.adapter is not None:  # the SFT adapter over the configured base, trained further
        model, tokenizer = load_model(config.adapter, trainable=True, base=config.model)
    else:
        model, tokenizer = load_model(config.model)
    peft_config = None
    if config.adapter is None:
        peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=config.target_modules, task_type="CAUSAL_LM")
    rollout = EpisodeRollout(
        domain, pool, user, backend=backend,
        sampling=SamplingParams(temperature=config.temperature, top_p=config.top_p,
                                max_new_tokens=config.max_new_tokens, seed=config.seed),
        dynamic_filtering=config.dynamic_filtering, max_refill_rounds=config.max_refill_rounds,
        episode_config=EpisodeConfig(max_steps=config.max_episode_steps), concurrency=config.concurrency,
        max_context_tokens=config.max_context_tokens, seed=config.seed,
        adapter_dir=str(Path(config.output_dir) / "rollout_adapters") if backend is not None else None,
        overlap=config.overlap_rollouts, infra_retries=config.infra_retries,
        max_infra_error_share=config.max_infra_error_share,
    )
    trainer = EigenGRPOTrainer(
        model=model, reward_funcs=checker_reward, args=grpo_args(config, **arg_overrides),
        train_dataset=task_dataset(list(pool), config.max_steps, config.tasks_per_step),
        processing_class=tokenizer, peft_config=peft_config, rollout_func=rollout, capture=capture,
    )
    if backend is None and config.backend == "trl-vllm":  # sample through the vLLM client/engine TRL just built
        from eigendspy.train.backends.trl_vllm import TRLVLLMBackend

        rollout.backend = TRLVLLMBackend(trainer.vllm_generation)
    return trainer, rollout


def train_grpo(config: GRPORunConfig, **kwargs: Any) -> GRPOResult:
    """Train, resuming from the newest checkpoint in ``output_dir`` when ``config.resume``."""
    from transformers.trainer_utils import get_last_checkpoint

    trainer, rollout = build_trainer(config, **kwargs)
    out = Path(config.output_dir)
    last = get_last_checkpoint(str(out)) if config.resume and out.is_dir() else None
    try:
        trainer.train(resume_from_checkpoint=last)
    finally:
        rollout.close()
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))
    result = GRPOResult(output_dir=str(out), adapter_dir=str(adapter_dir), global_step=trainer.state.global_step,
                        rollouts=[{k: v for k, v in h.items() if k != "kept_rewards"} for h in rollout.history])
    (out / "grpo_result.json").write_text(json.dumps(result.model_dump(), indent=2))
    return result
