"""Environment: tool execution that never crashes, no partial writes, task setup order, forks,
the dspy.Tool bridge, and property tests over random tool calls."""

from __future__ import annotations

import asyncio
import json

import dspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from eigendspy.domain import Domain, ToolError, tool
from eigendspy.domains import get_domain
from eigendspy.domains.mock import generate_db, generate_user_db
from eigendspy.domains.mock import tools as mock_tools
from eigendspy.domains.mock.db import MockDB, MockUserDB, TaskItem
from eigendspy.environment import Environment, deep_merge, to_tool_content
from eigendspy.task import EnvFunctionCall, Task
from eigendspy.trajectory import Message, ToolCall

AGENT_TOOLS = ["create_task", "get_users", "update_task_status", "transfer_to_human_agents"]
USER_TOOLS = ["check_notifications", "dismiss_notification"]

_DOMAINS: dict[str, Domain] = {}


def builtin_mock() -> Domain:
    if "builtin" not in _DOMAINS:
        _DOMAINS["builtin"] = get_domain("mock")
    return _DOMAINS["builtin"]


@pytest.fixture(scope="module")
def tau2_mock(tau2_dir) -> Domain:
    return get_domain("mock", data_dir=tau2_dir / "mock")


@pytest.fixture(params=["builtin", "tau2"])
def domain(request) -> Domain:
    return builtin_mock() if request.param == "builtin" else request.getfixturevalue("tau2_mock")


def call(name, arguments=None, requestor="assistant", call_id="c1") -> ToolCall:  # noqa: ANN001
    return ToolCall(
        id=call_id, name=name, arguments={} if arguments is None else arguments, requestor=requestor
    )


def assert_error_without_change(env: Environment, tc: ToolCall, requestor: str | None = None) -> Message:
    before = (env.db_hash(), env.user_db_hash())
    pristine = env.agent_state.is_pristine
    msg = env.execute(tc, requestor)
    assert msg.role == "tool"
    assert msg.error is True
    assert msg.content.startswith("Error: ")
    assert msg.id == tc.id
    assert (env.db_hash(), env.user_db_hash()) == before
    assert env.agent_state.is_pristine == pristine
    return msg


# --------------------------------------------------------------------------- error messages


def test_unknown_tool(domain):
    env = Environment(domain)
    msg = assert_error_without_change(env, call("x"))
    assert msg.content == "Error: Tool 'x' not found."
    assert msg.requestor == "assistant"
    msg = assert_error_without_change(env, call("x", requestor="user"))
    assert msg.content == "Error: Tool 'x' not found."
    assert msg.requestor == "user"


def test_unparsable_argument_json(domain):
    env = Environment(domain)
    msg = assert_error_without_change(env, call("create_task", '{"user_id": "user_1", "title": '))
    assert "create_task" in msg.content and "not valid JSON" in msg.content


@pytest.mark.parametrize("raw", ["[1, 2]", "3", "null", '"user_1"', "true"])
def test_non_object_argument_json(domain, raw):
    env = Environment(domain)
    msg = assert_error_without_change(env, call("create_task", raw))
    assert "must be a JSON object" in msg.content


@pytest.mark.parametrize("raw", [[1, 2], 3, None, 2.5])
def test_non_dict_arguments_that_bypassed_validation(domain, raw):
    env = Environment(domain)
    tc = ToolCall.model_construct(id="c1", name="create_task", arguments=raw, requestor="assistant")
    msg = assert_error_without_change(env, tc)
    assert "must be a JSON object" in msg.content


def test_argument_json_string_object_executes(domain):
    env = Environment(domain)
    msg = env.execute(call("create_task", '{"user_id": "user_1", "title": "From JSON"}'))
    assert msg.error is False
    assert json.loads(msg.content)["title"] == "From JSON"
    # an empty/blank argument string means no arguments
    assert env.execute(call("get_users", "  ")).error is False


