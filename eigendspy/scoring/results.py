"""Result models of a checker run: per-component verdicts with human-readable reasons.

Why reasons everywhere: the same results are the optimizer's feedback (GEPA reflects on *why*
a prompt failed), the data engine's rejection log, and the RL reward. ``to_tau2()`` gives the
``reward_info`` dict in tau2-bench's shape so results can be compared component by component.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eigendspy.core.messages import STOP_REASONS, TerminationReason
from eigendspy.core.task import Action, EnvAssertion, RewardType, StatePredicate

SUCCESS_TOLERANCE = 1e-6


def is_success(reward: float) -> bool:
    """tau2's success rule: |reward - 1| <= 1e-6 (rewards are float products)."""
    return abs(reward - 1.0) <= SUCCESS_TOLERANCE


class DBCheck(BaseModel):
    db_match: bool
    db_reward: float
    predicted_db_hash: str | None = None
    predicted_user_db_hash: str | None = None
    gold_db_hash: str | None = None
    gold_user_db_hash: str | None = None


class EnvAssertionCheck(BaseModel):
    env_assertion: EnvAssertion
    met: bool
    reward: float


class ActionCheck(BaseModel):
    action: Action
    action_match: bool
    action_reward: float
    tool_type: str | None = None


class CommunicateCheck(BaseModel):
    info: str
    met: bool
    justification: str


class NLAssertionCheck(BaseModel):
    nl_assertion: str
    met: bool
    justification: str = ""


class PredicateCheck(BaseModel):
    predicate: StatePredicate
    met: bool
    error: str | None = None


class CheckResult(BaseModel):
    """The verdict of a checker on one trajectory.

    ``reward`` is tau2's reward (product over ``reward_basis``); ``passed`` additionally requires
    every eigendspy state predicate to hold. ``failures`` lists one sentence per failed
    component, written for a human (and for GEPA's reflection LM).
    """

    model_config = ConfigDict(use_enum_values=False)

    task_id: str
    reward: float
    reward_basis: list[RewardType]
    breakdown: dict[str, float] = Field(default_factory=dict)
    termination_reason: TerminationReason | None = None
    db_check: DBCheck | None = None
    env_assertions: list[EnvAssertionCheck] = Field(default_factory=list)
    action_checks: list[ActionCheck] = Field(default_factory=list)
    communicate_checks: list[CommunicateCheck] | None = None
    nl_assertions: list[NLAssertionCheck] | None = None
    state_predicates: list[PredicateCheck] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    notes: dict[str, str] = Field(default_factory=dict)
    evaluation_error: str | None = None

    @property
    def success(self) -> bool:
        """tau2's success rule: |reward - 1| <= 1e-6."""
        return is_success(self.reward)

    @property
    def passed(self) -> bool:
        return self.success and all(p.met for p in self.state_predicates)

    @property
    def score(self) -> float:
        return 1.0 if self.passed else 0.0

    def feedback(self) -> str:
        """A short paragraph explaining the verdict (empty reasons → 'all checks passed')."""
        if not self.failures:
            return f"Task {self.task_id}: all checks passed (reward {self.reward:.2f})."
        lines = [f"Task {self.task_id}: reward {self.reward:.2f}. Failed checks:"]
        lines += [f"- {reason}" for reason in self.failures]
        return "\n".join(lines)

    def _tau2_info(self) -> dict[str, Any]:
        """tau2's ``info``: one ``{"note": ...}`` (or null) per component, or a single note when the
        episode ended prematurely."""
        if "note" in self.notes and self.termination_reason not in (None, *STOP_REASONS):
            return {"note": self.notes["note"]}
        return {key: ({"note": self.notes[key]} if key in self.notes else None)
                for key in ("env", "nl", "communicate", "action")}

    def to_tau2(self) -> dict[str, Any]:
        """tau2's ``RewardInfo`` dict (the fields tau2 writes into results files)."""
        return {
            "reward": self.reward,
            "db_check": (
                {"db_match": self.db_check.db_match, "db_reward": self.db_check.db_reward}
                if self.db_check
                else None
            ),
            "env_assertions": [c.model_dump(mode="json") for c in self.env_assertions] or None,
            "action_checks": [c.model_dump(mode="json") for c in self.action_checks] or None,
            "nl_assertions": (
                [c.model_dump(mode="json") for c in self.nl_assertions] if self.nl_assertions is not None else None
            ),
            "communicate_checks": (
                [c.model_dump(mode="json") for c in self.communicate_checks]
                if self.communicate_checks is not None
                else None
            ),
            "reward_basis": [b.value for b in self.reward_basis],
            "reward_breakdown": dict(self.breakdown) or None,
            "info": self._tau2_info(),
        }
