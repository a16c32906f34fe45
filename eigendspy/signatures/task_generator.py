"""Signature of the task generator: one executable task (scenario + gold actions + checks)."""

from __future__ import annotations

from typing import Any

import dspy
from pydantic import BaseModel, ConfigDict, Field

from eigendspy.core.task import DEFAULT_REWARD_BASIS, RewardType


class ActionDraft(BaseModel):
    """One gold tool call: a tool name and its exact arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A tool name from the allowed tools")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Exact arguments, with real DB values")


class TaskDraft(BaseModel):
    """A task as a model writes it; `TaskGenerator` turns it into an `eigendspy.core.task.Task`."""

    model_config = ConfigDict(extra="forbid")

    persona: str = Field(description="Who the user is and how they talk")
    reason_for_call: str = Field(description="What the user wants, in second person ('You want to ...')")
    known_info: str = Field(description="Facts the user knows and can give when asked (names, ids, zip ...)")
    unknown_info: str = Field("", description="Facts the user does not know")
    task_instructions: str = Field(description="How the user behaves: what to insist on, when to accept or stop")
    actions: list[ActionDraft] = Field(description="The reference solution: every tool call, in order")
    communicate_info: list[str] = Field(
        default_factory=list, description="Exact values the agent must tell the user (e.g. a refund amount)"
    )
    reward_basis: list[RewardType] = Field(
        default_factory=lambda: list(DEFAULT_REWARD_BASIS), description="Which checks decide success"
    )
    state_predicates: list[str] = Field(
        default_factory=list, description="Optional boolean expressions over the final DB `db` that must hold"
    )


class GenerateTask(dspy.Signature):
    """You write one realistic customer-service task for the given plan, grounded in real data.

    The user scenario must give the simulated user everything the agent will need to ask for
    (identity details, which order or reservation, what to change) without telling the user
    how the agent should solve it. The gold actions are the exact tool calls a policy-following
    agent makes, in order, including the lookups; use only the allowed tools and only ids and
    values that appear in the entities. Every write must be allowed by the policy and change
    something. If feedback from a rejected attempt is given, fix every point it raises.
    """

    domain: str = dspy.InputField(desc="The domain's name")
    policy: str = dspy.InputField(desc="The domain policy the agent must follow")
    tools: str = dspy.InputField(desc="The domain's tools, one per line: name(args) [write]: description")
    allowed_tools: list[str] = dspy.InputField(desc="Tool names the gold actions may use")
    plan: str = dspy.InputField(desc="The plan this task must instantiate")
    entities: str = dspy.InputField(desc="Real database rows (compact JSON) to build the task from")
    feedback: str = dspy.InputField(desc="Why the previous attempt was rejected; empty on the first attempt")
    task: TaskDraft = dspy.OutputField(desc="The task")
