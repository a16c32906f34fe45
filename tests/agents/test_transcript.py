"""The one dialogue renderer: each participant's view and the observer's, line for line."""

from __future__ import annotations

from eigendspy.agents.transcript import transcript
from eigendspy.core.messages import Message, ToolCall

UPDATE = ToolCall(id="c1", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})
DIALOGUE = [
    Message(role="system", content="the policy"),
    Message.assistant("Hi! How can I help?"),
    Message.user("Please complete task_1."),
    Message.assistant(tool_calls=[UPDATE]),
    Message.tool("c1", '{"status": "completed"}', "assistant", False),
    Message.user(tool_calls=[ToolCall(id="c2", name="toggle_airplane_mode", requestor="user")]),
    Message.tool("c2", "no such device", "user", True),
    Message.assistant("Done."),
]
ARGS = '{"task_id": "task_1", "status": "completed"}'


def test_the_assistant_sees_itself_as_you_and_only_its_own_tool_traffic():
    assert transcript(DIALOGUE).splitlines() == [
        "you: Hi! How can I help?",
        "user: Please complete task_1.",
        f"you [tool call] update_task_status({ARGS})",
        '[tool result] {"status": "completed"}',
        "you: Done.",
    ]


def test_the_user_sees_the_agent_and_only_its_own_device():
    assert transcript(DIALOGUE, viewer="user").splitlines() == [
        "agent: Hi! How can I help?",
        "you: Please complete task_1.",
        "you [tool call] toggle_airplane_mode({})",
        "[tool result ERROR] no such device",
        "agent: Done.",
    ]


def test_the_observer_sees_both_sides_tool_calls_and_results_labelled():
    assert transcript(DIALOGUE, viewer="observer").splitlines() == [
        "assistant: Hi! How can I help?",
        "user: Please complete task_1.",
        f"assistant [tool call] update_task_status({ARGS})",
        '[assistant tool result] {"status": "completed"}',
        "user [tool call] toggle_airplane_mode({})",
        "[user tool result ERROR] no such device",
        "assistant: Done.",
    ]


def test_malformed_arguments_and_missing_fields_render_as_they_are():
    msgs = [Message.assistant(tool_calls=[ToolCall(id="c", name="f", arguments='{"broken"')]),
            Message(role="tool", id="c", content=None), Message.user()]
    assert transcript(msgs).splitlines() == ['you [tool call] f({"broken")', "[tool result] ", "user: "]
    assert transcript(msgs, viewer="observer").splitlines() == [
        'assistant [tool call] f({"broken")', "[assistant tool result] ", "user: "]
