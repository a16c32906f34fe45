"""Task models: lossless tau2 round trips, precise load errors, and tau2's action matching rule."""

from __future__ import annotations

import json

import pytest

from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.task import (
    Action,
    RewardType,
    StructuredUserInstructions,
    Task,
    TaskFileError,
    load_tasks,
)

TASK_FILES = ["mock/tasks.json", "retail/tasks.json", "airline/tasks.json", "telecom/tasks_small.json"]


def _raw(tau2_dir, rel: str) -> list[dict]:
    data = json.loads((tau2_dir / rel).read_text())
    assert isinstance(data, list) and data
    return data


@pytest.mark.parametrize("rel", TASK_FILES)
def test_every_tau2_task_round_trips_losslessly(tau2_dir, rel):
    raw = _raw(tau2_dir, rel)
    for d in raw:
        task = Task.model_validate(d)
        assert task.to_tau2() == d, f"{rel}: task {d['id']!r} does not round-trip"
        # and the round trip is stable
        assert Task.model_validate(task.to_tau2()).to_tau2() == d


@pytest.mark.parametrize("rel", TASK_FILES)
def test_every_tau2_task_survives_a_json_round_trip(tau2_dir, rel):
    for d in _raw(tau2_dir, rel):
        task = Task.model_validate(d)
        again = Task.model_validate_json(task.model_dump_json())
        assert again == task, d["id"]
        assert again.model_dump() == task.model_dump(), d["id"]
        # dumping only what was set keeps the tau2 dict exact through JSON text, too
        assert Task.model_validate_json(task.model_dump_json(exclude_unset=True)).to_tau2() == d, d["id"]


@pytest.mark.parametrize("rel", TASK_FILES)
def test_load_tasks_reads_every_tau2_file(tau2_dir, rel):
    tasks = load_tasks(tau2_dir / rel)
    raw = _raw(tau2_dir, rel)
    assert [t.id for t in tasks] == [d["id"] for d in raw]
    assert all(isinstance(t, Task) for t in tasks)


def test_typed_views_of_a_tau2_task(tau2_dir):
    tasks = {t.id: t for t in load_tasks(tau2_dir / "mock" / "tasks.json")}
    t = tasks["update_task_with_message_history"]
    assert t.message_history and all(isinstance(m, Message) for m in t.message_history)
    assert t.message_history[1].tool_calls[0].name == "create_task"
    assert tasks["create_task_1"].gold_actions[0].name == "create_task"
    assert tasks["create_task_1"].reward_basis == [RewardType.DB, RewardType.COMMUNICATE]
    bare = Task.model_validate({"id": "x", "user_scenario": {"instructions": "hi"}})
    assert bare.gold_actions == [] and bare.message_history == []
    assert bare.reward_basis == [RewardType.DB, RewardType.COMMUNICATE]
    assert bare.to_tau2() == {"id": "x", "user_scenario": {"instructions": "hi"}}
    retail = load_tasks(tau2_dir / "retail" / "tasks.json")
    assert isinstance(retail[0].user_scenario.instructions, StructuredUserInstructions)


def test_unknown_fields_are_kept(tmp_path):
    d = {
        "id": "x",
        "user_scenario": {"instructions": "hi", "mood": "grumpy"},
        "future_field": {"a": [1]},
        "evaluation_criteria": {"actions": [{"action_id": "a", "name": "n", "weight": 2}]},
    }
    task = Task.model_validate(d)
    assert task.to_tau2() == d
    assert Task.model_validate_json(task.model_dump_json()).to_tau2()["future_field"] == {"a": [1]}


# --------------------------------------------------------------------------- load errors

VALID = {"id": "ok_1", "user_scenario": {"instructions": "Hello."}}


def _write(tmp_path, content) -> object:
    path = tmp_path / "tasks.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_missing_user_scenario_names_file_task_and_field(tmp_path):
    path = _write(tmp_path, [VALID, {"id": "broken_7", "description": {"purpose": "x"}}])
    with pytest.raises(TaskFileError) as info:
        load_tasks(path)
    msg = str(info.value)
    assert str(path) in msg and "'broken_7'" in msg and "user_scenario" in msg


def test_bad_reward_basis_names_file_task_and_field(tmp_path):
    bad = {**VALID, "id": "rb_bad", "evaluation_criteria": {"reward_basis": ["DB", "SPEED"]}}
    path = _write(tmp_path, [VALID, bad])
    with pytest.raises(TaskFileError) as info:
        load_tasks(path)
    msg = str(info.value)
    assert str(path) in msg and "'rb_bad'" in msg and "evaluation_criteria.reward_basis" in msg


def test_bad_nested_action_field_names_the_path(tmp_path):
    bad = {
        **VALID,
        "id": "act_bad",
        "evaluation_criteria": {"actions": [{"action_id": "a", "name": "n", "requestor": "robot"}]},
    }
    with pytest.raises(TaskFileError) as info:
        load_tasks(_write(tmp_path, [bad]))
    msg = str(info.value)
    assert "'act_bad'" in msg and "evaluation_criteria.actions.0.requestor" in msg


