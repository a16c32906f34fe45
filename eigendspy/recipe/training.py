"""The training stages: LoRA SFT of the agent and of the user model, and one GRPO run per GRPO column.

Thin on purpose: `eigendspy.train.sft.train_sft` and `eigendspy.train.grpo.run.train_grpo` do the work,
with the rendering every stage shares (`eigendspy.core.render`, tools inlined for templates without tool
support). What this module fixes is the recipe's choices: the SFT rows are the train split's export, GRPO
starts from the SFT adapter on the train split's ``rl_tasks``, and a model user is built here with a short
turn budget (a customer's message is short, and every user token costs CPU time in a rollout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eigendspy.recipe.columns import ColumnPlan
from eigendspy.recipe.config import RecipeConfig


def sft_run(config: RecipeConfig, model: str, export_dir: Path, folder: Path, side: str) -> dict[str, Any]:
    """Train the ``side`` (``"agent"`` or ``"user"``) adapter on the export; return `SFTResult` as JSON."""
    from eigendspy.train.sft import LoraSettings, SFTRunConfig, train_sft

    s = config.sft
    result = train_sft(SFTRunConfig(
        model=model, dataset=export_dir, side=side, output_dir=folder, max_steps=s.steps,
        learning_rate=s.learning_rate, lora=LoraSettings(r=s.lora_r, alpha=s.lora_alpha),
        max_length=s.max_length, per_device_train_batch_size=s.batch_size, gradient_accumulation_steps=s.grad_accum,
        warmup_steps=0, logging_steps=1, save_steps=s.steps, save_total_limit=1, report_to=[], seed=config.seed,
        activation_checkpointing=False,
    ))
    return result.model_dump(mode="json")


def user_spec(plan: ColumnPlan, model: str, sft_user_adapter: Path | None) -> str:
    """The participant spec of a GRPO column's user."""
    if plan.user == "oracle":
        return "oracle"
    if plan.user == "base":
        return f"model:{model}"
    if sft_user_adapter is None:
        raise ValueError(f"column {plan.column} trains against the SFT'd user model, but none was trained")
    return f"model:{sft_user_adapter}"


def grpo_run(config: RecipeConfig, plan: ColumnPlan, model: str, sft_adapter: Path, export_dir: Path,
             folder: Path, user: str) -> dict[str, Any]:
    """GRPO from the SFT adapter for one column; return its per-step rollout stats."""
    import torch

    from eigendspy.train.grpo.config import GRPORunConfig
    from eigendspy.train.grpo.run import train_grpo
    from eigendspy.train.participants import build_user

    g = config.grpo
    run = GRPORunConfig(
        model=model, adapter=str(sft_adapter), output_dir=str(folder), domain=config.domain,
        domain_options=dict(config.domain_options), tasks=str(export_dir / "rl_tasks"), user=user,
        num_generations=g.generations, tasks_per_step=g.groups_per_step, max_steps=g.steps,
        learning_rate=g.learning_rate, temperature=g.temperature, max_new_tokens=g.max_new_tokens,
        max_episode_steps=g.max_episode_steps, concurrency=g.generations * g.groups_per_step,
        dynamic_filtering=plan.dynamic_filtering, max_refill_rounds=g.max_refill_rounds, report_to=[],
        logging_steps=1, save_steps=g.steps, seed=config.seed, memory_budget_gib=None,
        use_cpu=None if torch.cuda.is_available() else True,
    )
    participant = build_user(user, seed=config.seed, max_new_tokens=g.user_max_new_tokens)
    result = train_grpo(run, user=participant)
    return {"adapter_dir": result.adapter_dir, "global_step": result.global_step, "user": user,
            "dynamic_filtering": plan.dynamic_filtering, "steps": result.rollouts}
