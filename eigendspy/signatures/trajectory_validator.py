"""Signature of the trajectory judge: was the dialogue right, and if not, whose fault was it?"""

from __future__ import annotations

import dspy

from eigendspy.core.records import Blame


class JudgeTrajectory(dspy.Signature):
    """You review a dialogue between a simulated customer and a customer-service agent.

    passed: the agent followed the policy, did what the scenario's request needs and nothing
    else, and told the user what it should. If it did not pass, blame exactly one party:
    "assistant" (a policy violation, a wrong or missing tool call, wrong information given),
    "user" (the simulated user left the scenario, invented facts, revealed its instructions, or
    stopped early), or "task" (the scenario or its reference solution is wrong or impossible).
    Use "none" only when it passed. The checker's feedback is the result of executing the
    dialogue's tool calls against the reference solution; weigh it, but explain disagreements.
    """

    policy: str = dspy.InputField(desc="The domain policy the agent must follow")
    scenario: str = dspy.InputField(desc="The simulated user's scenario")
    rubric: str = dspy.InputField(desc="What a correct agent does for this kind of task, and failures to watch for")
    transcript: str = dspy.InputField(desc="The dialogue, with both sides' tool calls and results")
    checker_feedback: str = dspy.InputField(desc="The executable checker's result and failure reasons")
    passed: bool = dspy.OutputField(desc="Whether the dialogue is correct")
    blame: Blame = dspy.OutputField(desc="none, task, assistant or user")
    reasons: list[str] = dspy.OutputField(desc="Short reasons for the decision")
