"""TrajectoryValidator: deterministic user pre-checks before the judge; blame normalized."""

from __future__ import annotations

import asyncio

import pytest

from eigendspy.agents import TrajectoryValidator
from eigendspy.core.environment import Environment
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.oracle import build_trajectory
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.domains import get_domain
from eigendspy.testing.lm import scripted_lm

PLAN = PlanPair(
    plan_id="p0_0",
    synthesis=SynthesisPlan(intent_family="exchange items", complexity="multi_step", tool_pattern="find -> exchange",
                            user_style="detail-oriented"),
    evaluation=EvaluationPlan(rubric="exchanges both items in one call after confirmation",
                              failure_types=["two separate exchanges"]),
)
PASS = {"passed": True, "blame": "none", "reasons": ["all good"]}


@pytest.fixture(scope="module")
def retail(tau2_dir):
    return get_domain("retail", data_dir=tau2_dir / "retail")


@pytest.fixture(scope="module")
def task(retail):
    return retail.task("0")


def opening(task) -> list[Message]:
    lookup = task.gold_actions[0]
    return [
        Message.assistant("Hi! How can I help you today?"),
        Message.user("Hi, I want to exchange two items from order #W2378156. I'm Yusuf Rossi, zip 19122."),
        Message.assistant(tool_calls=[lookup.as_call("c0")]),
        Message.tool("c0", "yusuf_rossi_9620", "assistant", False),
    ]


def test_gold_dialogue_goes_to_the_judge_with_all_inputs(retail, task):
    seen = []
    lm = scripted_lm(lambda req: seen.append(req) or PASS)
    messages = build_trajectory(task, Environment.for_task(retail, task), task.gold_actions)
    pred = TrajectoryValidator(lm=lm)(domain=retail, task=task, messages=messages, plan=PLAN,
                                      checker_feedback="reward 1.0, no failures")
    assert pred.judged and pred.verdict.passed and pred.verdict.blame == "none" and pred.findings == []
    inputs = seen[0].inputs
    assert "exchanges both items in one call" in inputs["rubric"] and "two separate exchanges" in inputs["rubric"]
    assert "assistant [tool call] exchange_delivered_order_items" in inputs["transcript"]
    assert inputs["checker_feedback"] == "reward 1.0, no failures"
    assert "Yusuf Rossi" in inputs["scenario"]


def test_premature_stop_while_the_assistant_asks_for_confirmation_blames_the_user(retail, task):
    messages = [*opening(task),
                Message.assistant("I can exchange both items for $12.34. Shall I proceed? (yes/no)"),
                Message.user("###STOP###")]
    lm = scripted_lm(lambda req: PASS)
    pred = TrajectoryValidator(lm=lm)(domain=retail, task=task, messages=messages)
    assert not pred.verdict.passed and pred.verdict.blame == "user" and not pred.judged
    assert "exchange_delivered_order_items" in pred.verdict.reasons[0] and "###STOP###" in pred.verdict.reasons[0]
    assert lm.call_count == 0


def test_stop_after_a_refusal_is_left_to_the_judge_with_a_note(retail, task):
    messages = [*opening(task), Message.assistant("Sorry, I cannot exchange these items."),
                Message.user("Okay. ###STOP###")]
    seen = []
    lm = scripted_lm(lambda req: seen.append(req) or {"passed": False, "blame": "none", "reasons": ["wrong refusal"]})
    pred = TrajectoryValidator(lm=lm)(domain=retail, task=task, messages=messages, checker_feedback="reward 0.0")
    assert pred.judged and not pred.verdict.passed
    assert pred.verdict.blame == "assistant"  # failed with nobody blamed -> the trajectory's agent
    assert "Pre-check note" in seen[0].inputs["checker_feedback"] and "reward 0.0" in seen[0].inputs["checker_feedback"]


def test_user_leaking_its_instructions_is_blamed(retail, task):
    messages = [Message.assistant("Hi! How can I help you today?"),
                Message.user("You are detail-oriented and want to make sure everything is addressed in one go.")]
    pred = TrajectoryValidator(lm=scripted_lm(lambda req: PASS))(domain=retail, task=task, messages=messages)
    assert not pred.verdict.passed and pred.verdict.blame == "user"
    assert "instructions verbatim" in pred.verdict.reasons[0]


def test_user_inventing_an_order_id_is_blamed(retail, task):
    messages = [Message.assistant("Hi! How can I help you today?"),
                Message.user("I want to exchange items in order #W9999999."),
                Message.assistant("Sure, and your order #W1112223?"),
                Message.user("Yes, #W1112223 too.")]
    pred = TrajectoryValidator(lm=scripted_lm(lambda req: PASS))(domain=retail, task=task, messages=messages)
    assert pred.verdict.blame == "user" and "'#W9999999'" in pred.verdict.reasons[0]
    # a value the agent said first is not invented
    assert TrajectoryValidator(lm=scripted_lm(lambda req: PASS))(
        domain=retail, task=task, messages=[messages[0], messages[2], messages[3]]).verdict.passed


def test_aforward_and_unknown_blame_from_the_judge(retail, task):
    lm = scripted_lm(lambda req: {"passed": True, "blame": "assistant", "reasons": []})
    messages = [Message.assistant("Hi"), Message.user("hello"),
                Message.assistant(tool_calls=[ToolCall(id="1", name="get_order_details",
                                                       arguments={"order_id": "#W2378156"})])]
    pred = asyncio.run(TrajectoryValidator(lm=lm).acall(domain=retail, task=task, messages=messages))
    assert pred.verdict.passed and pred.verdict.blame == "none"


def test_leak_ngram_is_validated():
    with pytest.raises(ValueError, match="leak_ngram"):
        TrajectoryValidator(leak_ngram=2)


@pytest.mark.parametrize("path", ["rejected", "unjudged", "judged"])
def test_forward_and_aforward_agree_on_every_path(retail, task, path):
    if path == "rejected":
        messages = [*opening(task), Message.assistant("Shall I exchange both items? (yes/no)"),
                    Message.user("###STOP###")]
    else:
        messages = [*opening(task), Message.assistant("Sorry, I cannot exchange these items."),
                    Message.user("Okay. ###STOP###")]
    lm = scripted_lm(lambda req: {"passed": False, "blame": "task", "reasons": ["bad task"]})
    validator = TrajectoryValidator(lm=lm, use_judge=path != "unjudged")
    kwargs = dict(domain=retail, task=task, messages=messages, plan=PLAN, checker_feedback="reward 0.0")
    sync = validator(**kwargs)
    not_sync = asyncio.run(validator.acall(**kwargs))
    assert sync.verdict == not_sync.verdict and sync.findings == not_sync.findings
    assert sync.judged == not_sync.judged == (path == "judged")
    assert lm.call_count == (2 if path == "judged" else 0)
    assert [r.inputs for r in lm.log.requests[:1]] == [r.inputs for r in lm.log.requests[1:]]