def test_missing_and_unexpected_arguments(domain):
    env = Environment(domain)
    msg = assert_error_without_change(env, call("create_task", {"user_id": "user_1"}))
    assert "missing" in msg.content and "title" in msg.content
    msg = assert_error_without_change(
        env, call("create_task", {"user_id": "user_1", "title": "A", "priority": "high"})
    )
    assert "unexpected keyword argument 'priority'" in msg.content
    msg = assert_error_without_change(env, call("get_users", {"x": 1}))
    assert "unexpected keyword argument 'x'" in msg.content
    msg = assert_error_without_change(env, call("dismiss_notification", {}, requestor="user"))
    assert "notification_id" in msg.content


def test_wrong_typed_argument_that_fails_model_validation_writes_nothing(domain):
    env = Environment(domain)
    assert_error_without_change(
        env, call("create_task", {"user_id": "user_1", "title": ["not", "a", "string"]})
    )
    assert_error_without_change(
        env, call("create_task", {"user_id": "user_1", "title": "t", "description": {"a": 1}})
    )


def test_tool_error_text_passes_through(domain):
    env = Environment(domain)
    msg = assert_error_without_change(env, call("create_task", {"user_id": "nobody", "title": "A"}))
    assert msg.content == "Error: User nobody not found"
    msg = assert_error_without_change(
        env, call("update_task_status", {"task_id": "task_99", "status": "completed"})
    )
    assert msg.content == "Error: Task task_99 not found"
    msg = assert_error_without_change(env, call("dismiss_notification", {"notification_id": "n9"}, "user"))
    assert msg.content == "Error: Notification n9 not found"


def test_cross_side_calls_are_not_found(domain):
    env = Environment(domain)
    for name in USER_TOOLS:
        msg = assert_error_without_change(
            env, call(name, {"notification_id": "notif_1"} if "dismiss" in name else {})
        )
        assert msg.content == f"Error: Tool '{name}' not found."
    for name in AGENT_TOOLS:
        msg = assert_error_without_change(env, call(name, {}, requestor="user"))
        assert msg.content == f"Error: Tool '{name}' not found."
    # the explicit requestor argument wins over the call's own field
    msg = assert_error_without_change(env, call("get_users", {}, requestor="assistant"), requestor="user")
    assert msg.content == "Error: Tool 'get_users' not found." and msg.requestor == "user"


def test_successful_calls_on_both_sides(domain):
    env = Environment(domain)
    msg = env.execute(call("update_task_status", {"task_id": "task_1", "status": "completed"}))
    assert msg.error is False and json.loads(msg.content)["status"] == "completed"
    assert env.view().tasks["task_1"].status == "completed"
    msg = env.execute(call("dismiss_notification", {"notification_id": "notif_1"}, "user"))
    assert msg.error is False and msg.requestor == "user"
    assert env.view("user").notifications["notif_1"].status == "read"
    users = json.loads(env.execute(call("get_users")).content)
    assert isinstance(users, list) and {u["user_id"] for u in users} >= {"user_1"}
    assert [c.name for c, _ in env.log] == ["update_task_status", "dismiss_notification", "get_users"]


# --------------------------------------------------------------------------- no partial writes


@tool(kind="write")
def explode(db: MockDB, task_id: str) -> str:
    """Write several things, then fail.

    Args:
        task_id: A task to modify before failing.
    """
    db.tasks[task_id].status = "completed"
    db.tasks["task_new"] = TaskItem(task_id="task_new", title="half written")
    del db.users["user_1"]
    raise RuntimeError("boom while writing")


@tool(kind="write")
def refuse_after_write(db: MockDB, task_id: str) -> str:
    """Write, then raise a domain error."""
    db.tasks[task_id].title = "changed"
    raise ToolError(f"Task {task_id} cannot be changed now")


@tool(kind="write")
def unserializable(db: MockDB, task_id: str) -> dict:
    """Write, then return something JSON cannot encode."""
    db.tasks[task_id].title = "changed"
    return {(1, 2): "tuple keys are not JSON"}


