"""The simulated user as a DSPy module and as an orchestrator participant."""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from eigendspy.agents.assistant import prediction_to_message, schema_tools
from eigendspy.agents.transcript import transcript
from eigendspy.participants import TurnContext
from eigendspy.signatures.user import UserTurn
from eigendspy.signatures.user_tools import UserToolTurn
from eigendspy.trajectory import Message


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
    """

    def __init__(self, lm: dspy.LM | None = None, use_tools: bool = False) -> None:
        super().__init__()
        self.use_tools = use_tools
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
        tools = None
        if ctx.tools and self.use_tools:
            key = id(ctx.domain)
            if key not in self._tools:
                self._tools[key] = schema_tools(ctx.tools)
            tools = self._tools[key]
        pred = await self.acall(scenario=ctx.task.user_scenario.render(),
                                dialogue=transcript(messages, viewer="user"), tools=tools)
        return prediction_to_message(pred, "user", text_field="message")
