"""The one plain-text rendering of a dialogue that DSPy roles read (text adapters have no chat roles).

Every role that reads a dialogue reads it through `transcript`, so the assistant, the simulated
user, the trajectory validator and the NL judge see the same lines for the same messages; only the
*view* differs:

- a participant's view (``viewer="assistant"`` or ``"user"``): its own side is "you", and the other
  side's device actions — tool calls and results, dual control — are hidden, as in tau2's
  role-specific views;
- the observer's view (``viewer="observer"``), for judges: both sides' tool calls and results,
  each labelled with its side.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

from eigendspy.core.messages import Message, ToolCall

Viewer = Literal["assistant", "user", "observer"]
"""Who reads the transcript: one of the two participants, or a neutral observer."""

OBSERVER: Viewer = "observer"


def transcript(messages: Sequence[Message], *, viewer: Viewer = "assistant") -> str:
    """One line per message (one per tool call); system messages are not part of the dialogue.

    Args:
        messages: The dialogue, in order.
        viewer: ``"assistant"`` or ``"user"`` for that participant's view, ``"observer"`` for a judge's.

    Returns:
        The transcript, lines joined by newlines.
    """
    return "\n".join(line for m in messages for line in _lines(m, viewer))


def _lines(m: Message, viewer: Viewer) -> list[str]:
    if m.role == "tool":
        side = m.requestor or "assistant"
        if not _sees_device_of(side, viewer):
            return []
        label = f"{side} " if viewer == OBSERVER else ""
        return [f"[{label}tool result{' ERROR' if m.error else ''}] {m.content or ''}"]
    if m.role not in ("user", "assistant"):
        return []
    speaker = _speaker(m.role, viewer)
    if m.tool_calls:  # tau2's contract: a message carries tool calls or text, never both
        if not _sees_device_of(m.role, viewer):
            return []
        return [f"{speaker} [tool call] {call.name}({_arguments(call)})" for call in m.tool_calls]
    return [f"{speaker}: {m.content or ''}"]


def _sees_device_of(side: str, viewer: Viewer) -> bool:
    """Tool traffic is private to the side that made it; only an observer sees both sides'."""
    return viewer == OBSERVER or side == viewer


def _speaker(role: str, viewer: Viewer) -> str:
    if viewer == OBSERVER:
        return role
    if role == viewer:
        return "you"
    return "user" if viewer == "assistant" else "agent"


def _arguments(call: ToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
