"""The one agent-facing rendering: what the trained model sees, in SFT export, RL and eval.

Why one function: if SFT data, GRPO rollouts and evaluation rendered prompts differently, the
policy would be trained on one distribution and scored on another. Every stage calls
`agent_chat` (assistant side) or `user_chat` (user-model side) and nothing else.

Forms (tau2-bench's): the assistant's system prompt is ``<instructions>...</instructions>``
followed by ``<policy>...</policy>``; the user model's is its guidelines followed by a
``<scenario>`` block, and it sees the dialogue with roles flipped.

`training_messages` is the last step before a chat template: the same messages with tool-call
arguments as dicts. It lives here, not in the export, because SFT export and GRPO rollouts both
need it and the rollout side must not depend on the dataset export. `inline_tools` is the step
after it for chat templates that cannot render tools (SmolLM2's): one text form of the tool
schemas, calls and results, so such a model sees the same dialogue in SFT, RL and eval.
"""

from __future__ import annotations

import json
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


class MalformedToolCall(ValueError):
    """A tool call's arguments are not a JSON object, so a chat template cannot render them faithfully."""


def training_messages(prompt: ChatPrompt, *, strict: bool = True) -> list[dict[str, Any]]:
    """The prompt's messages with tool-call ``arguments`` decoded to dicts (what chat templates expect).

    Why: the OpenAI wire format carries arguments as a JSON string, but TRL's Qwen2.5 templates render
    them with ``arguments | tojson``, so a string would be trained double-encoded and TRL's response
    parser could not read the model's own calls back.

    Args:
        prompt: A rendering from `agent_chat`, `user_chat` or `side_chat`.
        strict: Raise on arguments that are not a JSON object (exports skip such dialogues). With
            ``strict=False`` they become ``{"__raw__": <the text>}``, so a rollout can still show the
            model its own malformed call.

    Returns:
        New message dicts; ``prompt`` is not changed.

    Raises:
        MalformedToolCall: if ``strict`` and some call's arguments are not a JSON object.
    """
    out = []
    for message in prompt.messages:
        message = dict(message)
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                fn = dict(call["function"])
                try:
                    args = _json_object(fn["name"], fn["arguments"])
                except MalformedToolCall:
                    if strict:
                        raise
                    args = {"__raw__": str(fn["arguments"])}
                calls.append({**call, "function": {**fn, "arguments": args}})
            message["tool_calls"] = calls
        out.append(message)
    return out


TOOLS_PREAMBLE = """# Tools

These functions are available. Each line between <tools> and </tools> describes one of them as JSON:
<tools>
{schemas}
</tools>

To call a function, reply with one <tool_call></tool_call> block per call, each holding a JSON object
with the function's name and its arguments:
<tool_call>
{{"name": "<function name>", "arguments": {{<arguments as a JSON object>}}}}
</tool_call>"""


def tool_call_text(name: str, arguments: Any) -> str:
    """One call in the Hermes form ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` that
    `eigendspy.train.chat_tokens.parse_completion` reads back."""
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    return f"<tool_call>\n{payload}\n</tool_call>"


def inline_tools(messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same dialogue as plain text turns, for a chat template that cannot render tools.

    Why: some chat templates (SmolLM2's, many small models') ignore ``tools`` without a word and fail
    on a tool-call turn, which has no ``content``. Rewriting the dialogue here, in one place, gives
    every stage that makes tokens (SFT, GRPO rollouts, ``eval``, all through
    `eigendspy.train.chat_tokens.render_text`) the same text, in the Hermes form the Qwen2.5
    template also teaches: the schemas in the system message (`TOOLS_PREAMBLE`), each call as a
    ``<tool_call>`` block in the assistant's content, and a run of tool results as one user turn of
    ``<tool_response>`` blocks (templates without tools rarely know a ``tool`` role).

    Args:
        messages: Messages as `training_messages` returns them (arguments as dicts).
        tools: The tool schemas offered; none means the system message is left as it is.

    Returns:
        New message dicts with only ``role`` and ``content``; ``messages`` is not changed.
    """
    out: list[dict[str, Any]] = []
    if tools:
        block = TOOLS_PREAMBLE.format(schemas="\n".join(json.dumps(t, ensure_ascii=False) for t in tools))
        if messages and messages[0]["role"] == "system":
            out.append({"role": "system", "content": f"{messages[0]['content']}\n\n{block}"})
            messages = messages[1:]
        else:
            out.append({"role": "system", "content": block})
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if message.get("tool_calls"):
            calls = [tool_call_text(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]]
            content = "\n".join(([content] if content else []) + calls)
        if role == "tool":
            content = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1] = {**out[-1], "content": f"{out[-1]['content']}\n{content}"}
                continue
            out.append({"role": "user", "content": content, "tool_results": True})
            continue
        out.append({"role": role, "content": content})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _json_object(name: str, args: Any) -> dict[str, Any]:
    """``args`` as a dict: decoded if it is a JSON string (empty means no arguments), else checked."""
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as exc:
            raise MalformedToolCall(f"tool call {name!r}: arguments are not JSON: {args!r}") from exc
    if not isinstance(args, dict):
        raise MalformedToolCall(f"tool call {name!r}: arguments are not a JSON object: {args!r}")
    return args
