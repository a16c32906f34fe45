"""DSPy role modules drive the orchestrator through a real adapter path (scripted engine)."""

from __future__ import annotations

import asyncio

import dspy

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.core.messages import TerminationReason
from eigendspy.core.orchestrator import Orchestrator
from eigendspy.domains import get_domain
from eigendspy.scoring.checker import Checker
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls, scripted_lm


def test_dspy_assistant_and_user_complete_a_task(tau2_dir):
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    seen_tools: list[list[str]] = []

    def assistant_policy(req):
        seen_tools.append(req.tool_names or [req.inputs.get("tools", "")])
        if "[tool result]" not in req.inputs.get("dialogue", ""):
            call = ScriptedToolCall(name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})
            return ScriptedToolCalls(calls=[call], outputs={"response": ""})
        return {"response": "Done, task_1 is completed.", "tool_calls": []}

    def user_policy(req):
        done = "Done" in req.inputs.get("dialogue", "")
        return {"message": "thanks ###STOP###" if done else "please complete task_1"}

    orch = Orchestrator(domain, Assistant(lm=scripted_lm(assistant_policy)), UserSimulator(lm=scripted_lm(user_policy)),
                        checker_factory=Checker.reward_factory(domain))
    ep = asyncio.run(orch.run(domain.task("update_task_1")))
    assert ep.termination_reason is TerminationReason.USER_STOP
    assert ep.reward == 1.0
    assert "update_task_status" in " ".join(seen_tools[0])  # tools travel as an input field


def test_assistant_is_a_plain_dspy_module():
    agent = Assistant(lm=scripted_lm(lambda req: {"response": "hello", "tool_calls": []}))
    pred = agent(policy="be nice", dialogue="user: hi", tools=[])
    assert isinstance(pred, dspy.Prediction) and pred.response == "hello"
    assert len(agent.named_predictors()) == 1

