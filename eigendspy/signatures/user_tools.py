"""Signature of the simulated user's turn in dual-control domains (the user has device tools)."""

from __future__ import annotations

import dspy


class UserToolTurn(dspy.Signature):
    """You are a customer contacting customer service, and you can act on your own device.

    Follow the scenario; never invent facts. Each turn, either use your device's tools (fill
    `tool_calls` and leave `message` empty) when the agent asks you to do or check something on
    it, or write one message to the agent (fill `message`, leave `tool_calls` empty) — never
    both. Reveal details only when asked, and end the conversation with '###STOP###' when your
    goal is met ('###TRANSFER###' if transferred, '###OUT-OF-SCOPE###' if the scenario gives no
    way to continue).
    """

    scenario: str = dspy.InputField(desc="Who you are, what you want, what you know and do not know")
    dialogue: str = dspy.InputField(desc="The conversation so far, from your point of view")
    tools: list[dspy.Tool] = dspy.InputField(desc="Tools of your own device")
    tool_calls: dspy.ToolCalls = dspy.OutputField(desc="Device actions to take now, or an empty list")
    message: str = dspy.OutputField(desc="Your next message to the agent when not using tools, else empty")
