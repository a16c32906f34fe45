"""Signature of the simulated user's turn."""

from __future__ import annotations

import dspy


class UserTurn(dspy.Signature):
    """You are a customer contacting customer service. Follow the scenario; never invent facts.

    Write one message at a time, reveal details only when asked, and end the conversation with
    '###STOP###' when your goal is met ('###TRANSFER###' if transferred, '###OUT-OF-SCOPE###' if
    the scenario gives no way to continue).
    """

    scenario: str = dspy.InputField(desc="Who you are, what you want, what you know and do not know")
    dialogue: str = dspy.InputField(desc="The conversation so far, from your point of view")
    message: str = dspy.OutputField(desc="Your next message to the agent")
