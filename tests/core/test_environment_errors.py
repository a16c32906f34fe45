"""Environment: bad tool calls become error messages (never exceptions), errors and failing tools
leave no partial writes, and successful calls on both sides."""

from __future__ import annotations

import json

import pytest

from eigendspy.core.domain import Domain, ToolError, tool
from eigendspy.core.environment import Environment
from eigendspy.core.messages import ToolCall
from eigendspy.domains.mock import generate_db, generate_user_db
from eigendspy.domains.mock import tools as mock_tools
from eigendspy.domains.mock.db import MockDB, MockUserDB, TaskItem
from tests.core.environment_helpers import AGENT_TOOLS, USER_TOOLS, assert_error_without_change, call

# the shared ``domain`` fixture (the builtin and the tau2 mock domain)
pytest_plugins = ["tests.core.environment_helpers"]


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


def custom_domain(*extra) -> Domain:
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


def test_domain_without_user_db():
    dom = Domain("solo", MockDB, mock_tools.AGENT_TOOLS, "policy", lambda: generate_db(0))
    env = Environment(dom)
    assert env.user_state is None and env.user_db_hash() is None
    msg = assert_error_without_change(env, call("check_notifications", {}, "user"))
    assert msg.content == "Error: Tool 'check_notifications' not found."
    with pytest.raises(ValueError):
        env.view("user")
