"""`RecipeResult`: what ``<out>/recipe.json`` holds, as one validated model.

Why a model and not a dict: the benchmark script, the plot and the test all read the same file, and a
later run at scale is compared with this one; a schema makes a missing or renamed field an error at write
time instead of a silent gap in a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ColumnEval(BaseModel):
    """One column on one held-out set."""

    model_config = ConfigDict(extra="forbid")

    column: str
    held_out: str
    num_tasks: int
    num_trials: int
    pass_k: dict[int, float]
    pass_k_ci: dict[int, tuple[float, float]] = Field(default_factory=dict)
    avg_reward: float
    avg_reward_ci: tuple[float, float] | None = None
    terminations: dict[str, int] = Field(default_factory=dict)
    tokens_per_s: float = 0.0
    wall_s: float = 0.0


class GRPOCurve(BaseModel):
    """Per optimizer step of one GRPO column: mean reward over all episodes, share of groups filtered."""

    model_config = ConfigDict(extra="forbid")

    column: str
    user: str
    dynamic_filtering: bool
    reward: list[float]
    filtered_fraction: list[float]
    pass_rate: list[float]
    policy_tokens_per_s: list[float]


class StageTiming(BaseModel):
    """Wall time of one stage (of the run that made its outputs) and whether this run skipped it."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    seconds: float
    skipped: bool


class RecipeResult(BaseModel):
    """Everything one recipe run measured (see `eigendspy.recipe.pipeline.run_recipe`)."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None
    teacher: str
    model: str
    eval_user: str
    config: dict[str, Any]
    evals: list[ColumnEval]
    curves: list[GRPOCurve] = Field(default_factory=list)
    stages: list[StageTiming]
    tokens_per_s: dict[str, float] = Field(default_factory=dict, description="Per stage: generated or trained "
                                           "tokens per second (SFT: trained tokens; GRPO: policy tokens; eval: "
                                           "agent tokens)")
    synthesis: dict[str, Any] = Field(default_factory=dict)
    split: dict[str, Any] = Field(default_factory=dict)
    wall_s: float = Field(0.0, description="This run's wall time (skipped stages cost nothing)")
    plot: str | None = None

    def to_json(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.model_dump_json(indent=2))
        return out

    def cell(self, column: str, held_out: str) -> ColumnEval | None:
        return next((e for e in self.evals if e.column == column and e.held_out == held_out), None)

    def table(self, k: int = 1) -> list[list[str]]:
        """Rows ``[column, "<pass^k> [lo, hi]" per held-out set]`` (the benchmark prints this)."""
        sets = sorted({e.held_out for e in self.evals})
        rows = [["column", *sets]]
        for column in dict.fromkeys(e.column for e in self.evals):
            row = [column]
            for name in sets:
                cell = self.cell(column, name)
                if cell is None or k not in cell.pass_k:
                    row.append("-")
                    continue
                lo, hi = cell.pass_k_ci.get(k, (cell.pass_k[k], cell.pass_k[k]))
                row.append(f"{cell.pass_k[k]:.3f} [{lo:.3f}, {hi:.3f}]")
            rows.append(row)
        return rows
