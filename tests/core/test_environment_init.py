"""Environment: for_task initialization order and tau2 hashes, forks, replay, env functions,
result serialization and deep_merge, and the dspy.Tool bridge."""

from __future__ import annotations

import asyncio
import json

import dspy
import pytest
from pydantic import BaseModel

from eigendspy.core.environment import Environment, deep_merge, to_tool_content
from eigendspy.core.messages import Message
from eigendspy.core.task import EnvFunctionCall, Task
from eigendspy.domains.mock import generate_db
from tests.core.environment_helpers import AGENT_TOOLS, USER_TOOLS, builtin_mock, call

# the shared ``domain`` (builtin and tau2 mock) and ``tau2_mock`` fixtures
pytest_plugins = ["tests.core.environment_helpers"]


# --------------------------------------------------------------------------- for_task


def _order_task() -> Task:
    return Task.model_validate(
        {
            "id": "order",
            "user_scenario": {"instructions": "Check the order of initialization."},
            "initial_state": {
                "initialization_data": {
                    "agent_data": {
                        "tasks": {"task_7": {"task_id": "task_7", "title": "From data", "status": "pending"}},
                        "users": {"user_1": {"tasks": ["task_1", "task_2", "task_7"]}},
                    }
                },
                "initialization_actions": [
                    {
                        "env_type": "assistant",
                        "func_name": "create_task",
                        "arguments": {"user_id": "user_1", "title": "From action"},
                    },
                    {
                        "env_type": "user",
                        "func_name": "add_notification",
                        "arguments": {
                            "notification_id": "notif_2",
                            "message": "New task task_8",
                            "task_id": "task_8",
                        },
                    },
                ],
                "message_history": [
                    {"role": "user", "content": "Please complete task_8."},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "h1",
                                "name": "update_task_status",
                                "arguments": {"task_id": "task_8", "status": "completed"},
                            },
                        ],
                    },
                    {"role": "tool", "id": "h1", "content": "{}"},
                    {"role": "assistant", "tool_calls": [{"id": "h2", "name": "get_users", "arguments": {}}]},
                    {"role": "tool", "id": "h2", "content": "[]"},
                ],
            },
        }
    )


def test_for_task_order_data_then_actions_then_history():
    dom = builtin_mock()
    assert sorted(generate_db(0).tasks) == [f"task_{i}" for i in range(1, 7)]
    env = Environment.for_task(dom, _order_task())
    tasks = env.view().tasks
    # data first: task_7 exists, so the action's create_task mints task_8 (len + 1) ...
    assert tasks["task_7"].title == "From data"
    assert tasks["task_8"].title == "From action"
    assert env.view().users["user_1"].tasks == ["task_1", "task_2", "task_7", "task_8"]
    # ... and the history, replayed last, completes the task the action created
    assert tasks["task_8"].status == "completed"
    assert env.view("user").notifications["notif_2"].task_id == "task_8"
    # read calls in the history are not executed or logged
    assert [c.name for c, _ in env.log] == ["update_task_status"]

    without_history = Environment.for_task(dom, _order_task(), include_history=False)
    assert without_history.view().tasks["task_8"].status == "pending"
    assert not env.same_state(without_history)


def test_for_task_without_task_or_initial_state_is_pristine():
    dom = builtin_mock()
    assert Environment.for_task(dom).agent_state.is_pristine
    bare = Task.model_validate({"id": "t", "user_scenario": {"instructions": "x"}})
    env = Environment.for_task(dom, bare)
    assert env.agent_state.is_pristine and env.user_state.is_pristine


def test_for_task_raises_on_a_broken_task():
    dom = builtin_mock()
    broken = Task.model_validate(
        {
            "id": "broken",
            "user_scenario": {"instructions": "x"},
            "initial_state": {"initialization_actions": [{"env_type": "assistant", "func_name": "nope"}]},
        }
    )
    with pytest.raises(ValueError, match="nope"):
        Environment.for_task(dom, broken)
    bad_field = Task.model_validate(
        {
            "id": "bad",
            "user_scenario": {"instructions": "x"},
            "initial_state": {"initialization_data": {"agent_data": {"no_such_table": {}}}},
        }
    )
    with pytest.raises(ValueError, match="no_such_table"):
        Environment.for_task(dom, bad_field)


def _oracle(tau2_dir) -> dict[str, dict]:
    lines = (tau2_dir / "mock" / "oracle.jsonl").read_text().splitlines()
    return {o["task_id"]: o for o in map(json.loads, lines)}


