"""Render a dialogue as the plain transcript DSPy roles read (text adapters have no chat roles)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from eigendspy.core.messages import Message


def transcript(messages: Sequence[Message], *, viewer: str = "assistant") -> str:
    """One line per message. The viewer's own side is "you"; the other side's device actions
    (dual control) are hidden, as they are in tau2's role-specific views."""
    other = "user" if viewer == "assistant" else "agent"
    lines = []
    for m in messages:
        if m.role == "tool":
            if m.requestor == viewer:
                lines.append(f"[tool result{' ERROR' if m.error else ''}] {m.content}")
            continue
        speaker = "you" if m.role == viewer else other
        if m.tool_calls:
            if m.role == viewer:
                for c in m.tool_calls:
                    args = c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments)
                    lines.append(f"you [tool call] {c.name}({args})")
            continue
        lines.append(f"{speaker}: {m.content or ''}")
    return "\n".join(lines)
