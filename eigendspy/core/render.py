"""The one agent-facing rendering: what the trained model sees, in SFT export, RL and eval.

Why one function: if SFT data, GRPO rollouts and evaluation rendered prompts differently, the
policy would be trained on one distribution and scored on another. Every stage calls
`agent_chat` (assistant side) or `user_chat` (user-model side) and nothing else.

Forms (tau2-bench's): the assistant's system prompt is ``<instructions>...</instructions>``
followed by ``<policy>...</policy>``; the user model's is its guidelines followed by a
``<scenario>`` block, and it sees the dialogue with roles flipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from eigendspy.core.messages import Message, to_openai

AGENT_INSTRUCTIONS = """You are a customer service agent. Help the user strictly according to the <policy> below.
Each turn, do exactly one of these:
- write a message to the user, or
- call one or more tools.
Never do both in the same turn.

Be helpful, follow the policy at all times, and make sure every tool call has valid JSON arguments."""

USER_GUIDELINES = """# How to play the customer
You are a customer talking to a customer service agent. Stay in character and follow the scenario.

- Write one message at a time, the way a real customer would.
- Use only information given in the scenario. Anything not in it is unknown to you: say you do not know.
- Do not recite the scenario word for word; say things in your own words.
- Reveal details only when the agent asks for them.
- Keep going until your goal is reached. Then write '###STOP###' to end the conversation.
- If the agent transfers you to another agent or a human, write '###TRANSFER###'.
- If the scenario does not tell you how to continue, write '###OUT-OF-SCOPE###'."""

USER_TOOL_GUIDELINES = """
- You also have tools that act on your own device. Use them when the agent asks you to, and tell the
  agent what you see; never invent a result you did not get from a tool."""


class ChatPrompt(BaseModel):
    """Plain OpenAI-style chat: messages plus the tool schemas offered to the model."""

    model_config = ConfigDict(frozen=True)

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]


def agent_system_prompt(policy: str, instructions: str | None = None) -> str:
    return f"<instructions>\n{instructions or AGENT_INSTRUCTIONS}\n</instructions>\n<policy>\n{policy}\n</policy>"


def user_system_prompt(scenario: str, *, with_tools: bool = False, guidelines: str | None = None) -> str:
    text = guidelines or (USER_GUIDELINES + (USER_TOOL_GUIDELINES if with_tools else ""))
    return f"{text}\n\n<scenario>\n{scenario}\n</scenario>"


def agent_chat(
    policy: str,
    tools: Sequence[dict[str, Any]],
    messages: Sequence[Message],
    *,
    instructions: str | None = None,
) -> ChatPrompt:
    """The assistant's view of a dialogue: system prompt, then user/assistant/tool messages."""
    system = {"role": "system", "content": agent_system_prompt(policy, instructions)}
    return ChatPrompt(messages=[system, *to_openai(list(messages))], tools=list(tools))


def user_chat(
    scenario: str,
    messages: Sequence[Message],
    *,
    tools: Sequence[dict[str, Any]] = (),
    guidelines: str | None = None,
) -> ChatPrompt:
    """The user model's view: guidelines + scenario, the dialogue with roles flipped."""
    system = {"role": "system", "content": user_system_prompt(scenario, with_tools=bool(tools), guidelines=guidelines)}
    return ChatPrompt(messages=[system, *to_openai(list(messages), flip_roles=True)], tools=list(tools))


def side_chat(side: str, messages: Sequence[Message], ctx: Any, *, instructions: str | None = None) -> ChatPrompt:
    """What one side of an episode sees: `agent_chat` for the assistant, `user_chat` for the user model.

    ``ctx`` is the orchestrator's `TurnContext` (its domain's policy, its task's scenario, this side's tools);
    ``instructions`` (an evolved agent instruction) applies to the assistant side only.
    """
    if side == "assistant":
        return agent_chat(ctx.domain.policy, ctx.tools, messages, instructions=instructions)
    return user_chat(ctx.task.user_scenario.render(), messages, tools=ctx.tools)
