"""Records the data engine stores: every task and dialogue, accepted or rejected, with reasons.

Everything crossing the engine/store/export boundary is one of these pydantic models, so a run
directory is auditable (why was this rejected, who was blamed, what did it cost) and
resumable (each record carries the deterministic ``work_key`` of the work item that made it).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, Field

from eigendspy.core.messages import Message
from eigendspy.core.plans import PlanPair
from eigendspy.core.task import Task

Blame = Literal["none", "task", "assistant", "user"]


class Stage(str, Enum):
    """Where in the pipeline an item was decided."""

    PLAN = "plan"
    GENERATE = "generate"
    VALIDATE_TASK = "validate_task"
    FILTER_TASK = "filter_task"
    ROLLOUT = "rollout"
    CHECK = "check"
    VALIDATE_TRAJECTORY = "validate_trajectory"
    ACCEPT = "accept"


class Verdict(BaseModel):
    """A validator's decision with reasons (and, for trajectories, who is to blame)."""

    passed: bool
    reasons: list[str] = Field(default_factory=list)
    blame: Blame = "none"


class Usage(BaseModel):
    """LM usage attributed to one record, per role."""

    calls: dict[str, int] = Field(default_factory=dict)
    prompt_tokens: dict[str, int] = Field(default_factory=dict)
    completion_tokens: dict[str, int] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)

    def add(self, role: str, calls: int = 1, prompt_tokens: int = 0, completion_tokens: int = 0,
            cost: float = 0.0) -> None:
        self.calls[role] = self.calls.get(role, 0) + calls
        self.prompt_tokens[role] = self.prompt_tokens.get(role, 0) + prompt_tokens
        self.completion_tokens[role] = self.completion_tokens.get(role, 0) + completion_tokens
        self.cost[role] = self.cost.get(role, 0.0) + cost

    def merge(self, other: Usage) -> None:
        for role in set(other.calls) | set(other.prompt_tokens) | set(other.completion_tokens) | set(other.cost):
            self.add(role, other.calls.get(role, 0), other.prompt_tokens.get(role, 0),
                     other.completion_tokens.get(role, 0), other.cost.get(role, 0.0))


class TaskRecord(BaseModel):
    """One synthesized task and what happened to it."""

    kind: Literal["task"] = "task"
    work_key: str
    stream: int
    round: int
    plan: PlanPair | None = None
    task: Task | None = None
    accepted: bool
    stage: Stage
    reasons: list[str] = Field(default_factory=list)
    repair_rounds: int = 0
    null_pass: bool | None = None
    validation: Verdict | None = None
    usage: Usage = Field(default_factory=Usage)


class DialogueRecord(BaseModel):
    """One rolled-out dialogue with both labels: the executable checker and the LLM validator."""

    kind: Literal["dialogue"] = "dialogue"
    work_key: str
    task_id: str
    plan_id: str | None = None
    trial: int
    seed: int
    domain: str
    messages: list[Message]
    termination_reason: str
    reward: float
    checker_passed: bool
    checker_feedback: str = ""
    validator: Verdict | None = None
    accepted: bool
    stage: Stage
    reasons: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    extra: dict[str, Any] = Field(default_factory=dict)