@tool(kind="read")
def sneaky_read(db: MockDB, task_id: str) -> str:
    """A read tool that mutates a row in place (a domain-author mistake)."""
    db.tasks[task_id].title = "mutated by a read tool"
    return "ok"


def custom_domain(*extra) -> Domain:  # noqa: ANN002
    return Domain(
        "custom",
        MockDB,
        [*mock_tools.AGENT_TOOLS, *extra],
        "policy",
        lambda: generate_db(0),
        user_db_model=MockUserDB,
        user_tools=mock_tools.USER_TOOLS,
        load_user_db=lambda: generate_user_db(0),
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("explode", "Error: boom while writing"),
        ("refuse_after_write", "Error: Task task_5 cannot be changed now"),
        ("unserializable", None),
    ],
)
def test_a_failing_write_tool_leaves_no_partial_write(name, expected):
    dom = custom_domain(explode, refuse_after_write, unserializable)
    env = Environment(dom)
    hash_before = env.db_hash()
    msg = assert_error_without_change(env, call(name, {"task_id": "task_5"}))
    if expected is not None:
        assert msg.content == expected
    assert env.agent_state.is_pristine
    assert env.db_hash() == hash_before
    view = env.view()
    assert view.tasks["task_5"].status == "pending" and view.tasks["task_5"].title != "changed"
    assert "task_new" not in view.tasks and "user_1" in view.users
    # a later successful call still works on the clean state
    ok = env.execute(call("update_task_status", {"task_id": "task_5", "status": "completed"}))
    assert ok.error is False and env.view().tasks["task_5"].status == "completed"


def test_a_read_tool_cannot_change_shared_state():
    dom = custom_domain(sneaky_read)
    env, other = Environment(dom), Environment(dom)
    original = other.view().tasks["task_5"].title
    env.execute(call("sneaky_read", {"task_id": "task_5"}))
    assert other.view().tasks["task_5"].title == original
    assert dom.base_db().model.tasks["task_5"].title == original


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


def _oracle(tau2_dir) -> dict[str, dict]:  # noqa: ANN001
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


def test_domain_without_user_db():
    dom = Domain("solo", MockDB, mock_tools.AGENT_TOOLS, "policy", lambda: generate_db(0))
    env = Environment(dom)
    assert env.user_state is None and env.user_db_hash() is None
    msg = assert_error_without_change(env, call("check_notifications", {}, "user"))
    assert msg.content == "Error: Tool 'check_notifications' not found."
    with pytest.raises(ValueError):
        env.view("user")


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


# --------------------------------------------------------------------------- property tests

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
ARG_NAMES = [
    "user_id",
    "title",
    "description",
    "task_id",
    "status",
    "summary",
    "notification_id",
    "db",
    "ids",
]
PLAUSIBLE = st.sampled_from(
    ["user_1", "user_2", "task_1", "task_2", "task_7", "notif_1", "", "pending", "completed", "bogus", "T"]
)
ARG_DICTS = st.dictionaries(st.sampled_from(ARG_NAMES) | st.text(max_size=6), PLAUSIBLE | JSON, max_size=4)
NAMES = st.sampled_from(AGENT_TOOLS + USER_TOOLS) | st.text(max_size=20)
SIDES = st.sampled_from(["assistant", "user"])


@st.composite
def random_calls(draw) -> ToolCall:  # noqa: ANN001
    name = draw(NAMES)
    side = draw(SIDES)
    how = draw(st.sampled_from(["dict", "json_text", "raw_text", "any_json_text", "bypass"]))
    if how == "dict":
        return ToolCall(id="p", name=name, arguments=draw(ARG_DICTS), requestor=side)
    if how == "json_text":
        return ToolCall(id="p", name=name, arguments=json.dumps(draw(ARG_DICTS)), requestor=side)
    if how == "raw_text":
        return ToolCall(id="p", name=name, arguments=draw(st.text(max_size=30)), requestor=side)
    if how == "any_json_text":
        return ToolCall(id="p", name=name, arguments=json.dumps(draw(JSON)), requestor=side)
    return ToolCall.model_construct(id="p", name=name, arguments=draw(JSON), requestor=side)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_calls())
