"""The tool-using assistant as a DSPy module and as an orchestrator participant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dspy

from eigendspy.agents.transcript import transcript
from eigendspy.participants import TurnContext
from eigendspy.signatures.assistant import AssistantTurn
from eigendspy.trajectory import Message, ToolCall


def schema_tools(schemas: Sequence[dict[str, Any]]) -> list[dspy.Tool]:
    """``dspy.Tool`` descriptions built from OpenAI schemas (the orchestrator executes the calls)."""

    def never_called(**kwargs: Any) -> str:
        raise RuntimeError("tools are executed by the environment, not by the DSPy module")

    out = []
    for schema in schemas:
        fn = schema["function"]
        out.append(dspy.Tool(never_called, name=fn["name"], desc=fn.get("description", ""),
                             args=fn.get("parameters", {}).get("properties", {})))
    return out


class Assistant(dspy.Module):
    """Customer-service agent: policy + dialogue + tools -> tool calls or a message.

    Usable alone in any DSPy program (``forward`` returns a ``dspy.Prediction``) and as an
    orchestrator participant (``respond``). Tool schemas travel as an input field, never in the
    instruction text, so prompt optimizers cannot delete them.

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.

    Example:
        ```python
        agent = Assistant(lm=dspy.LM("openai/gpt-4o-mini"))
        pred = agent(policy=domain.policy, dialogue="user: hi", tools=schema_tools(domain.tool_schemas()))
        ```
    """

    def __init__(self, lm: dspy.LM | None = None) -> None:
        super().__init__()
        self.turn = dspy.Predict(AssistantTurn)
        if lm is not None:
            self.turn.set_lm(lm)
        self._tools: dict[int, list[dspy.Tool]] = {}

    def forward(self, policy: str, dialogue: str, tools: list[dspy.Tool]) -> dspy.Prediction:
        return self.turn(policy=policy, dialogue=dialogue, tools=tools)

    async def aforward(self, policy: str, dialogue: str, tools: list[dspy.Tool]) -> dspy.Prediction:
        return await self.turn.acall(policy=policy, dialogue=dialogue, tools=tools)

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        key = id(ctx.domain)
        if key not in self._tools:
            self._tools[key] = schema_tools(ctx.tools)
        pred = await self.acall(policy=ctx.domain.policy, dialogue=transcript(messages), tools=self._tools[key])
        return prediction_to_message(pred, "assistant", text_field="response")


def prediction_to_message(pred: dspy.Prediction, role: str, *, text_field: str) -> Message:
    """Tool calls win over text (tau2's contract: never both in one message)."""
    calls = getattr(pred, "tool_calls", None)
    if calls is not None and getattr(calls, "tool_calls", None):
        return Message(role=role, tool_calls=[
            ToolCall(id=c.id or "", name=c.name, arguments=c.args if isinstance(c.args, dict) else {})
            for c in calls.tool_calls
        ])
    return Message(role=role, content=str(getattr(pred, text_field, "") or ""))
