"""Assemble `RecipeResult` from the stage markers: evaluations, GRPO curves, timings, throughput.

Kept apart from the pipeline so a finished output folder can be re-reported (or a report format changed)
without touching how stages run: everything here is read from what the stages stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eigendspy.recipe.columns import ColumnPlan
from eigendspy.recipe.config import RecipeConfig
from eigendspy.recipe.results import ColumnEval, GRPOCurve, RecipeResult, StageTiming
from eigendspy.recipe.scenario_user import ScenarioUser
from eigendspy.recipe.stages import StageMarker


def build_result(config: RecipeConfig, model: str, markers: Mapping[str, StageMarker], plans: Sequence[ColumnPlan],
                 wall_s: float) -> RecipeResult:
    """The result of one run of `eigendspy.recipe.pipeline.run_recipe` from its stage markers."""
    evals, curves, tokens = [], [], {}
    for plan in plans:
        marker = markers.get(f"eval_{plan.column}")
        evals += _evals(plan.column, marker)
        if marker and marker.result:
            tokens[marker.stage] = _mean([d["tokens_per_s"] for d in marker.result.values()])
        if plan.grpo and plan.source in markers:
            curves.append(_curve(plan, markers[plan.source].result))
            tokens[plan.source] = _mean(curves[-1].policy_tokens_per_s)
    evals += _evals("teacher", markers.get("eval_teacher"))
    for side in ("sft_agent", "sft_user"):
        if side in markers and markers[side].result.get("tokens_per_second"):
            tokens[side] = float(markers[side].result["tokens_per_second"])
    synth = markers["synthesize"].result
    split = {k: v for k, v in markers["split"].result.items() if k != "export_dir"}
    return RecipeResult(
        preset=config.preset, teacher=config.teacher, model=model, eval_user=ScenarioUser.name,
        config=config.model_dump(mode="json"), evals=evals, curves=curves,
        stages=[StageTiming(stage=m.stage, seconds=round(m.seconds, 2), skipped=m.skipped) for m in markers.values()],
        tokens_per_s={k: round(v, 2) for k, v in tokens.items()}, synthesis=synth, split=split, wall_s=round(wall_s, 2),
    )


def _evals(column: str, marker: StageMarker | None) -> list[ColumnEval]:
    out = []
    for held_out, data in (marker.result.items() if marker else []):
        report = data["report"]
        out.append(ColumnEval(
            column=column, held_out=held_out, num_tasks=report["num_tasks"], num_trials=report["num_trials"],
            pass_k={int(k): v for k, v in report["pass_hat_k"].items()},
            pass_k_ci={int(k): tuple(v) for k, v in report["pass_hat_k_ci"].items()},
            avg_reward=report["avg_reward"], avg_reward_ci=report["avg_reward_ci"],
            terminations=data.get("terminations", {}), tokens_per_s=data["tokens_per_s"], wall_s=data["wall_s"]))
    return out


def _curve(plan: ColumnPlan, result: Mapping[str, Any]) -> GRPOCurve:
    steps = result.get("steps", [])
    return GRPOCurve(column=plan.column, user=result.get("user", plan.user),
                     dynamic_filtering=plan.dynamic_filtering, reward=[s["reward_mean_all"] for s in steps],
                     filtered_fraction=[s["filtered_fraction"] for s in steps],
                     pass_rate=[s["pass_rate_all"] for s in steps],
                     policy_tokens_per_s=[s["policy_tokens_per_s"] for s in steps])


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
