"""execution_check: a good tau2 task passes; planted faults fail for the right reason."""

from __future__ import annotations

import pytest

from eigendspy.core.task import Action, Task
from eigendspy.domains import get_domain
from eigendspy.scoring.execution import execution_check

USER = "yusuf_rossi_9620"  # the user of tau2 retail task "0"
HOME = {"address1": "763 Broadway", "address2": "Suite 135", "city": "Philadelphia", "state": "PA",
        "country": "USA", "zip": "19122"}


@pytest.fixture(scope="module")
def retail(tau2_dir):
    return get_domain("retail", data_dir=tau2_dir / "retail")


@pytest.fixture(scope="module")
def task0(retail) -> Task:
    return retail.task("0")


def with_actions(task: Task, actions: list[Action]) -> Task:
    criteria = task.evaluation_criteria.model_copy(update={"actions": actions})
    return task.model_copy(update={"id": f"{task.id}_planted", "evaluation_criteria": criteria})


def address_change(i: int, **address: str) -> Action:
    return Action(action_id=f"x_{i}", name="modify_user_address", arguments={"user_id": USER, **HOME, **address})


def test_good_task_passes_and_records_null_pass(retail, task0):
    report = execution_check(retail, task0)
    assert report.passed, report.reasons
    assert report.null_pass is False and report.verification.gold_passes
    assert report.verification.mutants and not report.verification.surviving_mutants
    assert "passed" in report.summary()


def test_task_naming_a_missing_order_fails_on_its_gold_actions(retail, task0):
    actions = [a.model_copy(update={"arguments": {**a.arguments, "order_id": "#W0000000"}})
               if "order_id" in a.arguments else a for a in task0.gold_actions]
    report = execution_check(retail, with_actions(task0, actions))
    assert not report.passed and report.verification is None
    assert set(report.faults) == {"action_error"}
    assert any("get_order_details" in r and "#W0000000" in r and "Error" in r for r in report.reasons)


def test_gold_action_that_errors_is_named_with_its_error(retail, task0):
    cancel = Action(action_id="x", name="cancel_pending_order",
                    arguments={"order_id": "#W2378156", "reason": "no longer needed"})  # delivered, not pending
    report = execution_check(retail, with_actions(task0, [*task0.gold_actions[:2], cancel]))
    assert report.faults == ["action_error"]
    assert "gold action #2 cancel_pending_order" in report.reasons[0]
    assert "cannot be cancelled" in report.reasons[0] or "Non-pending" in report.reasons[0]


def test_redundant_write_lets_a_mutant_survive(retail, task0):
    # The first address change is overwritten by the second: dropping it gives the same final state.
    first = address_change(0, address1="1 First Street")
    second = address_change(1, address1="2 Second Street")
    report = execution_check(retail, with_actions(task0, [*task0.gold_actions, first, second]))
    assert not report.passed and "mutant_survives" in report.faults
    assert "no_op_write" not in report.faults and "action_error" not in report.faults
    assert any("dropped modify_user_address #5" in r for r in report.reasons)
    assert report.verification is not None and report.verification.gold_passes


def test_write_that_changes_nothing_is_rejected(retail, task0):
    same = address_change(0)  # the address the user already has
    report = execution_check(retail, with_actions(task0, [task0.gold_actions[0], same]))
    assert report.faults == ["no_op_write"]
    assert "gold write #1 modify_user_address" in report.reasons[0] and "changes nothing" in report.reasons[0]


def test_read_only_task_is_null_pass_and_strict_mode_rejects_it(retail, task0):
    reads = [a for a in task0.gold_actions if not retail.toolkit.mutates_state(a.name)]
    task = with_actions(task0, reads)
    assert execution_check(retail, task).passed and execution_check(retail, task).null_pass
    strict = execution_check(retail, task, reject_null_pass=True)
    assert not strict.passed and strict.faults == ["null_pass"]


def test_unknown_tool_in_gold_is_an_action_error(retail, task0):
    bogus = Action(action_id="x", name="refund_everything", arguments={})
    report = execution_check(retail, with_actions(task0, [bogus]))
    assert report.faults == ["action_error"] and "not found" in report.reasons[0]