def test_task_without_id_is_named_by_position(tmp_path):
    with pytest.raises(TaskFileError) as info:
        load_tasks(_write(tmp_path, [VALID, {"user_scenario": {"instructions": "x"}}]))
    assert "'#1'" in str(info.value) and "'id'" in str(info.value)
    with pytest.raises(TaskFileError) as info:
        load_tasks(_write(tmp_path, [VALID, "not a task"]))
    assert "'#1'" in str(info.value)


def test_invalid_json_names_the_file(tmp_path):
    path = _write(tmp_path, '[{"id": "x",')
    with pytest.raises(TaskFileError) as info:
        load_tasks(path)
    assert str(path) in str(info.value) and "not valid JSON" in str(info.value)


@pytest.mark.parametrize("top", [{"tasks": [VALID]}, "a string", 3, None])
def test_non_list_top_level_names_the_file(tmp_path, top):
    path = _write(tmp_path, top)
    with pytest.raises(TaskFileError) as info:
        load_tasks(path)
    assert str(path) in str(info.value) and "list" in str(info.value)


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope" / "tasks.json"
    with pytest.raises(TaskFileError) as info:
        load_tasks(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_valid_file_and_empty_list_load(tmp_path):
    assert [t.id for t in load_tasks(_write(tmp_path, [VALID, {**VALID, "id": "ok_2"}]))] == ["ok_1", "ok_2"]
    assert load_tasks(_write(tmp_path, [])) == []


# --------------------------------------------------------------------------- Action.matches


def _tc(name="create_task", arguments=None) -> ToolCall:
    return ToolCall(name=name, arguments={} if arguments is None else arguments)


GOLD_ARGS = {"user_id": "user_1", "title": "Meeting", "description": "Q4"}


def test_matches_compare_args_none_compares_the_calls_arguments():
    action = Action(action_id="a", name="create_task", arguments=GOLD_ARGS)
    assert action.compare_args is None
    assert action.matches(_tc(arguments=dict(GOLD_ARGS)))
    assert action.matches(_tc(arguments={"title": "Meeting", "description": "Q4", "user_id": "user_1"}))
    assert not action.matches(_tc(arguments={**GOLD_ARGS, "title": "Other"}))
    # tau2's rule: the keys compared are the call's own, so a call passing a subset still matches ...
    assert action.matches(_tc(arguments={"user_id": "user_1", "title": "Meeting"}))
    # ... and a call with an argument the gold action lacks does not
    assert not action.matches(_tc(arguments={**GOLD_ARGS, "priority": "high"}))
    # values are compared exactly (types included)
    assert not Action(action_id="n", name="f", arguments={"n": 1}).matches(_tc("f", {"n": "1"}))


def test_matches_empty_compare_args_compares_only_the_name():
    action = Action(action_id="a", name="create_task", arguments=GOLD_ARGS, compare_args=[])
    assert action.matches(_tc(arguments={"user_id": "someone else", "title": "x"}))
    assert action.matches(_tc(arguments={}))
    assert not action.matches(_tc("update_task_status", GOLD_ARGS))


def test_matches_subset_compare_args_compares_only_those_keys():
    action = Action(action_id="a", name="create_task", arguments=GOLD_ARGS, compare_args=["user_id", "title"])
    assert action.matches(_tc(arguments={"user_id": "user_1", "title": "Meeting", "description": "anything"}))
    assert action.matches(_tc(arguments={"user_id": "user_1", "title": "Meeting"}))
    assert not action.matches(_tc(arguments={"user_id": "user_2", "title": "Meeting", "description": "Q4"}))
    # a compared key the call omits is a mismatch
    assert not action.matches(_tc(arguments={"user_id": "user_1"}))


def test_matches_wrong_name_and_string_arguments_fail():
    action = Action(action_id="a", name="create_task", arguments=GOLD_ARGS)
    assert not action.matches(_tc("create_tasks", dict(GOLD_ARGS)))
    assert not action.matches(ToolCall(name="create_task", arguments=json.dumps(GOLD_ARGS)))
    name_only = Action(action_id="b", name="create_task", compare_args=[])
    assert not name_only.matches(ToolCall(name="create_task", arguments="{}"))


def test_as_call_copies_arguments_and_requestor():
    action = Action(
        action_id="a", name="dismiss_notification", requestor="user", arguments={"notification_id": "n"}
    )
    tc = action.as_call("id_1")
    assert (tc.id, tc.name, tc.requestor, tc.arguments) == (
        "id_1",
        "dismiss_notification",
        "user",
        {"notification_id": "n"},
    )
    tc.arguments["notification_id"] = "changed"
    assert action.arguments == {"notification_id": "n"}
    assert action.matches(action.as_call())
