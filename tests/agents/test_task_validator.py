"""TaskValidator: execution first (no LM call on failure), then the judge's three criteria."""

from __future__ import annotations

import asyncio

import pytest

from eigendspy.agents import TaskValidator
from eigendspy.core.records import Verdict
from eigendspy.core.task import Action
from eigendspy.domains import get_domain
from eigendspy.testing.lm import scripted_lm

OK = {"policy_consistent": True, "solvable": True, "scenario_sufficient": True, "reasons": []}


@pytest.fixture(scope="module")
def retail(tau2_dir):
    return get_domain("retail", data_dir=tau2_dir / "retail")


def test_executable_task_goes_to_the_judge(retail):
    seen = []
    lm = scripted_lm(lambda req: seen.append(req) or OK)
    pred = TaskValidator(judge_lm=lm)(domain=retail, task=retail.task("0"), plan="exchange two items")
    assert isinstance(pred.verdict, Verdict) and pred.verdict.passed and pred.verdict.blame == "none"
    assert pred.judged and pred.execution.passed and pred.execution.null_pass is False
    inputs = seen[0].inputs
    assert "exchange_delivered_order_items" in inputs["task"] and "Yusuf Rossi" in inputs["task"]
    assert inputs["plan"] == "exchange two items" and "get_order_details(order_id)" in inputs["tools"]


def _broken(retail):
    """Task 0 with every order id replaced by one that does not exist: it cannot execute."""
    task = retail.task("0")
    actions = [a.model_copy(update={"arguments": {**a.arguments, "order_id": "#W0000000"}})
               if "order_id" in a.arguments else a for a in task.gold_actions]
    return task.model_copy(update={"evaluation_criteria": task.evaluation_criteria.model_copy(
        update={"actions": actions})})


def test_failed_execution_rejects_without_an_lm_call(retail):
    lm = scripted_lm(lambda req: OK)
    pred = TaskValidator(judge_lm=lm)(domain=retail, task=_broken(retail))
    assert not pred.verdict.passed and pred.verdict.blame == "task" and not pred.judged
    assert any("#W0000000" in r for r in pred.verdict.reasons)
    assert lm.call_count == 0


def test_judge_rejection_names_the_failed_criteria(retail):
    lm = scripted_lm(lambda req: {**OK, "solvable": False, "reasons": []})
    pred = TaskValidator(judge_lm=lm)(domain=retail, task=retail.task("0"))
    assert not pred.verdict.passed and pred.verdict.blame == "task"
    assert pred.verdict.reasons == ["a policy-following agent cannot reach the gold outcome"]


def test_strict_rejects_null_pass_tasks_before_judging(retail):
    task = retail.task("0")
    reads = [a for a in task.gold_actions if not retail.toolkit.mutates_state(a.name)]
    task = task.model_copy(update={"evaluation_criteria": task.evaluation_criteria.model_copy(
        update={"actions": reads})})
    lm = scripted_lm(lambda req: OK)
    assert TaskValidator(judge_lm=lm)(domain=retail, task=task).verdict.passed
    strict = asyncio.run(TaskValidator(judge_lm=lm, strict=True).acall(domain=retail, task=task))
    assert not strict.verdict.passed and "null policy" in strict.verdict.reasons[0]
    assert lm.call_count == 1


def test_extra_gold_write_fails_verification(retail):
    task = retail.task("0")
    extra = Action(action_id="x", name="modify_user_address", arguments={
        "user_id": "yusuf_rossi_9620", "address1": "1 A St", "address2": "", "city": "B", "state": "PA",
        "country": "USA", "zip": "19122"})
    task = task.model_copy(update={"evaluation_criteria": task.evaluation_criteria.model_copy(
        update={"actions": [*task.gold_actions, extra, extra]})})
    pred = TaskValidator(judge_lm=scripted_lm(lambda req: OK))(domain=retail, task=task)
    assert not pred.verdict.passed and pred.execution.faults == ["no_op_write"]


@pytest.mark.parametrize("path", ["rejected", "unjudged", "judged"])
def test_forward_and_aforward_agree_on_every_path(retail, path):
    task = _broken(retail) if path == "rejected" else retail.task("0")
    lm = scripted_lm(lambda req: {**OK, "solvable": False, "reasons": ["no"]})
    validator = TaskValidator(judge_lm=lm, use_judge=path != "unjudged")
    sync = validator(domain=retail, task=task, plan="p")
    not_sync = asyncio.run(validator.acall(domain=retail, task=task, plan="p"))
    assert sync.verdict == not_sync.verdict and sync.judged == not_sync.judged == (path == "judged")
    assert sync.execution.reasons == not_sync.execution.reasons
    assert lm.call_count == (2 if path == "judged" else 0)
    assert [r.inputs for r in lm.log.requests[:1]] == [r.inputs for r in lm.log.requests[1:]]
