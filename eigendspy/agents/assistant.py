"""The tool-using assistant as a DSPy module and as an orchestrator participant."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import dspy

from eigendspy.agents.transcript import transcript
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.participants import TurnContext
from eigendspy.core.policy_rules import blocked_tools
from eigendspy.lm.bounded_state import role_turn_state
from eigendspy.lm.cached_adapter import shared_chat_adapter
from eigendspy.lm.small_model import (
    Values,
    call_arguments,
    collect_values,
    completed_writes,
    dialogue_grounding,
    tool_call_union,
)
from eigendspy.signatures.assistant import AssistantTurn


class ExecutedByEnvironment:
    """The function behind every `schema_tools` tool: the orchestrator executes calls, DSPy never does.

    A module-level class, not a closure, because the tools travel as a predictor input and so end up
    in optimizer traces and demos, which BootstrapFewShot hashes with ``pickle`` and optimizers
    deep-copy; a local function cannot be pickled. All instances are equal, so two tool lists built
    from the same schemas compare (and hash) the same.
    """

    __name__ = "executed_by_environment"

    def __call__(self, **kwargs: Any) -> str:
        raise RuntimeError("tools are executed by the environment, not by the DSPy module")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExecutedByEnvironment)

    def __hash__(self) -> int:
        return hash(ExecutedByEnvironment)


def schema_tools(schemas: Sequence[dict[str, Any]]) -> list[dspy.Tool]:
    """``dspy.Tool`` descriptions built from OpenAI schemas (the orchestrator executes the calls).

    Picklable and deep-copyable (`ExecutedByEnvironment`), so optimizers can trace, copy and hash them.
    """
    out = []
    for schema in schemas:
        fn = schema["function"]
        out.append(dspy.Tool(ExecutedByEnvironment(), name=fn["name"], desc=fn.get("description", ""),
                             args=fn.get("parameters", {}).get("properties", {})))
    return out


class Assistant(dspy.Module):
    """Customer-service agent: policy + dialogue + tools -> tool calls or a message.

    Usable alone in any DSPy program (``forward`` returns a ``dspy.Prediction``) and as an
    orchestrator participant (``respond``). Tool schemas travel as an input field, never in the
    instruction text, so prompt optimizers cannot delete them.

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.
        small_model: Small-model mode (`eigendspy.lm.small_model`), for `respond`: each turn's
            ``tool_calls`` output is typed for that turn — one call or null, of a real tool, with its
            required arguments, ids only from those the user said or the tools returned so far (a
            tool whose id is not grounded yet is not offered), enum arguments narrowed to the values
            the user said, free text only as the user "quoted" it, no write tool that already
            succeeded in this dialogue, no tool a domain ordering rule forbids yet (`create_task` before a
            successful `get_users` on mock) — and at most one call per user message, after which the turn
            must be a message, so a small model cannot call tools forever (docs/embedded_model.md).

    Example:
        ```python
        agent = Assistant(lm=dspy.LM("openai/gpt-4o-mini"))
        pred = agent(policy=domain.policy, dialogue="user: hi", tools=schema_tools(domain.tool_schemas()))
        ```
    """

    def __init__(self, lm: dspy.LM | None = None, small_model: bool = False) -> None:
        super().__init__()
        self.small_model = small_model
        self.turn = dspy.Predict(AssistantTurn)
        if lm is not None:
            self.turn.set_lm(lm)
        self._tools: dict[int, list[dspy.Tool]] = {}
        self._known: dict[int, Values] = {}

    def forward(self, policy: str, dialogue: str, tools: list[dspy.Tool]) -> dspy.Prediction:
        return self.turn(policy=policy, dialogue=dialogue, tools=tools)

    async def aforward(self, policy: str, dialogue: str, tools: list[dspy.Tool]) -> dspy.Prediction:
        return await self.turn.acall(policy=policy, dialogue=dialogue, tools=tools)

    async def respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        # A turn retains no DSPy trace/history (unless an optimizer traces), formats its prompt with the shared
        # cached adapter where the caller set none (byte-identical to DSPy's ChatAdapter) and skips DSPy's input
        # type check of values it built itself: one settings context (`role_turn_state`).
        with role_turn_state(shared_chat_adapter()):
            return await self._respond(messages, ctx)

    async def _respond(self, messages: Sequence[Message], ctx: TurnContext) -> Message:
        key = id(ctx.domain)
        if key not in self._tools:
            self._tools[key] = schema_tools(ctx.tools)
        inputs = dict(policy=ctx.domain.policy, dialogue=transcript(messages), tools=self._tools[key])
        if self.small_model:
            pred = await self.turn.acall(signature=self._small_signature(messages, ctx), **inputs)
            return _typed_calls_message(pred, ctx.step)
        pred = await self.acall(**inputs)
        return prediction_to_message(pred, "assistant", text_field="response")

    def _small_signature(self, messages: Sequence[Message], ctx: TurnContext) -> type[dspy.Signature]:
        """``self.turn``'s signature with ``tool_calls`` typed for this turn (see the class doc): one
        call or null; null only when nothing is callable. It is passed to ``self.turn`` itself (never
        a copy: optimizers' traces must see the call), which keeps its instructions, demos and LM."""
        key = id(ctx.domain)
        if key not in self._known:
            self._known[key] = collect_values(ctx.domain.base_db().model).values
        union = None
        if not _acted_since_user(messages):
            names = {t["function"]["name"] for t in ctx.tools}
            specs = [spec for spec in ctx.domain.toolkit if spec.name in names]
            done = completed_writes(messages, specs)
            # a call the domain's ordering rules forbid right now is not offered: the lookup they ask for comes first
            done |= blocked_tools(ctx.domain.rules, messages, [s.name for s in specs if s.mutates_state])
            grounding = dialogue_grounding(self._known[key], messages)
            union = tool_call_union([s for s in specs if s.name not in done], grounding)
        calls = Optional[union] if union is not None else type(None)  # noqa: UP045 - built at run time
        return self.turn.signature.with_updated_fields("tool_calls", type_=calls)


def prediction_to_message(pred: dspy.Prediction, role: str, *, text_field: str) -> Message:
    """Tool calls win over text (tau2's contract: never both in one message)."""
    calls = getattr(pred, "tool_calls", None)
    if calls is not None and getattr(calls, "tool_calls", None):
        return Message(role=role, tool_calls=[
            ToolCall(id=c.id or "", name=c.name, arguments=c.args if isinstance(c.args, dict) else {})
            for c in calls.tool_calls
        ])
    return Message(role=role, content=str(getattr(pred, text_field, "") or ""))


def _acted_since_user(messages: Sequence[Message]) -> bool:
    """Whether the assistant already called a tool after the user's last message."""
    for m in reversed(messages):
        if m.role == "user":
            return False
        if m.role == "assistant" and m.tool_calls:
            return True
    return False


def _typed_calls_message(pred: dspy.Prediction, step: int) -> Message:
    """The message of a small-model turn: its typed call (id ``small_<step>``), else its text."""
    call = getattr(pred, "tool_calls", None)
    if call is not None and hasattr(call, "name"):
        return Message(role="assistant", tool_calls=[
            ToolCall(id=f"small_{step}", name=call.name, arguments=call_arguments(call))])
    return Message(role="assistant", content=str(getattr(pred, "response", "") or ""))
