"""The agent-facing rendering: tau2 prompt forms, OpenAI message dicts, and per-side visibility."""

from __future__ import annotations

import json
import re

import pytest

from eigendspy.core.messages import Message, ToolCall, to_openai
from eigendspy.core.render import (
    AGENT_INSTRUCTIONS,
    USER_GUIDELINES,
    USER_TOOL_GUIDELINES,
    ChatPrompt,
    MalformedToolCall,
    agent_chat,
    training_messages,
    user_chat,
)
from eigendspy.core.task import UserScenario
from eigendspy.domains import get_domain


@pytest.fixture(scope="module")
def domain():
    return get_domain("mock")


def dialogue() -> list[Message]:
    """Greeting, a user text, an agent tool call + result, a user device call + result, agent text."""
    return [
        Message.assistant("Hi! How can I help you today?"),
        Message.user("Please mark task_1 done."),
        Message.assistant(
            tool_calls=[
                ToolCall(
                    id="a1", name="update_task_status", arguments={"task_id": "task_1", "status": "completed"}
                ),
            ]
        ),
        Message.tool("a1", '{"task_id": "task_1", "status": "completed"}', "assistant", False),
        Message.assistant("Done. Anything else?"),
        Message.user(
            tool_calls=[
                ToolCall(
                    id="u1",
                    name="dismiss_notification",
                    arguments={"notification_id": "notif_1"},
                    requestor="user",
                ),
            ]
        ),
        Message.tool("u1", "Notification notif_1 dismissed", "user", False),
        Message.user("That's all. ###STOP###"),
    ]


SYSTEM_FORM = re.compile(
    r"\A<instructions>\n(?P<ins>.*)\n</instructions>\n<policy>\n(?P<pol>.*)\n</policy>\Z", re.S
)


def test_agent_system_prompt_form_contains_the_policy(domain):
    prompt = agent_chat(domain.policy, domain.tool_schemas(), dialogue())
    assert isinstance(prompt, ChatPrompt)
    system = prompt.messages[0]
    assert system["role"] == "system"
    match = SYSTEM_FORM.match(system["content"])
    assert match is not None
    assert match["ins"] == AGENT_INSTRUCTIONS
    assert match["pol"] == domain.policy
    assert system["content"].count("</instructions>\n<policy>\n") == 1
    assert prompt.tools == domain.tool_schemas()
    assert sum(m["role"] == "system" for m in prompt.messages) == 1


def test_agent_system_prompt_with_evolved_instructions(domain):
    prompt = agent_chat("POLICY TEXT", [], [], instructions="Be brief.")
    assert prompt.messages == [
        {
            "role": "system",
            "content": "<instructions>\nBe brief.\n</instructions>\n<policy>\nPOLICY TEXT\n</policy>",
        }
    ]
    assert prompt.tools == []


def test_agent_view_messages(domain):
    msgs = agent_chat(domain.policy, domain.tool_schemas(), dialogue()).messages[1:]
    assert msgs == [
        {"role": "assistant", "content": "Hi! How can I help you today?"},
        {"role": "user", "content": "Please mark task_1 done."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "a1",
                    "type": "function",
                    "function": {
                        "name": "update_task_status",
                        "arguments": json.dumps({"task_id": "task_1", "status": "completed"}),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "a1", "content": '{"task_id": "task_1", "status": "completed"}'},
        {"role": "assistant", "content": "Done. Anything else?"},
        # the user's device call and its result are not the agent's to see
        {"role": "user", "content": "That's all. ###STOP###"},
    ]
    # arguments are JSON strings that parse back to the call's dict; ids pair calls and results
    call = msgs[2]["tool_calls"][0]
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"task_id": "task_1", "status": "completed"}
    assert msgs[3]["tool_call_id"] == call["id"]


def test_agent_view_hides_every_trace_of_user_side_tools():
    msgs = agent_chat("p", [], dialogue()).messages
    text = json.dumps(msgs)
    assert "dismiss_notification" not in text
    assert "u1" not in text and "Notification notif_1 dismissed" not in text


def test_string_arguments_and_multiple_calls_and_missing_ids():
    history = [
        Message.assistant(
            tool_calls=[
                ToolCall(id="x1", name="get_users", arguments='{"broken": '),
                ToolCall(id="x2", name="get_users", arguments={}),
            ]
        ),
        Message(role="tool", id="x1", content="Error: bad json", requestor="assistant", error=True),
        Message(role="tool", id="x2", content="[]"),  # no requestor: tau2 histories default to the agent
    ]
    msgs = to_openai(history)
    assert [c["function"]["arguments"] for c in msgs[0]["tool_calls"]] == ['{"broken": ', "{}"]
    assert [c["id"] for c in msgs[0]["tool_calls"]] == ["x1", "x2"]
    assert [m["tool_call_id"] for m in msgs[1:]] == ["x1", "x2"]
    assert msgs[1]["content"] == "Error: bad json"


