"""What each compared agent (column) is: which stage makes its weights and, for GRPO columns, how it trains.

Why a table: the ablations differ from the main column in exactly one setting each (dynamic filtering, or
the user the policy trains against), and writing that down once keeps the stages, their resume keys and
the report agreeing on it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from eigendspy.recipe.config import Column, RecipeConfig


class ColumnPlan(BaseModel):
    """How one column's agent is made.

    Attributes:
        column: The column's name.
        source: The stage whose adapter is the agent (``None``: the base model itself).
        grpo: Whether the column is a GRPO run (from the SFT adapter).
        dynamic_filtering: GRPO's dynamic filtering (GRPO columns only).
        user: GRPO's user: ``"sft"`` (the SFT'd user model), ``"base"`` (the base model) or ``"oracle"``.
    """

    model_config = ConfigDict(frozen=True)

    column: Column
    source: str | None
    grpo: bool = False
    dynamic_filtering: bool = True
    user: str = "sft"

    @property
    def needs_sft_user(self) -> bool:
        return self.grpo and self.user == "sft"


def plan_column(column: Column, config: RecipeConfig) -> ColumnPlan:
    """The `ColumnPlan` of ``column`` under ``config``."""
    if column == "base":
        return ColumnPlan(column=column, source=None)
    if column == "sft":
        return ColumnPlan(column=column, source="sft_agent")
    grpo = config.grpo
    return ColumnPlan(
        column=column, source=f"train_{column}", grpo=True,
        dynamic_filtering=grpo.dynamic_filtering if column != "grpo_no_filter" else False,
        user=grpo.untrained_user if column == "grpo_untrained_user" else "sft",
    )


def column_plans(config: RecipeConfig) -> list[ColumnPlan]:
    return [plan_column(c, config) for c in config.columns]
