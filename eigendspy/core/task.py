"""Task models: the user scenario, the initial state, the gold actions and the checker criteria.

These read tau2-bench task files losslessly: every field tau2 writes has a typed home here,
unknown fields are kept (``extra="allow"``), and ``Task.to_tau2()`` dumps only the fields the
source had, so ``Task.model_validate(d).to_tau2() == d`` for every task in tau2's data. The
synthesis engine writes tasks in the same format, so tau2 can load ours and vice versa.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eigendspy.core.messages import Message, ToolCall


class RewardType(str, Enum):
    """The reward components tau2 multiplies together (only those listed in ``reward_basis``)."""

    DB = "DB"
    ENV_ASSERTION = "ENV_ASSERTION"
    NL_ASSERTION = "NL_ASSERTION"
    ACTION = "ACTION"
    COMMUNICATE = "COMMUNICATE"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Description(_Model):
    purpose: str | None = None
    relevant_policies: str | None = None
    notes: str | None = None


class StructuredUserInstructions(_Model):
    """tau2's structured scenario: what the user wants, knows, does not know, and must do."""

    domain: str
    reason_for_call: str
    known_info: str | None = None
    unknown_info: str | None = None
    task_instructions: str


class UserScenario(_Model):
    persona: str | None = None
    instructions: StructuredUserInstructions | str

    def render(self) -> str:
        """The scenario text placed in the user simulator's ``<scenario>`` block."""
        parts = []
        if self.persona:
            parts.append(f"Persona:\n{self.persona}")
        ins = self.instructions
        if isinstance(ins, str):
            parts.append(f"Instructions:\n{ins}")
        else:
            parts.append(f"Domain: {ins.domain}")
            parts.append(f"Reason for call:\n{ins.reason_for_call}")
            if ins.known_info:
                parts.append(f"Known info:\n{ins.known_info}")
            if ins.unknown_info:
                parts.append(f"Unknown info:\n{ins.unknown_info}")
            parts.append(f"Task instructions:\n{ins.task_instructions}")
        return "\n\n".join(parts)


class EnvFunctionCall(_Model):
    """A call to a domain function outside the dialogue (initialization or assertion)."""

    env_type: Literal["assistant", "user"]
    func_name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class EnvAssertion(EnvFunctionCall):
    assert_value: bool = True
    message: str | None = None


class InitializationData(_Model):
    agent_data: dict[str, Any] | None = None
    user_data: dict[str, Any] | None = None


class InitialState(_Model):
    initialization_data: InitializationData | None = None
    initialization_actions: list[EnvFunctionCall] | None = None
    message_history: list[Message] | None = None


class Action(_Model):
    """A gold action. ``compare_args=None`` compares the arguments the call passed; ``[]`` only the name."""

    action_id: str
    requestor: Literal["assistant", "user"] = "assistant"
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    info: str | None = None
    compare_args: list[str] | None = None

    def matches(self, call: ToolCall) -> bool:
        """Whether a trajectory's tool call performs this action (tau2's matching rule)."""
        if call.name != self.name or not isinstance(call.arguments, dict):
            return False
        keys = list(call.arguments) if self.compare_args is None else self.compare_args
        if not keys:
            return True
        got = {k: v for k, v in call.arguments.items() if k in keys}
        want = {k: v for k, v in self.arguments.items() if k in keys}
        return got == want

    def as_call(self, call_id: str = "") -> ToolCall:
        return ToolCall(id=call_id, name=self.name, arguments=dict(self.arguments), requestor=self.requestor)


class StatePredicate(_Model):
    """eigendspy addition: a boolean expression over the final DB dump (see ``eigendspy.scoring.sandbox.predicate``).

    ``side`` picks the agent DB (``db``) or the user DB; the expression sees it as ``db``.
    """

    expression: str
    description: str | None = None
    side: Literal["assistant", "user"] = "assistant"


DEFAULT_REWARD_BASIS = [RewardType.DB, RewardType.COMMUNICATE]


class EvaluationCriteria(_Model):
    actions: list[Action] | None = None
    env_assertions: list[EnvAssertion] | None = None
    communicate_info: list[str] | None = None
    nl_assertions: list[str] | None = None
    reward_basis: list[RewardType] = Field(default_factory=lambda: list(DEFAULT_REWARD_BASIS))
    state_predicates: list[StatePredicate] | None = None


class Task(_Model):
    """A task: what the simulated user wants, where the world starts, and how success is checked."""

    id: str
    description: Description | None = None
    user_scenario: UserScenario
    ticket: str | None = None
    initial_state: InitialState | None = None
    evaluation_criteria: EvaluationCriteria | None = None
    annotations: Any = None
    issues: list[dict[str, Any]] | None = None
    required_documents: list[str] | None = None
    user_tools: list[str] | None = None

    @property
    def gold_actions(self) -> list[Action]:
        return list(self.evaluation_criteria.actions or []) if self.evaluation_criteria else []

    @property
    def reward_basis(self) -> list[RewardType]:
        if self.evaluation_criteria is None:
            return list(DEFAULT_REWARD_BASIS)
        return list(self.evaluation_criteria.reward_basis)

    @property
    def message_history(self) -> list[Message]:
        if self.initial_state is None or not self.initial_state.message_history:
            return []
        return list(self.initial_state.message_history)

    def to_tau2(self) -> dict[str, Any]:
        """The task as tau2 would read it: only the fields that were set, JSON-safe."""
        return self.model_dump(mode="json", exclude_unset=True)


class TaskFileError(ValueError):
    """A task file could not be read; the message names the file, the task id and the field."""


def load_tasks(path: str | Path) -> list[Task]:
    """Read a tau2-format ``tasks.json``; invalid tasks raise `TaskFileError` with the exact location."""
    path = Path(path)
    if not path.exists():
        raise TaskFileError(f"task file not found: {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, list):
        raise TaskFileError(f"{path}: expected a JSON list of tasks, got {type(raw).__name__}")
    tasks = []
    for index, item in enumerate(raw):
        task_id = item.get("id", f"#{index}") if isinstance(item, dict) else f"#{index}"
        try:
            tasks.append(Task.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise TaskFileError(f"{path}: task {task_id!r}: field {loc!r}: {first['msg']}") from exc
    return tasks
