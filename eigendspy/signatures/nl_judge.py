"""Signature of the NL-assertion judge: tau2's NL_ASSERTION component, one assertion per call."""

from __future__ import annotations

import dspy


class JudgeNLAssertion(dspy.Signature):
    """Judge whether a customer-service dialogue satisfies one expected outcome.

    Read the whole conversation between the user and the agent, including tool calls and tool
    results. Answer met=True only if the dialogue clearly shows the outcome happened.
    """

    conversation: str = dspy.InputField(
        desc="The dialogue as an observer sees it: one 'role: text' line per message, one line per tool "
             "call, tool results labelled with the side that asked"
    )
    assertion: str = dspy.InputField(desc="The expected outcome to check")
    justification: str = dspy.OutputField(desc="One or two sentences citing the relevant messages")
    met: bool = dspy.OutputField(desc="Whether the outcome is satisfied")