def test_for_task_initial_hashes_match_tau2(tau2_dir, tau2_mock):
    oracle = _oracle(tau2_dir)
    tasks = tau2_mock.tasks()
    assert {t.id for t in tasks} == set(oracle)
    kinds = set()
    for task in tasks:
        init = task.initial_state
        if init is not None:
            kinds |= {
                k
                for k in ("initialization_data", "initialization_actions", "message_history")
                if getattr(init, k)
            }
        env = Environment.for_task(tau2_mock, task, tau2_compat=True)
        assert env.db_hash() == oracle[task.id]["initial_db_hash"], task.id
        assert env.user_db_hash() == oracle[task.id]["initial_user_db_hash"], task.id
    assert kinds == {"initialization_data", "initialization_actions", "message_history"}


def test_tau2_user_db_alias_quirk_only_in_compat_mode(tau2_dir, tau2_mock):
    oracle = _oracle(tau2_dir)["update_task_with_initialization_data"]
    task = tau2_mock.task("update_task_with_initialization_data")
    compat = Environment.for_task(tau2_mock, task, tau2_compat=True)
    ours = Environment.for_task(tau2_mock, task)
    assert compat.user_db_hash() == oracle["initial_user_db_hash"] == oracle["initial_db_hash"]
    assert ours.db_hash() == oracle["initial_db_hash"]
    assert ours.user_db_hash() == Environment(tau2_mock).user_db_hash() != oracle["initial_user_db_hash"]


def test_history_replay_reaches_the_same_state_as_init_actions(tau2_mock):
    a = Environment.for_task(tau2_mock, tau2_mock.task("update_task_with_message_history"))
    b = Environment.for_task(tau2_mock, tau2_mock.task("update_task_with_initialization_actions"))
    c = Environment.for_task(tau2_mock, tau2_mock.task("update_task_with_initialization_data"))
    assert a.same_state(b) and a.db_hash() == b.db_hash()
    assert a.agent_state.same_as(c.agent_state) and a.db_hash() == c.db_hash()


# --------------------------------------------------------------------------- forks, replay, functions


def test_fork_isolation(domain):
    env = Environment(domain)
    env.execute(call("create_task", {"user_id": "user_1", "title": "Before fork"}))
    twin = env.fork()
    assert twin.same_state(env) and twin.db_hash() == env.db_hash()
    assert twin.log == []

    twin.execute(call("update_task_status", {"task_id": "task_1", "status": "pending"}))
    twin.execute(call("create_task", {"user_id": "user_1", "title": "Only in twin"}))
    twin.execute(call("dismiss_notification", {"notification_id": "notif_1"}, "user"))
    titles = {t.title for t in env.view().tasks.values()}
    assert "Only in twin" not in titles and "Before fork" in titles
    assert env.view("user").notifications["notif_1"].status == "unread"
    assert not twin.same_state(env)

    env.execute(call("update_task_status", {"task_id": "task_1", "status": "completed"}))
    assert twin.view().tasks["task_1"].status == "pending"
    assert env.view().tasks["task_1"].status == "completed"
    # the shared base is untouched by either
    assert Environment(domain).agent_state.is_pristine
    assert domain.base_db().dump() == domain.base_db().model.model_dump()


def test_fork_keeps_user_db_alias(tau2_mock):
    task = tau2_mock.task("update_task_with_initialization_data")
    env = Environment.for_task(tau2_mock, task, tau2_compat=True)
    assert env.user_state is env.agent_state
    twin = env.fork()
    assert twin.user_state is twin.agent_state and twin.agent_state is not env.agent_state


def test_replay_writes_only_and_make_tool_call(domain):
    env = Environment(domain)
    messages = [
        Message.assistant(tool_calls=[call("get_users", call_id="r")]),
        Message(role="tool", id="r", content="[]"),
        Message.assistant(tool_calls=[call("create_task", {"user_id": "user_1", "title": "R"}, call_id="w")]),
        Message.user(tool_calls=[call("dismiss_notification", {"notification_id": "notif_1"}, "user", "u")]),
        Message.user("just text"),
    ]
    env.replay(messages)
    assert [c.name for c, _ in env.log] == ["create_task", "dismiss_notification"]
    everything = Environment(domain)
    everything.replay(messages, writes_only=False)
    assert [c.name for c, _ in everything.log] == ["get_users", "create_task", "dismiss_notification"]
    assert env.same_state(everything)
    direct = Environment(domain)
    direct.make_tool_call("create_task", user_id="user_1", title="R")
    direct.make_tool_call("dismiss_notification", "user", notification_id="notif_1")
    assert direct.same_state(env) and direct.db_hash() == env.db_hash()


