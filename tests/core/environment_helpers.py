"""Shared helpers for the environment tests: the mock domain's tool names, the builtin and tau2
mock domains (as the ``domain`` and ``tau2_mock`` fixtures; test modules load them with
``pytest_plugins = ["tests.core.environment_helpers"]``), a ToolCall builder and the no-partial-write check."""

from __future__ import annotations

import pytest

from eigendspy.core.domain import Domain
from eigendspy.core.environment import Environment
from eigendspy.core.messages import Message, ToolCall
from eigendspy.domains import get_domain

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


def call(name, arguments=None, requestor="assistant", call_id="c1") -> ToolCall:
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
