"""Environment: property tests over random tool calls and call sequences."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eigendspy.core.environment import Environment
from eigendspy.core.messages import Message, ToolCall
from tests.core.environment_helpers import AGENT_TOOLS, USER_TOOLS, builtin_mock

# the shared ``tau2_mock`` fixture
pytest_plugins = ["tests.core.environment_helpers"]

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
def random_calls(draw) -> ToolCall:
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
def valid_ish_calls(draw) -> ToolCall:
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
