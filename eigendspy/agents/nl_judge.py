"""An LLM judge of natural-language assertions as a DSPy module (the `scoring.nl_judge.NLJudge` protocol).

An NL judge is an LLM opinion, not an execution result: it serves evaluation parity with tau2-bench and
the data engine's second opinion, and never enters an RL reward (`Checker.for_reward`).
"""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from eigendspy.agents.transcript import OBSERVER, transcript
from eigendspy.core.messages import Message
from eigendspy.scoring.results import NLAssertionCheck
from eigendspy.signatures.nl_judge import JudgeNLAssertion


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
