"""NL judges: the checker's protocol (`check`), and the DSPy judge through DSPy's own ``__call__``."""

from __future__ import annotations

import dspy
from dspy.utils.callback import BaseCallback

from eigendspy.agents.nl_judge import DSPyNLJudge
from eigendspy.core.messages import Message, ToolCall
from eigendspy.scoring.nl_judge import NLJudge
from eigendspy.scoring.results import NLAssertionCheck
from eigendspy.signatures import JudgeNLAssertion
from eigendspy.testing.judge import ScriptedJudge
from eigendspy.testing.lm import scripted_lm

DIALOGUE = [
    Message.user("Please complete task_1."),
    Message.assistant(tool_calls=[ToolCall(id="c1", name="update_task_status",
                                           arguments={"task_id": "task_1", "status": "completed"})]),
    Message.tool("c1", "ok", "assistant", False),
    Message.assistant("Done: task_1 is completed."),
]
MET = {"reasoning": "read it", "justification": "the agent said so", "met": True}


class ModuleStarts(BaseCallback):
    def __init__(self) -> None:
        self.instances: list[object] = []

    def on_module_start(self, call_id: str, instance: object, inputs: dict[str, object]) -> None:
        self.instances.append(instance)


def test_both_judges_follow_the_checkers_protocol():
    judge = DSPyNLJudge(lm=scripted_lm(lambda req: MET))
    assert isinstance(judge, NLJudge) and isinstance(ScriptedJudge(), NLJudge)
    assert ScriptedJudge(lambda msgs, text: "done" in text).check(DIALOGUE, ["done", "refunded"]) == [
        NLAssertionCheck(nl_assertion="done", met=True, justification="scripted judge"),
        NLAssertionCheck(nl_assertion="refunded", met=False, justification="scripted judge"),
    ]


def test_the_dspy_judge_reads_the_observer_view_once_per_assertion():
    seen = []
    judge = DSPyNLJudge(lm=scripted_lm(lambda req: seen.append(req.inputs) or MET))
    checks = judge.check(DIALOGUE, ["task_1 completed", "user informed"])
    assert [(c.nl_assertion, c.met, c.justification) for c in checks] == [
        ("task_1 completed", True, "the agent said so"), ("user informed", True, "the agent said so")]
    assert [s["assertion"] for s in seen] == ["task_1 completed", "user informed"]
    conversation = seen[0]["conversation"]
    assert "assistant [tool call] update_task_status(" in conversation and "[assistant tool result] ok" in conversation


def test_the_dspy_judge_keeps_dspys_call_callbacks_and_usage():
    judge = DSPyNLJudge(lm=scripted_lm(lambda req: MET))
    starts = ModuleStarts()
    with dspy.context(callbacks=[starts], track_usage=True):
        checks = judge.check(DIALOGUE, ["task_1 completed"])
        pred = judge(messages=DIALOGUE, assertions=["task_1 completed"])
    assert judge in starts.instances  # `check` goes through DSPy's __call__, not around it
    assert checks == pred.checks and pred.get_lm_usage()  # usage tracked on the module's prediction
    assert [p.signature.instructions for _, p in judge.named_predictors()] == [JudgeNLAssertion.instructions]


def test_a_failed_judge_call_is_a_failed_assertion_with_the_reason():
    def broken(req):
        raise RuntimeError("LM down")

    (check,) = DSPyNLJudge(lm=scripted_lm(broken)).check(DIALOGUE, ["task_1 completed"])
    assert not check.met and "judge error" in check.justification and "LM down" in check.justification
