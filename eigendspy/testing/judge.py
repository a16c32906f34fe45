"""A deterministic NL-assertion judge (the `NLJudge` protocol) for tests and offline runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from eigendspy.core.messages import Message
from eigendspy.scoring.results import NLAssertionCheck


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
