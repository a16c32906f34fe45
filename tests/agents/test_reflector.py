"""Reflector: a revised child plan with lineage, from failures with blame."""

from __future__ import annotations

import asyncio

from eigendspy.agents import Reflector
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.records import Verdict
from eigendspy.testing.lm import scripted_lm

PARENT = PlanPair(
    plan_id="p0_2",
    synthesis=SynthesisPlan(intent_family="exchange items", complexity="multi_step", tool_pattern="find -> exchange",
                            user_style="chatty", edge_case="user_changes_mind"),
    evaluation=EvaluationPlan(rubric="exchange only after confirmation"),
)
REVISED = {
    "synthesis": {"intent_family": "exchange items", "complexity": "multi_step",
                  "tool_pattern": "find user -> order details -> product -> exchange", "user_style": "clear",
                  "edge_case": "none"},
    "evaluation": {"rubric": "exchange same-product items after confirmation", "failure_types": ["wrong item"]},
}


def test_reflector_makes_a_child_plan_from_failures():
    seen = []

    def policy(req):
        seen.append(req)
        return {"revised": REVISED, "rationale": "the edge case confused the user"}

    failures = [Verdict(passed=False, blame="user", reasons=["user stopped early"]), "gold write #3 errors"]
    other = PARENT.model_copy(update={"plan_id": "p0_5", "synthesis": PARENT.synthesis.model_copy(
        update={"edge_case": "none"})})
    pred = Reflector(lm=scripted_lm(policy))(plan=PARENT, failures=failures, others=[other])
    child = pred.plan
    assert isinstance(child, PlanPair)
    assert child.plan_id == "p1_2" and child.parent_id == "p0_2" and child.round == 1
    assert child.synthesis.edge_case == "none" and pred.rationale
    assert pred.overlaps == ["p0_5"]
    assert "blame=user: user stopped early" in seen[0].inputs["failures"]
    assert "gold write #3 errors" in seen[0].inputs["failures"]
    assert "[p0_2]" in seen[0].inputs["plan"]


def test_reflector_async_and_explicit_id():
    lm = scripted_lm(lambda req: {"revised": REVISED, "rationale": "x"})
    custom = PARENT.model_copy(update={"plan_id": "custom"})
    pred = asyncio.run(Reflector(lm=lm).acall(plan=custom, failures=[]))
    assert pred.plan.plan_id == "custom.r1" and pred.overlaps == []
    pred = Reflector(lm=lm)(plan=PARENT, failures=[], plan_id="mine")
    assert pred.plan.plan_id == "mine"
