"""A gold action naming a tool the domain lacks makes the task unverified, though its gold replay scores 1.0.

Why it scores 1.0: the unknown call is an error message in the gold run and in the reference run
alike, so gold and reference agree. ``eigendspy tasks`` flags such a task; verification must too.
"""

from __future__ import annotations

from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.scoring.verify import unknown_gold_tools, verify_checker, verify_tasks


def _task(task_id: str, *extra: dict) -> Task:
    actions = [
        {"action_id": "a", "name": "create_task", "arguments": {"user_id": "user_1", "title": "Meeting"}},
        *extra,
    ]
    return Task.model_validate(
        {
            "id": task_id,
            "user_scenario": {"instructions": "Create a task."},
            "evaluation_criteria": {"actions": actions, "reward_basis": ["DB"]},
        }
    )


def test_unknown_gold_tool_is_unverified_and_named():
    mock = get_domain("mock")
    ghost = _task("ghost", {"action_id": "b", "name": "no_such_tool", "arguments": {"x": 1}})
    report = verify_checker(mock, ghost)
    assert report.gold_reward == 1.0  # the replay alone cannot tell
    assert report.unknown_tools == ["no_such_tool #1"]
    assert not report.gold_passes and not report.verified
    assert any("no_such_tool" in f for f in report.gold_failures)

    summary = verify_tasks(mock, [ghost, _task("good")])
    assert summary.unverified_tasks == ["ghost"]
    assert "unknown tools: no_such_tool #1" in summary.to_markdown()


def test_a_user_tool_is_looked_up_in_the_user_toolkit():
    mock = get_domain("mock")
    user_side = _task("u", {"action_id": "b", "name": "check_notifications", "arguments": {}, "requestor": "user"})
    assert unknown_gold_tools(mock, user_side) == []
    wrong_side = _task("w", {"action_id": "b", "name": "check_notifications", "arguments": {}})  # an agent call
    assert unknown_gold_tools(mock, wrong_side) == ["check_notifications #1"]
    agent_tool_as_user = _task("x", {"action_id": "b", "name": "get_users", "arguments": {}, "requestor": "user"})
    assert unknown_gold_tools(mock, agent_tool_as_user) == ["get_users #1 (user)"]
