"""TaskGenerator: a scripted draft becomes a Task; unknown or disallowed tools raise DraftError."""

from __future__ import annotations

import asyncio
import random

import dspy
import pytest

from eigendspy.agents import DraftError, TaskGenerator
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.task import RewardType, Task
from eigendspy.domains import get_domain
from eigendspy.engine.entities import sample_entities
from eigendspy.scoring.execution import execution_check
from eigendspy.testing.lm import scripted_lm

PLAN = PlanPair(
    plan_id="p0_1",
    synthesis=SynthesisPlan(intent_family="complete a task", complexity="single_action",
                            tool_pattern="update_task_status", user_style="polite"),
    evaluation=EvaluationPlan(rubric="marks the right task completed"),
)


def draft(actions: list[dict], **extra) -> dict:
    return {"task": {
        "persona": "A busy project manager.",
        "reason_for_call": "You want task_1 marked as completed.",
        "known_info": "Your user id is user_1; the task is task_1.",
        "unknown_info": "",
        "task_instructions": "Be brief. Confirm when asked.",
        "actions": actions,
        "communicate_info": [],
        **extra,
    }}


UPDATE = {"name": "update_task_status", "arguments": {"task_id": "task_1", "status": "completed"}}


@pytest.fixture(scope="module")
def mock(tau2_dir):
    return get_domain("mock", data_dir=tau2_dir / "mock")


def test_draft_becomes_an_executable_task_and_inputs_reach_the_lm(mock):
    seen = []

    def policy(req):
        seen.append(req)
        return draft([{"name": "get_users", "arguments": {}}, UPDATE], state_predicates=["True"])

    entities = sample_entities(mock, random.Random(0))
    pred = TaskGenerator(lm=scripted_lm(policy))(domain=mock, plan=PLAN, entities=entities, task_id="t7",
                                                  feedback=["gold action #0 failed: Error: task not found"])
    task = pred.task
    assert isinstance(task, Task) and task.id == "t7"
    assert [(a.action_id, a.requestor, a.name) for a in task.gold_actions] == [
        ("t7_0", "assistant", "get_users"), ("t7_1", "assistant", "update_task_status")]
    assert task.reward_basis == [RewardType.DB, RewardType.COMMUNICATE]
    assert task.user_scenario.instructions.domain == "mock"
    assert task.description.notes == "plan p0_1"
    assert task.evaluation_criteria.state_predicates[0].expression == "True"
    inputs = seen[0].inputs
    assert "[p0_1]" in inputs["plan"] and '"task_id":"task_1"' in inputs["entities"]
    assert "task not found" in inputs["feedback"] and inputs["domain"] == "mock"
    assert "update_task_status" in inputs["allowed_tools"] and "update_task_status(" in inputs["tools"]
    assert execution_check(mock, task).passed


def test_user_device_tools_get_the_user_as_requestor(mock):
    user_tool = mock.user_toolkit.names[0]
    lm = scripted_lm(lambda req: draft([UPDATE, {"name": user_tool, "arguments": {}}]))
    task = TaskGenerator(lm=lm)(domain=mock, plan="any plan", entities="", task_id="u").task
    assert [a.requestor for a in task.gold_actions] == ["assistant", "user"]
    assert task.description is None


def test_unknown_tool_raises_draft_error_with_reason(mock):
    lm = scripted_lm(lambda req: draft([UPDATE, {"name": "delete_everything", "arguments": {}}]))
    with pytest.raises(DraftError) as info:
        TaskGenerator(lm=lm)(domain=mock, plan=PLAN, entities="", task_id="t")
    assert "gold action #1 uses unknown tool 'delete_everything'" in info.value.reasons[0]
    assert isinstance(info.value, ValueError)


def test_tool_outside_the_allowed_list_is_rejected(mock):
    lm = scripted_lm(lambda req: draft([UPDATE]))
    with pytest.raises(DraftError, match="does not allow"):
        TaskGenerator(lm=lm)(domain=mock, plan=PLAN, entities="", task_id="t", allowed_tools=["get_users"])


def test_aforward_and_explicit_reward_basis(mock):
    lm = scripted_lm(lambda req: draft([UPDATE], reward_basis=["DB", "ACTION", "DB"]))
    pred = asyncio.run(TaskGenerator(lm=lm).acall(domain=mock, plan=PLAN, entities="", task_id="a"))
    assert pred.task.reward_basis == [RewardType.DB, RewardType.ACTION]
    assert pred.draft.actions[0].name == "update_task_status"


def test_constrained_tool_names_become_an_enum_in_the_output_schema():
    gen = TaskGenerator(constrain_tools=True)
    signature = gen._signature(["update_task_status", "get_users"])
    schema = signature.output_fields["task"].annotation
    action_schema = schema.model_json_schema()["$defs"]["ActionDraft"]["properties"]["name"]
    assert set(action_schema["enum"]) == {"update_task_status", "get_users"}
    assert signature.instructions == gen.generate.signature.instructions  # evolved text kept
    free = TaskGenerator()
    assert free._signature(["update_task_status"]) is free.generate.signature  # unconstrained: names stay free text


def test_constrained_call_goes_through_the_registered_predictor(mock):
    gen = TaskGenerator(lm=scripted_lm(lambda req: draft([UPDATE])), constrain_tools=True)
    with dspy.context(trace=[]):
        gen(domain=mock, plan=PLAN, entities="", task_id="t")
        (predictor, _, pred), = dspy.settings.trace
    assert predictor is gen.generate and [p for _, p in gen.named_predictors()] == [gen.generate]
    assert pred.task.actions[0].name == "update_task_status"
