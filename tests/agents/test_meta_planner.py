"""MetaPlanner: typed plans from a scripted LM, ids assigned in code, duplicate cells dropped."""

from __future__ import annotations

import asyncio

import dspy

from eigendspy.agents import MetaPlanner
from eigendspy.agents.meta_planner import assign_plans
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.domains import get_domain
from eigendspy.signatures.meta_planner import PlanDraft
from eigendspy.testing.lm import scripted_lm


def draft(intent: str, complexity: str = "single_action", edge: str = "none") -> dict:
    return {
        "synthesis": {"intent_family": intent, "complexity": complexity, "tool_pattern": "find user -> act",
                      "user_style": "terse", "edge_case": edge},
        "evaluation": {"rubric": f"does {intent} correctly", "failure_types": ["skips confirmation"]},
    }


def existing(intent: str) -> PlanPair:
    d = PlanDraft.model_validate(draft(intent))
    return PlanPair(plan_id="p0_0", synthesis=d.synthesis, evaluation=d.evaluation)


def test_plans_are_typed_and_inputs_reach_the_lm():
    seen = []

    def policy(req):
        seen.append(req)
        return {"plans": [draft("cancel a pending order"), draft("return items", "multi_step"),
                          draft("exchange items", edge="user_changes_mind")]}

    domain = get_domain("retail")
    pred = MetaPlanner(lm=scripted_lm(policy))(domain=domain, n=3, previous=[existing("track an order")], round=1)
    assert isinstance(pred, dspy.Prediction)
    assert [p.plan_id for p in pred.plans] == ["p1_0", "p1_1", "p1_2"]
    assert all(isinstance(p, PlanPair) and p.round == 1 for p in pred.plans)
    req = seen[0]
    assert req.inputs["n"] == "3"
    assert "track an order" in req.inputs["previous_plans"]
    assert "cancel_pending_order(order_id, reason) [write]" in req.inputs["tools"]
    assert req.inputs["policy"].strip()[:40] in domain.policy
    assert "plan pairs" in req.instructions


def test_duplicate_cells_are_dropped_and_at_most_n_returned():
    answer = {"plans": [
        draft("Cancel a pending order"),  # same cell as a previous plan (case/space-insensitive)
        draft("return items"),
        draft("return items "),  # duplicate within the batch
        draft("return items", "multi_step"),  # a different cell
        draft("update address"),
        draft("change payment"),
    ]}
    planner = MetaPlanner(lm=scripted_lm(lambda req: answer))
    pred = planner(domain=get_domain("mock"), n=3, previous=[existing("cancel a pending order")])
    cells = [p.synthesis.cell for p in pred.plans]
    assert cells == [("return items", "single_action", "none"), ("return items", "multi_step", "none"),
                     ("update address", "single_action", "none")]
    assert len(pred.dropped) == 3
    assert [p.plan_id for p in pred.plans] == ["p0_1", "p0_2", "p0_3"]  # "p0_0" is taken by the previous plan


def test_aforward_matches_forward():
    answer = {"plans": [draft("cancel a pending order")]}
    pred = asyncio.run(MetaPlanner(lm=scripted_lm(lambda req: answer)).acall(domain=get_domain("mock"), n=2))
    assert [p.plan_id for p in pred.plans] == ["p0_0"]


def test_assign_plans_is_pure():
    d = PlanDraft(synthesis=SynthesisPlan(intent_family="x", complexity="single_action", tool_pattern="a",
                                          user_style="b"), evaluation=EvaluationPlan(rubric="r"))
    kept, dropped = assign_plans([d, d], [], n=5, round=2)
    assert [p.plan_id for p in kept] == ["p2_0"] and dropped == [d]
