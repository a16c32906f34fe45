"""The simulated user as a DSPy module and as an orchestrator participant."""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from eigendspy.agents.transcript import transcript
from eigendspy.participants import TurnContext
from eigendspy.signatures.user import UserTurn
from eigendspy.trajectory import Message


class UserSimulator(dspy.Module):
    """Plays the customer from a task's scenario (tau2's guidelines, role-flipped dialogue).

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.
    """

    def __init__(self, lm: dspy.LM | None = None) -> None:
        super().__init__()
        self.turn = dspy.Predict(UserTurn)
        if lm is not None:
            self.turn.set_lm(lm)

    def forward(self, scenario: str, dialogue: str) -> dspy.Prediction:
        return self.turn(scenario=scenario, dialogue=dialogue)

    async def aforward(self, scenario: str, dialogue: str) -> dspy.Prediction:
        return await self.turn.acall(scenario=scenario, dialogue=dialogue)

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        pred = await self.acall(scenario=ctx.task.user_scenario.render(),
                                dialogue=transcript(messages, viewer="user"))
        return Message.user(str(pred.message or ""))
