"""An API LM as a participant: tau2's prompt form in, native tool calls out, provider failures as infra errors."""

from __future__ import annotations

import asyncio

import pytest

from eigendspy.core.messages import Message
from eigendspy.core.participants import InfrastructureError, TurnContext
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.eval.agents import build_assistant
from eigendspy.lm.chat_api import ChatAPIParticipant, to_message


@pytest.fixture()
def ctx():
    domain = get_domain("mock")
    task = Task.model_validate({"id": "t1", "user_scenario": {"instructions": "Create a task called Lunch."}})
    return TurnContext(role="assistant", task=task, domain=domain, tools=domain.tool_schemas("assistant"))


DIALOGUE = [Message.assistant("Hi! How can I help you today?"), Message.user("Create a task 'Lunch' for user_1.")]


def test_the_model_sees_agent_chat_and_native_tools(ctx, monkeypatch):
    import litellm

    seen, real = {}, litellm.acompletion

    async def fake(**kwargs):
        seen.update(kwargs)
        return await real(**{**kwargs, "mock_response": "Sure."})

    monkeypatch.setattr(litellm, "acompletion", fake)
    agent = ChatAPIParticipant("openai/gpt-4.1-mini", instructions="Be brief.")
    reply = asyncio.run(agent.respond(DIALOGUE, ctx))
    assert reply == Message(role="assistant", content="Sure.")
    system = seen["messages"][0]["content"]
    assert system.startswith("<instructions>\nBe brief.\n</instructions>\n<policy>") and ctx.domain.policy in system
    assert [m["role"] for m in seen["messages"]] == ["system", "assistant", "user"]
    assert seen["tools"] == ctx.tools and seen["temperature"] == 0.0


def test_native_tool_calls_become_tau2_calls(ctx):
    calls = [{"id": "c1", "type": "function",
              "function": {"name": "create_task", "arguments": '{"user_id": "user_1", "title": "Lunch"}'}}]
    agent = ChatAPIParticipant("openai/gpt-4.1-mini", completion_kwargs={"mock_tool_calls": calls})
    reply = asyncio.run(agent.respond(DIALOGUE, ctx))
    assert reply.content is None and len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert (call.id, call.name, call.requestor) == ("c1", "create_task", "assistant")
    assert call.arguments == {"user_id": "user_1", "title": "Lunch"}


def test_malformed_arguments_stay_a_string_for_the_environment_to_reject():
    from types import SimpleNamespace as NS

    message = NS(content="ignored", tool_calls=[NS(id="x", function=NS(name="create_task", arguments="{oops"))])
    call = to_message(message, "assistant").tool_calls[0]
    assert call.arguments == "{oops"


def test_unreachable_provider_is_an_infrastructure_error(ctx):
    agent = ChatAPIParticipant("openai/gpt-4.1-mini", api_base="http://127.0.0.1:9", num_retries=0,
                               completion_kwargs={"api_key": "x", "timeout": 5})
    with pytest.raises(InfrastructureError, match="gpt-4.1-mini"):
        asyncio.run(agent.respond(DIALOGUE, ctx))


def test_build_assistant_lm_spec():
    agent = build_assistant("lm:openai/gpt-4.1-mini", temperature=0.2, max_new_tokens=64, seed=0,
                            api_base="http://localhost:8000/v1")
    assert isinstance(agent, ChatAPIParticipant)
    assert agent.kwargs["api_base"] == "http://localhost:8000/v1" and agent.kwargs["max_tokens"] == 64
    with pytest.raises(ValueError, match="LiteLLM model id"):
        build_assistant("lm:gpt", temperature=0.0, max_new_tokens=8, seed=0)
