"""Signature of the meta-planner: diverse (synthesis plan, evaluation plan) pairs for a domain."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, ConfigDict

from eigendspy.core.plans import EvaluationPlan, SynthesisPlan


class PlanDraft(BaseModel):
    """A plan pair as a model writes it: no id and no round (the module assigns both)."""

    model_config = ConfigDict(extra="forbid")

    synthesis: SynthesisPlan
    evaluation: EvaluationPlan


class MetaPlan(dspy.Signature):
    """You design task plans for synthesizing customer-service training dialogues in one domain.

    Write `n` plan pairs. Each synthesis plan names a kind of task the domain's tools and policy
    support (intent family, complexity, tool pattern, user style, edge case); its evaluation plan
    says what a correct agent does for that kind of task and which failures to watch for. Cover
    different intents, complexities and edge cases: no two plans, and no plan and a previously
    used plan, may share the same intent family, complexity and edge case. Use only the listed
    tools, and only tasks the policy allows an agent to solve (or requires it to refuse).
    """

    policy: str = dspy.InputField(desc="The domain policy the agent must follow")
    tools: str = dspy.InputField(desc="The domain's tools, one per line: name(args) [write]: description")
    previous_plans: str = dspy.InputField(desc="Plans already used; do not repeat their cells")
    n: int = dspy.InputField(desc="How many plan pairs to write")
    plans: list[PlanDraft] = dspy.OutputField(desc="The new plan pairs, all different from each other")
