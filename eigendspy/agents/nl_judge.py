"""Pluggable judges for natural-language assertions (tau2's NL_ASSERTION component).

An NL judge is an LLM opinion, not an execution result: it is used for evaluation parity
with tau2-bench and for the data engine's second opinion, and it never enters an RL reward
(`Checker(exclude_nl=True)` removes NL_ASSERTION from the basis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import dspy

from eigendspy.core.messages import Message
from eigendspy.scoring.results import NLAssertionCheck


@runtime_checkable
class NLJudge(Protocol):
    """Decides, for each assertion, whether the dialogue satisfies it.

    Does not own: retries, caching or cost accounting (the LM's business), nor the reward
    arithmetic (the checker's).
    """

    def __call__(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]: ...


class ScriptedJudge:
    """A deterministic judge for tests and offline runs: a fixed verdict or a Python rule."""

    def __init__(self, verdict: bool | Callable[[Sequence[Message], str], bool] = True) -> None:
        self.verdict = verdict

    def __call__(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]:
        out = []
        for text in assertions:
            met = self.verdict(messages, text) if callable(self.verdict) else bool(self.verdict)
            out.append(NLAssertionCheck(nl_assertion=text, met=met, justification="scripted judge"))
        return out


class JudgeNLAssertion(dspy.Signature):
    """Judge whether a customer-service dialogue satisfies one expected outcome.

    Read the whole conversation between the user and the agent, including tool calls and tool
    results. Answer met=True only if the dialogue clearly shows the outcome happened.
    """

    conversation: str = dspy.InputField(desc="The dialogue, one 'role: text' line per message")
    assertion: str = dspy.InputField(desc="The expected outcome to check")
    justification: str = dspy.OutputField(desc="One or two sentences citing the relevant messages")
    met: bool = dspy.OutputField(desc="Whether the outcome is satisfied")


def render_conversation(messages: Sequence[Message]) -> str:
    lines = []
    for m in messages:
        if m.tool_calls:
            calls = "; ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            lines.append(f"{m.role} [tool calls]: {calls}")
        else:
            lines.append(f"{m.role}: {m.content or ''}")
    return "\n".join(lines)


class DSPyNLJudge(dspy.Module):
    """An LLM judge as a DSPy module (optimizable like every other role).

    Args:
        lm: The LM to judge with; ``None`` uses whatever LM the caller's context sets.
    """

    def __init__(self, lm: dspy.LM | None = None) -> None:
        super().__init__()
        self.judge = dspy.ChainOfThought(JudgeNLAssertion)
        if lm is not None:
            self.judge.set_lm(lm)

    def forward(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]:
        conversation = render_conversation(messages)
        out = []
        for text in assertions:
            try:
                pred = self.judge(conversation=conversation, assertion=text)
                out.append(NLAssertionCheck(nl_assertion=text, met=bool(pred.met), justification=pred.justification))
            except Exception as exc:  # noqa: BLE001 - a judge failure is a failed assertion with a reason
                out.append(NLAssertionCheck(nl_assertion=text, met=False, justification=f"judge error: {exc}"))
        return out

    def __call__(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]:  # type: ignore[override]
        return self.forward(messages, assertions)
