"""Signature of the task judge: the half of task validation that execution cannot decide."""

from __future__ import annotations

import dspy


class JudgeTask(dspy.Signature):
    """You review a synthesized customer-service task that already executes correctly.

    Decide three things. policy_consistent: every gold action is what the policy requires for
    this request (no write the policy forbids, no required confirmation or refusal skipped).
    solvable: an agent that follows the policy can reach exactly this outcome from what the user
    can say. scenario_sufficient: the user scenario gives the user every fact the agent must ask
    for, and does not script the agent's steps. Give one short reason per problem found.
    """

    policy: str = dspy.InputField(desc="The domain policy the agent must follow")
    tools: str = dspy.InputField(desc="The domain's tools, one per line: name(args) [write]: description")
    plan: str = dspy.InputField(desc="The plan the task was written for (may be empty)")
    task: str = dspy.InputField(desc="The task: user scenario, gold actions, checks")
    policy_consistent: bool = dspy.OutputField(desc="The gold actions follow the policy")
    solvable: bool = dspy.OutputField(desc="A policy-following agent can reach the gold outcome")
    scenario_sufficient: bool = dspy.OutputField(desc="The scenario gives the user what the agent needs")
    reasons: list[str] = dspy.OutputField(desc="One short reason per problem; empty when there are none")