def test_property_execute_never_raises_and_errors_never_write(tc):
    env = Environment(builtin_mock())
    before = (env.db_hash(), env.user_db_hash())
    msg = env.execute(tc)
    assert msg.role == "tool"
    assert isinstance(msg.error, bool)
    assert isinstance(msg.content, str)
    assert msg.requestor == tc.requestor and msg.id == "p"
    if msg.error:
        assert msg.content.startswith("Error: ")
        assert (env.db_hash(), env.user_db_hash()) == before
        assert env.agent_state.is_pristine and env.user_state.is_pristine
    if tc.name not in (AGENT_TOOLS if tc.requestor == "assistant" else USER_TOOLS):
        assert msg.error and msg.content == f"Error: Tool '{tc.name}' not found."
    elif not env.toolkit(tc.requestor).mutates_state(tc.name):
        assert env.agent_state.is_pristine and env.user_state.is_pristine


GOOD_VALUES = {
    "user_id": ["user_1", "user_2"],
    "title": ["T", "Meeting"],
    "description": [None, "d"],
    "task_id": ["task_1", "task_2", "task_3", "task_7"],
    "status": ["pending", "completed", "bogus"],
    "summary": ["help"],
    "notification_id": ["notif_1", "notif_2"],
}
_ALL_SPECS = {**builtin_mock().toolkit.tools, **builtin_mock().user_toolkit.tools}


@st.composite
def valid_ish_calls(draw) -> ToolCall:  # noqa: ANN001
    """Mostly well-formed calls on the right side with plausible ids, sometimes not."""
    name = draw(st.sampled_from(AGENT_TOOLS + USER_TOOLS + ["nope"]))
    right_side = "user" if name in USER_TOOLS else "assistant"
    side = draw(st.sampled_from([right_side] * 4 + ["assistant", "user"]))
    spec = _ALL_SPECS.get(name)
    args = {}
    for arg in spec.arg_names if spec else ():
        roll = draw(st.integers(0, 9))
        if roll >= 3:
            args[arg] = draw(st.sampled_from(GOOD_VALUES[arg]))
        elif roll >= 1:
            args[arg] = draw(PLAUSIBLE | JSON)
    if draw(st.integers(0, 9)) == 0:
        args[draw(st.sampled_from(ARG_NAMES))] = draw(PLAUSIBLE)
    return ToolCall(id="s", name=name, arguments=args, requestor=side)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_ish_calls(), max_size=12), st.sampled_from(["builtin", "tau2"]))
def test_property_random_call_sequences(tau2_mock, calls, which):
    dom = builtin_mock() if which == "builtin" else tau2_mock
    env = Environment(dom)
    start = env.fork()
    messages: list[Message] = []
    for tc in calls:
        before = (env.db_hash(), env.user_db_hash())
        msg = env.execute(tc)
        assert msg.role == "tool" and isinstance(msg.error, bool) and isinstance(msg.content, str)
        if msg.error:
            assert (env.db_hash(), env.user_db_hash()) == before
        messages.append(Message(role=tc.requestor, tool_calls=[tc]))
        messages.append(msg)
    # the fork taken at the start never moved
    assert start.same_state(Environment(dom)) and start.agent_state.is_pristine
    # replaying the dialogue's calls on a fresh environment reproduces the state exactly
    again = Environment(dom)
    again.replay(messages)
    assert again.same_state(env)
    assert again.db_hash() == env.db_hash() and again.user_db_hash() == env.user_db_hash()
    fresh = Environment(dom)
    same_hashes = (env.db_hash(), env.user_db_hash()) == (fresh.db_hash(), fresh.user_db_hash())
    assert env.same_state(fresh) == same_hashes