def test_run_function_and_evaluate_function(domain):
    env = Environment(domain)
    env.run_function(
        EnvFunctionCall(
            env_type="user",
            func_name="add_notification",
            arguments={"notification_id": "n2", "message": "hello"},
        )
    )
    assert env.view("user").notifications["n2"].message == "hello"
    check = EnvFunctionCall(
        env_type="user",
        func_name="assert_notification_status",
        arguments={"notification_id": "n2", "expected_status": "unread"},
    )
    before = env.user_db_hash()
    assert env.evaluate_function(check) is True
    assert env.user_db_hash() == before
    with pytest.raises(ValueError, match="nope"):
        env.run_function(EnvFunctionCall(env_type="assistant", func_name="nope"))
    with pytest.raises(ValueError, match="not found"):
        env.evaluate_function(
            EnvFunctionCall(
                env_type="assistant",
                func_name="assert_task_status",
                arguments={"task_id": "task_99", "expected_status": "pending"},
            )
        )


# --------------------------------------------------------------------------- helpers


class _Inner(BaseModel):
    amount: float
    flag: bool


def test_to_tool_content_follows_tau2():
    assert to_tool_content("available") == "available"
    assert to_tool_content(4.0) == "4.0"
    assert to_tool_content(_Inner(amount=2.0, flag=True)) == '{"amount": 2.0, "flag": true}'
    assert to_tool_content({"message": "ok", "charge": 4.0, "n": 2, "ok": False, "none": None}) == (
        '{"message": "ok", "charge": "4.0", "n": "2", "ok": "False", "none": null}'
    )
    # numbers inside pydantic models stay numbers, also inside lists
    assert to_tool_content([_Inner(amount=1.5, flag=False), 3]) == '[{"amount": 1.5, "flag": false}, "3"]'
    assert to_tool_content({"nested": {"x": [1, "a"]}}) == '{"nested": {"x": ["1", "a"]}}'
    assert to_tool_content({"é": "ü"}) == '{"\\u00e9": "\\u00fc"}'


def test_deep_merge():
    base = {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "s": "x"}
    patch = {"a": {"c": {"e": 3}}, "l": [3], "new": {"k": 1}, "s": {"now": "dict"}}
    assert deep_merge(base, patch) == {
        "a": {"b": 1, "c": {"d": 2, "e": 3}},
        "l": [3],
        "s": {"now": "dict"},
        "new": {"k": 1},
    }
    assert base == {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "s": "x"}  # not mutated
    assert deep_merge({"a": 1}, None) is None
    assert deep_merge([1], {"a": 1}) == {"a": 1}


# --------------------------------------------------------------------------- dspy bridge


def test_dspy_tools_execute_through_the_environment(domain):
    env, twin = Environment(domain), Environment(domain)
    tools = {t.name: t for t in domain.dspy_tools(env)}
    assert all(isinstance(t, dspy.Tool) for t in tools.values())
    assert list(tools) == AGENT_TOOLS
    for name, t in tools.items():
        spec = domain.toolkit[name]
        assert t.desc == spec.description
        assert t.args == spec.parameters_schema.get("properties", {})

    args = {"user_id": "user_1", "title": "Via DSPy"}
    out = tools["create_task"](**args)
    assert out == twin.execute(call("create_task", args)).content
    assert not env.agent_state.is_pristine
    assert env.same_state(twin) and env.db_hash() == twin.db_hash()
    assert [c.name for c, _ in env.log] == ["create_task"]

    bad = {"task_id": "task_404", "status": "completed"}
    out = tools["update_task_status"](**bad)
    assert out == twin.execute(call("update_task_status", bad)).content == "Error: Task task_404 not found"
    assert env.log[-1][1].error is True

    out = asyncio.run(tools["update_task_status"].acall(task_id="task_1", status="pending"))
    assert out == twin.execute(call("update_task_status", {"task_id": "task_1", "status": "pending"})).content
    assert tools["get_users"]() == twin.execute(call("get_users")).content
    assert env.same_state(twin)


def test_dspy_user_tools_act_on_the_user_db(domain):
    env, twin = Environment(domain), Environment(domain)
    tools = {t.name: t for t in domain.dspy_tools(env, side="user")}
    assert list(tools) == USER_TOOLS
    out = tools["dismiss_notification"](notification_id="notif_1")
    assert out == twin.execute(call("dismiss_notification", {"notification_id": "notif_1"}, "user")).content
    assert env.view("user").notifications["notif_1"].status == "read"
    assert env.user_db_hash() == twin.user_db_hash() != Environment(domain).user_db_hash()
    assert env.log[-1][1].requestor == "user"
