"""Pluggable judges for natural-language assertions (tau2's NL_ASSERTION component).

An NL judge is an LLM opinion, not an execution result: it is used for evaluation parity
with tau2-bench and for the data engine's second opinion, and it never enters an RL reward
(`Checker(exclude_nl=True)` removes NL_ASSERTION from the basis).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import dspy

from eigendspy.agents.transcript import OBSERVER, transcript
from eigendspy.core.messages import Message
from eigendspy.scoring.results import NLAssertionCheck
from eigendspy.signatures.nl_judge import JudgeNLAssertion


@runtime_checkable
class NLJudge(Protocol):
    """Decides, for each assertion, whether the dialogue satisfies it.

    A named method rather than ``__call__``, so a judge that is a `dspy.Module` keeps DSPy's own
    ``__call__`` (callbacks, usage tracking, traces) and still returns plain checks to the checker.

    Does not own: retries, caching or cost accounting (the LM's business), nor the reward
    arithmetic (the checker's).
    """

    def check(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]:
        """One check per assertion, in order."""
        ...


class ScriptedJudge:
    """A deterministic judge for tests and offline runs: a fixed verdict or a Python rule.

    Args:
        verdict: The verdict for every assertion, or ``rule(messages, assertion) -> bool``.
    """

    def __init__(self, verdict: bool | Callable[[Sequence[Message], str], bool] = True) -> None:
        self.verdict = verdict

    def check(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]:
        out = []
        for text in assertions:
            met = self.verdict(messages, text) if callable(self.verdict) else bool(self.verdict)
            out.append(NLAssertionCheck(nl_assertion=text, met=met, justification="scripted judge"))
        return out


class DSPyNLJudge(dspy.Module):
    """An LLM judge as a DSPy module (optimizable like every other role).

    It reads the dialogue in the observer's view (`transcript` with ``viewer="observer"``: both
    sides' tool calls and results) and asks one `JudgeNLAssertion` per assertion.

    Args:
        lm: The LM to judge with; ``None`` uses whatever LM the caller's context sets.

    Example:
        ```python
        judge = DSPyNLJudge(lm=dspy.LM("openai/gpt-4o"))
        judge(messages=episode.messages, assertions=["The agent confirmed the refund"]).checks
        Checker(domain, task, nl_judge=judge).score(episode.messages)  # through `check`
        ```
    """

    def __init__(self, lm: dspy.LM | None = None) -> None:
        super().__init__()
        self.judge = dspy.ChainOfThought(JudgeNLAssertion)
        if lm is not None:
            self.judge.set_lm(lm)

    def forward(self, messages: Sequence[Message], assertions: Sequence[str]) -> dspy.Prediction:
        """Returns ``Prediction(checks: list[NLAssertionCheck])``, one check per assertion.

        A failed LM call or an unparsable answer is a failed assertion whose justification says
        why, so one bad answer does not abort the scoring of a whole dialogue.
        """
        conversation = transcript(messages, viewer=OBSERVER)
        checks = []
        for text in assertions:
            try:
                pred = self.judge(conversation=conversation, assertion=text)
                checks.append(NLAssertionCheck(nl_assertion=text, met=bool(pred.met),
                                               justification=pred.justification))
            except Exception as exc:
                checks.append(NLAssertionCheck(nl_assertion=text, met=False, justification=f"judge error: {exc}"))
        return dspy.Prediction(checks=checks)

    def check(self, messages: Sequence[Message], assertions: Sequence[str]) -> list[NLAssertionCheck]:
        """The `NLJudge` protocol, through DSPy's ``__call__``."""
        return self(messages=messages, assertions=assertions).checks