def test_training_messages_decode_arguments_and_keep_everything_else():
    """Chat templates ``tojson`` the arguments, so they must be dicts; the prompt itself stays wire-format."""
    history = [*dialogue(), Message.assistant(tool_calls=[ToolCall(id="a2", name="list_tasks", arguments="  ")])]
    prompt = agent_chat("p", [], history)
    out = training_messages(prompt)
    assert len(out) == len(prompt.messages)
    calls = [c for m in out for c in m.get("tool_calls") or []]
    assert [c["function"]["arguments"] for c in calls] == [{"task_id": "task_1", "status": "completed"}, {}]
    assert [c["id"] for c in calls] == ["a1", "a2"] and [c["function"]["name"] for c in calls] == [
        "update_task_status",
        "list_tasks",
    ]
    plain = [m for m, o in zip(prompt.messages, out, strict=True) if not m.get("tool_calls")]
    assert plain == [o for o in out if not o.get("tool_calls")]  # messages without calls are unchanged
    first = next(m for m in prompt.messages if m.get("tool_calls"))
    assert isinstance(first["tool_calls"][0]["function"]["arguments"], str)  # the prompt was not mutated


@pytest.mark.parametrize("bad", ['{"broken": ', "[1, 2]", '"text"'])
def test_training_messages_malformed_arguments(bad):
    calls = [ToolCall(id="x1", name="get_users", arguments=bad),
             ToolCall(id="x2", name="get_users", arguments={"a": 1})]
    prompt = agent_chat("p", [], [Message.assistant(tool_calls=calls)])
    with pytest.raises(MalformedToolCall, match="tool call 'get_users'") as info:
        training_messages(prompt)
    assert isinstance(info.value, ValueError)
    lenient = training_messages(prompt, strict=False)[1]["tool_calls"]
    assert [c["function"]["arguments"] for c in lenient] == [{"__raw__": bad}, {"a": 1}]  # the model's own text


def test_user_chat_flips_roles_and_keeps_only_the_users_tool_calls(domain):
    scenario = "Persona:\nBusy.\n\nInstructions:\nGet task_1 marked done."
    prompt = user_chat(scenario, dialogue(), tools=domain.tool_schemas("user"))
    system = prompt.messages[0]
    assert system["role"] == "system"
    assert system["content"].endswith(f"<scenario>\n{scenario}\n</scenario>")
    assert system["content"].startswith(USER_GUIDELINES)
    assert USER_TOOL_GUIDELINES in system["content"]
    assert prompt.tools == domain.tool_schemas("user")
    assert prompt.messages[1:] == [
        {"role": "user", "content": "Hi! How can I help you today?"},
        {"role": "assistant", "content": "Please mark task_1 done."},
        # the agent's tool call and its result are hidden from the user
        {"role": "user", "content": "Done. Anything else?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "u1",
                    "type": "function",
                    "function": {
                        "name": "dismiss_notification",
                        "arguments": '{"notification_id": "notif_1"}',
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "u1", "content": "Notification notif_1 dismissed"},
        {"role": "assistant", "content": "That's all. ###STOP###"},
    ]
    assert "update_task_status" not in json.dumps(prompt.messages)


def test_user_chat_without_tools_has_no_tool_guidelines():
    prompt = user_chat("Do X.", [Message.assistant("Hi!")])
    content = prompt.messages[0]["content"]
    assert USER_TOOL_GUIDELINES not in content
    assert content == f"{USER_GUIDELINES}\n\n<scenario>\nDo X.\n</scenario>"
    assert prompt.tools == []
    custom = user_chat("Do X.", [], guidelines="GUIDE")
    assert custom.messages[0]["content"] == "GUIDE\n\n<scenario>\nDo X.\n</scenario>"


def test_user_chat_renders_a_task_scenario(tau2_dir):
    dom = get_domain("mock", data_dir=tau2_dir / "mock")
    task = dom.task("update_task_with_user_tools")
    rendered = task.user_scenario.render()
    assert task.user_scenario.persona in rendered
    assert task.user_scenario.instructions in rendered
    content = user_chat(rendered, task.message_history).messages[0]["content"]
    inner = re.search(r"<scenario>\n(.*)\n</scenario>\Z", content, re.S)
    assert inner is not None and inner.group(1) == rendered


def test_structured_scenario_render_order():
    scenario = UserScenario.model_validate(
        {
            "persona": "Calm.",
            "instructions": {
                "domain": "retail",
                "reason_for_call": "Return a lamp.",
                "known_info": "Order #W1.",
                "unknown_info": "The zip code.",
                "task_instructions": "Be polite.",
            },
        }
    )
    text = scenario.render()
    parts = [
        "Persona:\nCalm.",
        "Domain: retail",
        "Reason for call:\nReturn a lamp.",
        "Known info:\nOrder #W1.",
        "Unknown info:\nThe zip code.",
        "Task instructions:\nBe polite.",
    ]
    assert text == "\n\n".join(parts)
    minimal = UserScenario.model_validate(
        {"instructions": {"domain": "d", "reason_for_call": "r", "task_instructions": "t"}}
    )
    assert minimal.render() == "Domain: d\n\nReason for call:\nr\n\nTask instructions:\nt"


def test_task_message_history_renders_for_the_agent(tau2_dir):
    dom = get_domain("mock", data_dir=tau2_dir / "mock")
    task = dom.task("update_task_with_message_history")
    msgs = agent_chat(dom.policy, dom.tool_schemas(), task.message_history).messages[1:]
    assert len(msgs) == len(task.message_history)
    calls = [c for m in msgs for c in m.get("tool_calls", [])]
    results = [m for m in msgs if m["role"] == "tool"]
    assert [c["id"] for c in calls] == [r["tool_call_id"] for r in results] == ["call_1"]
    assert json.loads(calls[0]["function"]["arguments"]) == task.message_history[1].tool_calls[0].arguments
