"""Message, ToolCall and simulation-run models, in tau2-bench's wire format.

Why tau2's format and not our own: every number our users report is compared against
tau2-bench, and `tau2 evaluate-trajs` must be able to re-grade a trajectory we wrote. The
models therefore read tau2 message dicts losslessly (unknown fields are kept, not dropped) and
dump back to the same shape. ``to_openai`` converts to the plain chat format the trained
model sees.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TerminationReason(str, Enum):
    """Why an episode ended (tau2's names). Only USER_STOP and AGENT_STOP can earn reward."""

    USER_STOP = "user_stop"
    AGENT_STOP = "agent_stop"
    MAX_STEPS = "max_steps"
    TOO_MANY_ERRORS = "too_many_errors"
    AGENT_ERROR = "agent_error"
    USER_ERROR = "user_error"
    INFRASTRUCTURE_ERROR = "infrastructure_error"


STOP_REASONS = (TerminationReason.USER_STOP, TerminationReason.AGENT_STOP)
"""The only endings that can earn reward."""


class ToolCall(BaseModel):
    """A tool call. ``arguments`` is normally a dict; a model's malformed JSON stays a string
    so the environment can answer it with an error message instead of the caller crashing."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    requestor: Literal["assistant", "user"] = "assistant"


class Message(BaseModel):
    """One message of a dialogue: ``system``, ``user``, ``assistant`` or ``tool``.

    Assistant and user messages carry text or tool calls (never both, by tau2's contract);
    tool messages carry the call ``id``, the ``requestor`` side and the ``error`` flag.
    """

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    id: str | None = None
    requestor: Literal["assistant", "user"] | None = None
    error: bool | None = None
    turn_idx: int | None = None

    @property
    def is_tool_call(self) -> bool:
        return bool(self.tool_calls)

    def tau2_dict(self) -> dict[str, Any]:
        """The dict tau2 itself writes (``exclude_none``)."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def assistant(cls, content: str | None = None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or None)

    @classmethod
    def user(cls, content: str | None = None, tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="user", content=content, tool_calls=tool_calls or None)

    @classmethod
    def tool(cls, call_id: str, content: str, requestor: str, error: bool) -> Message:
        return cls(role="tool", id=call_id, content=content, requestor=requestor, error=error)


def to_openai(messages: list[Message], *, flip_roles: bool = False) -> list[dict[str, Any]]:
    """Render tau2 messages as OpenAI chat-completions dicts.

    With ``flip_roles`` the dialogue is seen from the user simulator's side: the assistant's
    messages become ``user`` and the user's become ``assistant``; only the user's own tool
    calls and results are kept (tau2's user prompt contract).
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.role
        if flip_roles and role in ("user", "assistant"):
            role = "assistant" if role == "user" else "user"
        if m.role == "tool":
            if flip_roles and m.requestor != "user":
                continue
            if not flip_roles and m.requestor == "user":
                continue
            out.append({"role": "tool", "tool_call_id": m.id or "", "content": m.content or ""})
            continue
        own_side = "user" if flip_roles else "assistant"
        if m.tool_calls and m.role == own_side:
            out.append({
                "role": "assistant",
                "content": m.content or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {
                            "name": c.name,
                            "arguments": c.arguments if isinstance(c.arguments, str) else json.dumps(c.arguments),
                        },
                    }
                    for c in m.tool_calls
                ],
            })
        elif m.tool_calls:
            continue  # the other side's device actions are not visible
        else:
            out.append({"role": role, "content": m.content or ""})
    return out
