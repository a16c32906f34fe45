"""The judge protocol for natural-language assertions (tau2's NL_ASSERTION component).

An NL judge is an LLM opinion, not an execution result: it serves evaluation parity with tau2-bench and
the data engine's second opinion, and never enters an RL reward (`Checker.for_reward` removes
NL_ASSERTION from the basis). The checker depends only on this protocol; the DSPy judge is
`eigendspy.agents.nl_judge.DSPyNLJudge`, a scripted one is `eigendspy.testing.ScriptedJudge`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from eigendspy.core.messages import Message
from eigendspy.scoring.results import NLAssertionCheck


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
