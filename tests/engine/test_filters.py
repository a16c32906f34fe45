"""Near-duplicate and held-out-overlap filters, resilience helpers, diversity numbers."""

from __future__ import annotations

import asyncio

import pytest

from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.task import Action, EvaluationCriteria, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.engine.diversity import diversity_report, jaccard, mean_pairwise_jaccard
from eigendspy.engine.filters import DuplicateFilter, HeldOutFilter, entity_ids, write_signature
from eigendspy.lm.resilience import CallFailedError, CircuitBreaker, LMUnavailableError, call_with_retries


def _task(task_id: str, *actions: tuple[str, dict]) -> Task:
    return Task(id=task_id, user_scenario=UserScenario(instructions="x"), evaluation_criteria=EvaluationCriteria(
        actions=[Action(action_id=f"{task_id}_{i}", name=n, arguments=a) for i, (n, a) in enumerate(actions)]))


@pytest.fixture(scope="module")
def retail(tau2_dir):
    return get_domain("retail", data_dir=tau2_dir / "retail")


def test_duplicate_filter_rejects_same_gold_actions_on_same_entities():
    f = DuplicateFilter()
    a = _task("a", ("get_order_details", {"order_id": "#W1"}), ("cancel_pending_order", {"order_id": "#W1",
                                                                                         "reason": "x"}))
    same = _task("b", ("cancel_pending_order", {"reason": "x", "order_id": "#W1"}),
                 ("get_order_details", {"order_id": "#W1"}))
    other = _task("c", ("cancel_pending_order", {"order_id": "#W2", "reason": "x"}))
    assert not f.check(a).rejected
    f.add(a)
    decision = f.check(same)
    assert decision.rejected and "near-duplicate of task a" in decision.reason
    assert not f.check(other).rejected


def test_held_out_overlap_on_planted_task(retail):
    held_out = retail.tasks("test")
    flt = HeldOutFilter(retail, held_out)
    assert len(flt) > 0
    victim = next(t for t in held_out if write_signature(t, retail))
    planted = _task("planted", *[(a.name, a.arguments) for a in victim.gold_actions])
    decision = flt.check(planted)
    assert decision.rejected and f"held-out task {victim.id}" in decision.reason
    train_like = _task("fresh", ("cancel_pending_order", {"order_id": "#W0000000", "reason": "ordered by mistake"}))
    assert not flt.check(train_like).rejected
    assert "#W0000000" in entity_ids(train_like)


def test_diversity_numbers():
    assert jaccard(frozenset({"a"}), frozenset({"a", "b"})) == 0.5
    t1 = _task("1", ("x", {"id": 1}))
    t2 = _task("2", ("x", {"id": 1}), ("y", {}))
    assert mean_pairwise_jaccard([t1, t2]) == 0.5
    plan = PlanPair(plan_id="p0", synthesis=SynthesisPlan(intent_family="Cancel", complexity="single_action",
                                                          tool_pattern="cancel", user_style="terse"),
                    evaluation=EvaluationPlan(rubric="r"))
    report = diversity_report([plan, plan.model_copy(update={"plan_id": "p1"})], [t1, t2], {"p0": (1, 4)})
    assert report.plan_cells_covered == 1 and report.plans == 2
    assert report.yield_per_plan == {"p0": 0.25}


def test_retries_then_success_and_failure_reason():
    calls = {"n": 0}

    async def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            raise TimeoutError("upstream timed out")
        return "ok"

    assert asyncio.run(call_with_retries(flaky, role="user", attempts=3, base_delay=0)) == "ok"

    async def broken():
        raise ValueError("garbage output")

    with pytest.raises(CallFailedError, match="garbage output"):
        asyncio.run(call_with_retries(broken, role="generator", attempts=2, base_delay=0))


def test_circuit_breaker_stops_an_unreachable_lm():
    breaker = CircuitBreaker(threshold=4)

    async def down():
        raise ConnectionError("connection refused")

    async def many():
        for _ in range(10):
            try:
                await call_with_retries(down, role="assistant", attempts=2, base_delay=0, breaker=breaker)
            except CallFailedError:
                pass

    with pytest.raises(LMUnavailableError, match="connection refused"):
        asyncio.run(many())
