"""The simulated user as a DSPy module and as an orchestrator participant."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import dspy

from eigendspy.agents.assistant import prediction_to_message, schema_tools
from eigendspy.agents.transcript import transcript
from eigendspy.core.messages import Message
from eigendspy.core.participants import TurnContext
from eigendspy.core.task import StructuredUserInstructions, Task
from eigendspy.lm.bounded_state import role_turn_state
from eigendspy.lm.cached_adapter import shared_chat_adapter
from eigendspy.signatures.user import UserTurn
from eigendspy.signatures.user_tools import UserToolTurn

SMALL_CONFIRM = "Yes, please go ahead."
SMALL_STOP = "Thank you, that is all. ###STOP###"
_WANT = re.compile(r"^\s*you want (?:the agent )?to\s+(.+)$", re.I | re.S)


class UserSimulator(dspy.Module):
    """Plays the customer from a task's scenario (tau2's guidelines, role-flipped dialogue).

    Dual control: given device tools (``forward(..., tools=[...])``, or in an episode with
    ``use_tools=True`` and non-empty ``ctx.tools``), a second predictor over `UserToolTurn` may
    call them natively, as the assistant does; tool calls win over text in the returned message.
    Without tools only the plain `UserTurn` predictor runs.

    Args:
        lm: The LM for this role (both predictors); ``None`` uses the caller's context.
        use_tools: Let the user call its device tools when it has any. Off by default: the user
            only talks, as before dual control was supported, and an LM (or scripted policy)
            answering without a ``tool_calls`` field keeps working. With it on, every answer of
            the tool predictor must carry ``tool_calls`` (an empty list for a plain message).
        small_model: Small-model mode (`eigendspy.lm.small_model`), for `respond`: the message is one
            of a few utterances stated from the scenario (`small_utterances`) — its request, each
            known fact, a confirmation, a goodbye with ``###STOP###`` — so a tiny model chooses
            *when* to say what, but cannot invent facts, read its instructions aloud, or parrot the
            agent (docs/embedded_model.md).
    """

    def __init__(self, lm: dspy.LM | None = None, use_tools: bool = False, small_model: bool = False) -> None:
        super().__init__()
        self.use_tools = use_tools
        self.small_model = small_model
        self.turn = dspy.Predict(UserTurn)
        self.tool_turn = dspy.Predict(UserToolTurn)
        if lm is not None:
            self.turn.set_lm(lm)
            self.tool_turn.set_lm(lm)
        self._tools: dict[int, list[dspy.Tool]] = {}

    def forward(self, scenario: str, dialogue: str, tools: list[dspy.Tool] | None = None) -> dspy.Prediction:
        if tools:
            return self.tool_turn(scenario=scenario, dialogue=dialogue, tools=tools)
        return self.turn(scenario=scenario, dialogue=dialogue)

    async def aforward(self, scenario: str, dialogue: str, tools: list[dspy.Tool] | None = None) -> dspy.Prediction:
        if tools:
            return await self.tool_turn.acall(scenario=scenario, dialogue=dialogue, tools=tools)
        return await self.turn.acall(scenario=scenario, dialogue=dialogue)

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        # A turn retains no DSPy trace/history (unless an optimizer traces), formats its prompt with the shared
        # cached adapter where the caller set none (byte-identical to DSPy's ChatAdapter) and skips DSPy's input
        # type check of values it built itself: one settings context (`role_turn_state`).
        with role_turn_state(shared_chat_adapter()):
            return await self._respond(messages, ctx)

    async def _respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        tools = None
        if ctx.tools and self.use_tools:
            key = id(ctx.domain)
            if key not in self._tools:
                self._tools[key] = schema_tools(ctx.tools)
            tools = self._tools[key]
        inputs = dict(scenario=ctx.task.user_scenario.render(), dialogue=transcript(messages, viewer="user"))
        if self.small_model and tools is None:
            # The registered predictor with a per-call output type (never a copy: optimizers' traces
            # must see the call); its instructions, demos and LM are kept.
            choices = Literal[tuple(small_utterances(ctx.task, messages))]  # type: ignore[valid-type]
            signature = self.turn.signature.with_updated_fields("message", type_=choices)
            pred = await self.turn.acall(signature=signature, **inputs)
            return Message(role="user", content=str(pred.message))
        pred = await self.acall(**inputs, tools=tools)
        return prediction_to_message(pred, "user", text_field="message")


def small_utterances(task: Task, messages: Sequence[Message]) -> list[str]:
    """The small-model user's choices now: the request ("You want (the agent) to X" becomes "Please
    X"), each known fact the request does not already hold, a confirmation, and — once the user has
    spoken — a goodbye with ``###STOP###``. Each is offered until said; the goodbye stays last."""
    ins = task.user_scenario.instructions
    if isinstance(ins, StructuredUserInstructions):
        reason, known = ins.reason_for_call.strip(), ins.known_info or ""
    else:
        reason, known = str(ins).strip(), ""
    match = _WANT.match(reason)
    request = f"Please {match.group(1).strip()}" if match else reason
    facts = [f.strip().rstrip(".") for f in re.split(r"[;\n]", known) if f.strip()]
    facts = [f"{f}." for f in facts if f.split(":")[-1].strip() not in request]
    said = {m.content for m in messages if m.role == "user" and m.content}
    options = [u for u in (request, *facts, SMALL_CONFIRM) if u and u not in said]
    if said or not options:
        options.append(SMALL_STOP)
    return list(dict.fromkeys(options))
