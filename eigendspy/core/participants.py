"""Participants: anything that can take a turn in an episode (assistant or user side).

One small async interface covers a DSPy module, a scripted Python policy and an RL policy
served by vLLM, so the data engine, evaluation and GRPO all run on the same orchestrator. A
turn may carry ``token_ids``, ``logprobs`` and a ``loss_mask``: the RL stage needs the exact
tokens the policy sampled, never a re-tokenization of its text.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from eigendspy.core.messages import Message

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.core.task import Task


class TokenTrace(BaseModel):
    """The tokens behind one generated message (RL only)."""

    prompt_token_ids: list[int] | None = None
    token_ids: list[int]
    logprobs: list[float] | None = None
    loss_mask: list[int] | None = None


class Turn(BaseModel):
    """What a participant returns: one message, optionally with its token trace."""

    message: Message
    trace: TokenTrace | None = None


class TurnContext(BaseModel):
    """Everything a participant may need besides the dialogue itself."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    role: Literal["assistant", "user"]
    task: Any
    domain: Any
    tools: list[dict[str, Any]] = Field(default_factory=list)
    seed: int = 0
    step: int = 0
    trial: int = 0

    @property
    def typed_task(self) -> Task:
        return self.task

    @property
    def typed_domain(self) -> Domain:
        return self.domain


class InfrastructureError(RuntimeError):
    """Raise from a participant when the failure is not the model's (network, server, quota).

    The episode ends with ``infrastructure_error`` and evaluation excludes it, as tau2 does.
    """


@runtime_checkable
class Participant(Protocol):
    """Takes the dialogue so far and returns its next message.

    Does not own: tool execution (the environment's), stop detection and step/error limits
    (the orchestrator's), or scoring (the checker's).
    """

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Turn | Message: ...


class FunctionParticipant:
    """Wraps a plain (sync or async) function ``f(messages, ctx) -> Message | Turn | str``."""

    def __init__(self, fn: Callable[[Sequence[Message], TurnContext], Any | Awaitable[Any]]) -> None:
        self.fn = fn

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Turn | Message:
        out = self.fn(messages, ctx)
        if inspect.isawaitable(out):
            out = await out
        if isinstance(out, str):
            return Message(role=ctx.role, content=out)
        return out


def as_turn(out: Turn | Message, role: str) -> Turn:
    """Normalize a participant's output and enforce the text-xor-tool-calls contract."""
    turn = out if isinstance(out, Turn) else Turn(message=out)
    msg = turn.message
    if msg.role != role:
        msg = msg.model_copy(update={"role": role})
    if msg.tool_calls and msg.content:
        # tau2's contract: a message carries text or tool calls, never both. Keep the actions.
        msg = msg.model_copy(update={"content": None})
    if msg.tool_calls:
        for call in msg.tool_calls:
            call.requestor = role  # type: ignore[assignment]
    return Turn(message=msg, trace=turn.trace)
