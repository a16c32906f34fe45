"""Signature of the reflector: revise a plan pair from the failures its stream produced."""

from __future__ import annotations

import dspy

from eigendspy.signatures.meta_planner import PlanDraft


class ReflectPlan(dspy.Signature):
    """You improve a task plan pair from the failures it produced in the last round.

    Failures blamed on the task mean the synthesis plan asks for tasks that cannot be written or
    solved correctly: make it concrete and feasible with the tools and policy. Failures blamed on
    the user mean the user style or edge case confuses the simulated user: make it clearer.
    Failures blamed on the assistant are useful training signal: keep what causes them, and
    sharpen the evaluation plan's rubric and failure types. Keep the plan's intent family unless
    it cannot work.
    """

    plan: str = dspy.InputField(desc="The current plan pair")
    failures: str = dspy.InputField(desc="Failures of the last round, one per line, with blame")
    revised: PlanDraft = dspy.OutputField(desc="The revised plan pair")
    rationale: str = dspy.OutputField(desc="One or two sentences on what changed and why")
