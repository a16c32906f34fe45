"""Signature of the tool-using customer-service assistant's turn."""

from __future__ import annotations

import dspy


class AssistantTurn(dspy.Signature):
    """You are a customer service agent. Follow the policy strictly.

    Each turn, either call tools (fill `tool_calls` and leave `response` empty) or write one
    message to the user (fill `response` and leave `tool_calls` empty) — never both. Verify the
    user's identity before acting on their account, and get an explicit "yes" before any change.
    """

    policy: str = dspy.InputField(desc="The domain policy the agent must follow")
    dialogue: str = dspy.InputField(desc="The conversation so far, including tool calls and results")
    tools: list[dspy.Tool] = dspy.InputField(desc="Tools the agent may call")
    tool_calls: dspy.ToolCalls = dspy.OutputField(desc="Tool calls to make now, or an empty list")
    response: str = dspy.OutputField(desc="Message to the user when not calling tools, else empty")
