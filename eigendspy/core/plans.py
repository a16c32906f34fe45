"""Plan pairs: what a synthesis stream should make, and how its output should be judged.

The seed paper's largest SFT effect was plan diversity (64 vs 4 plan sets: 56.0 vs 42.5
Airline pass^1), so plans are first-class, typed, comparable objects: a `SynthesisPlan` names a
*cell* of the task space (intent family x complexity x edge case), which the engine uses to
report coverage and to keep streams from overlapping.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Complexity = Literal["single_action", "multi_step", "compound_request"]
EdgeCase = Literal[
    "none",
    "policy_violation_refusal",
    "missing_information",
    "user_changes_mind",
    "wrong_identity_details",
    "out_of_scope_transfer",
]


class SynthesisPlan(BaseModel):
    """What kind of task to synthesize."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    intent_family: str = Field(description="The user's goal family, e.g. 'cancel a pending order'")
    complexity: Complexity = Field(description="How many dependent actions the solution needs")
    tool_pattern: str = Field(description="Tools the solution should use, in order, e.g. 'find user -> cancel'")
    user_style: str = Field(description="How the simulated user talks, e.g. 'terse, impatient'")
    edge_case: EdgeCase = Field("none", description="A twist the agent must handle correctly")

    @property
    def cell(self) -> tuple[str, str, str]:
        """The coverage cell of this plan (used for diversity reports and overlap checks)."""
        return (self.intent_family.strip().lower(), self.complexity, self.edge_case)


class EvaluationPlan(BaseModel):
    """How dialogues made under a synthesis plan should be judged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rubric: str = Field(description="What a correct agent does for this kind of task")
    failure_types: list[str] = Field(default_factory=list, description="Failure modes to watch for")


class PlanPair(BaseModel):
    """A (synthesis plan, evaluation plan) pair owned by one stream for one round."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan_id: str
    synthesis: SynthesisPlan
    evaluation: EvaluationPlan
    round: int = 0
    parent_id: str | None = None

    def render(self) -> str:
        s, e = self.synthesis, self.evaluation
        return (f"[{self.plan_id}] intent: {s.intent_family}; complexity: {s.complexity}; tools: {s.tool_pattern}; "
                f"user: {s.user_style}; edge case: {s.edge_case}. Judge by: {e.rubric}; watch for: "
                f"{', '.join(e.failure_types) or '-'}")
