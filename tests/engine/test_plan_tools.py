"""`EngineConfig.plan_tools`: a plan whose tool pattern names tools restricts its stream's gold actions to them."""

from __future__ import annotations

import asyncio

from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.domains import get_domain
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.items import ItemWorker, plan_tool_names
from eigendspy.testing import scripted_roles

DOMAIN = get_domain("mock", num_users=8, tasks_per_user=5)


def _plan(pattern: str) -> PlanPair:
    return PlanPair(plan_id="p", synthesis=SynthesisPlan(intent_family="i", complexity="single_action",
                                                         tool_pattern=pattern, user_style="s"),
                    evaluation=EvaluationPlan(rubric="r"))


def test_plan_tool_names_reads_the_domains_tools_out_of_the_pattern():
    assert plan_tool_names(_plan("look up -> update_task_status"), DOMAIN) == ["update_task_status"]
    assert plan_tool_names(_plan("get_users, then create_task"), DOMAIN) == ["create_task", "get_users"]
    assert plan_tool_names(_plan("look up -> write"), DOMAIN) is None


def test_with_plan_tools_a_draft_using_another_tool_is_repaired_then_rejected():
    # The scripted generator always writes update_task_status on mock.
    def make(pattern: str, plan_tools: bool):
        config = EngineConfig(plan_tools=plan_tools, max_repairs=1, llm_judges=False)
        worker = ItemWorker(DOMAIN, scripted_roles(), config)
        return asyncio.run(worker.make_task(0, 0, "s0/r0/t0", _plan(pattern)))

    assert make("look up -> update_task_status", True).accepted
    refused = make("look up -> create_task", True)
    assert not refused.accepted and "this plan does not allow" in " ".join(refused.reasons)
    assert make("look up -> create_task", False).accepted
