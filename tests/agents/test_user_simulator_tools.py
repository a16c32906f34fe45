"""UserSimulator dual control: with use_tools=True the user calls its device tools natively."""

from __future__ import annotations

import asyncio

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.core.messages import TerminationReason
from eigendspy.core.orchestrator import Orchestrator
from eigendspy.domains import get_domain
from eigendspy.scoring.checker import Checker
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls, scripted_lm


def test_user_checks_its_device_then_talks(tau2_dir):
    domain = get_domain("mock", data_dir=tau2_dir / "mock")

    def user_policy(req):
        dialogue = req.inputs.get("dialogue", "")
        if "check_notifications" in req.inputs.get("tools", "") and "[tool result" not in dialogue:
            return ScriptedToolCalls(calls=[ScriptedToolCall(name="check_notifications", arguments={})],
                                     outputs={"message": ""})
        done = "Done" in dialogue
        return {"message": "thanks ###STOP###" if done else "please complete task_1", "tool_calls": []}

    def assistant_policy(req):
        if "[tool result]" not in req.inputs.get("dialogue", ""):
            call = ScriptedToolCall(name="update_task_status", arguments={"task_id": "task_1", "status": "completed"})
            return ScriptedToolCalls(calls=[call], outputs={"response": ""})
        return {"response": "Done, task_1 is completed.", "tool_calls": []}

    user = UserSimulator(lm=scripted_lm(user_policy), use_tools=True)
    orch = Orchestrator(domain, Assistant(lm=scripted_lm(assistant_policy)), user,
                        checker_factory=Checker.reward_factory(domain))
    ep = asyncio.run(orch.run(domain.task("update_task_1")))
    assert ep.termination_reason is TerminationReason.USER_STOP
    user_calls = [c for m in ep.messages if m.role == "user" for c in (m.tool_calls or [])]
    assert [(c.name, c.requestor) for c in user_calls] == [("check_notifications", "user")]
    assert any(m.role == "tool" and m.requestor == "user" and not m.error for m in ep.messages)
    assert ep.reward == 1.0


def test_default_user_only_talks_and_has_two_predictors():
    user = UserSimulator(lm=scripted_lm(lambda req: {"message": "hi"}))
    assert user(scenario="s", dialogue="").message == "hi"
    assert len(user.named_predictors()) == 2
