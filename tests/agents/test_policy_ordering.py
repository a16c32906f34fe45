"""Policy ordering rules: declared per domain from its policy text, checked on the assistant's calls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eigendspy.agents import TrajectoryValidator
from eigendspy.agents.trajectory_prechecks import ordering_findings
from eigendspy.core.domain import Domain
from eigendspy.core.messages import Message, ToolCall
from eigendspy.core.policy_rules import IdentifyBeforeWrite, RequireBefore, blocked_tools, call_outcomes
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.domains.mock import tools as mock_tools
from eigendspy.domains.mock.db import MockDB
from eigendspy.testing.lm import scripted_lm


def call(name: str, call_id: str, ok: bool = True, side: str = "assistant", **args) -> list[Message]:
    """A tool call and its answer (``ok`` false: an error result)."""
    msg = Message(role=side, tool_calls=[ToolCall(id=call_id, name=name, arguments=args, requestor=side)])
    return [msg, Message.tool(call_id, "done" if ok else "Error: not found", side, not ok)]


def dialogue(*calls: list[Message]) -> list[Message]:
    body = [m for c in calls for m in c]
    return [Message.assistant("Hi! How can I help you today?"), Message.user("I want to cancel order #W1."),
            *body, Message.assistant("Done."), Message.user("Thanks. ###STOP###")]


LOOKUP = call("find_user_id_by_email", "c0", email="a@b.com")
CANCEL = call("cancel_pending_order", "c1", order_id="#W1", reason="no longer needed")


@pytest.fixture(autouse=True)
def built_in_domains(monkeypatch):
    """``get_domain(name)`` means the built-in domain here, even where $EIGENDSPY_TAU2_DATA is set."""
    monkeypatch.delenv("EIGENDSPY_TAU2_DATA", raising=False)


@pytest.fixture
def retail():
    return get_domain("retail")


def test_a_write_before_identification_is_rejected(retail):
    [finding] = ordering_findings(dialogue(CANCEL), retail)
    assert finding.kind == "policy_order" and finding.blame == "assistant" and finding.decisive
    assert "cancel_pending_order" in finding.reason and "find_user_id_by_email" in finding.reason
    assert retail.rules[0].policy in finding.reason


def test_identification_then_write_is_accepted(retail):
    assert ordering_findings(dialogue(LOOKUP, CANCEL), retail) == []
    by_zip = call("find_user_id_by_name_zip", "c0", first_name="A", last_name="B", zip="12345")
    assert ordering_findings(dialogue(by_zip, CANCEL), retail) == []


def test_identification_after_the_write_is_too_late(retail):
    later = call("find_user_id_by_email", "c2", email="a@b.com")
    assert len(ordering_findings(dialogue(CANCEL, later), retail)) == 1


def test_a_failed_identification_does_not_count(retail):
    failed = call("find_user_id_by_email", "c0", ok=False, email="x@y.com")
    assert len(ordering_findings(dialogue(failed, CANCEL), retail)) == 1
    retried = call("find_user_id_by_email", "c2", email="a@b.com")
    assert ordering_findings(dialogue(failed, retried, CANCEL), retail) == []


def test_reads_and_failed_writes_before_identification_are_not_writes(retail):
    read = call("get_order_details", "c0", order_id="#W1")
    failed_write = call("cancel_pending_order", "c1", ok=False, order_id="#W1", reason="no longer needed")
    assert ordering_findings(dialogue(read, failed_write), retail) == []


def test_an_unanswered_write_is_not_a_successful_write(retail):
    messages = dialogue(CANCEL[:1])  # the episode ended before the tool answered
    assert call_outcomes(messages)[0].ok is False
    assert ordering_findings(messages, retail) == []


def test_tool_messages_match_their_calls_by_id():
    both = Message.assistant(tool_calls=[ToolCall(id="a", name="find_user_id_by_email"),
                                         ToolCall(id="b", name="cancel_pending_order")])
    answers = [Message.tool("b", "ok", "assistant", False), Message.tool("a", "Error", "assistant", True)]
    outcomes = call_outcomes([both, *answers])
    assert [(o.name, o.ok) for o in outcomes] == [("find_user_id_by_email", False), ("cancel_pending_order", True)]


def test_the_users_own_device_calls_are_not_the_assistants():
    telecom = get_domain("telecom")
    device = call("toggle_airplane_mode", "u0", side="user")
    assert call_outcomes(dialogue(device)) == []
    assert ordering_findings(dialogue(device), telecom) == []
    roaming = call("enable_roaming", "c0", customer_id="C1", line_id="L1")
    assert len(ordering_findings(dialogue(device, roaming), telecom)) == 1
    by_phone = call("get_customer_by_phone", "c1", phone_number="555-0100")
    assert ordering_findings(dialogue(by_phone, roaming), telecom) == []


def test_require_before_guards_only_its_then_tools():
    mock = get_domain("mock")
    [rule] = mock.rules
    assert isinstance(rule, RequireBefore) and rule.then == ["create_task"]
    create = call("create_task", "c0", user_id="user_1", title="Write report")
    update = call("update_task_status", "c1", task_id="task_1", status="completed")
    assert len(ordering_findings(dialogue(create), mock)) == 1
    assert ordering_findings(dialogue(update), mock) == []
    assert ordering_findings(dialogue(call("get_users", "c2"), create), mock) == []


def test_rules_are_validated():
    with pytest.raises(ValidationError):
        IdentifyBeforeWrite(identify_with=["get_users"], then=["create_task"])
    with pytest.raises(ValidationError):
        RequireBefore(first=[], then=["create_task"])
    rule = IdentifyBeforeWrite(identify_with=["get_users"], policy="look the user up first")
    assert rule.first == ["get_users"] and rule.guarded(["create_task", "x"]) == {"create_task", "x"}
    assert IdentifyBeforeWrite.model_validate(rule.model_dump()) == rule
    with pytest.raises(ValueError, match="unknown agent tools.*lookup_user"):
        Domain("m", MockDB, mock_tools.AGENT_TOOLS, "policy", MockDB,
               rules=[IdentifyBeforeWrite(identify_with=["lookup_user"])])


def _normalized(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("name", "first", "then"), [
    ("mock", ["get_users"], ["create_task"]),
    ("retail", ["find_user_id_by_email", "find_user_id_by_name_zip"], None),
    ("airline", ["get_user_details"], None),
    ("telecom", ["get_customer_by_phone", "get_customer_by_id", "get_customer_by_name"], None),
])
def test_built_in_rules_quote_their_own_policy(name, first, then):
    domain = get_domain(name)
    [rule] = domain.rules
    assert (rule.first, rule.then) == (first, then)
    assert rule.policy and _normalized(rule.policy) in _normalized(domain.policy)


@pytest.mark.parametrize(("name", "rules"), [("mock", 0), ("retail", 0), ("airline", 0), ("telecom", 0)])
def test_tau2_rules_quote_tau2_policy(tau2_dir, name, rules):
    domain = get_domain(name, data_dir=tau2_dir / name)
    assert len(domain.rules) == rules
    for rule in domain.rules:
        assert _normalized(rule.policy) in _normalized(domain.policy)


@pytest.mark.parametrize("use_judge", [False, True])
def test_the_validator_rejects_an_ordering_violation_before_any_judge(retail, use_judge):
    lm = scripted_lm(lambda req: {"passed": True, "blame": "none", "reasons": []})
    task = Task.model_validate({"id": "t0", "user_scenario": {"instructions": "Cancel order #W1."}})
    pred = TrajectoryValidator(lm=lm, use_judge=use_judge)(domain=retail, task=task, messages=dialogue(CANCEL))
    assert not pred.verdict.passed and pred.verdict.blame == "assistant" and not pred.judged
    assert "without first making identify the user" in pred.verdict.reasons[0]
    assert lm.call_count == 0
    ok = TrajectoryValidator(lm=lm, use_judge=False)(domain=retail, task=task, messages=dialogue(LOOKUP, CANCEL))
    assert ok.verdict.passed


def test_blocked_tools_are_the_guarded_ones_until_a_first_call_succeeded():
    rules = [RequireBefore(first=["get_users"], then=["create_task"]),
             IdentifyBeforeWrite(identify_with=["find_user_id_by_email"])]
    writes = ["create_task", "cancel_pending_order"]
    assert blocked_tools(rules, dialogue(), writes) == {"create_task", "cancel_pending_order"}
    assert blocked_tools(rules, dialogue(call("get_users", "g0", ok=False)), writes) == {
        "create_task", "cancel_pending_order"}  # a failed lookup unlocks nothing
    assert blocked_tools(rules[:1], dialogue(call("get_users", "g0")), writes) == set()
    assert blocked_tools(rules, dialogue(call("get_users", "g0")), writes) == set(writes)  # not identified yet
    assert blocked_tools(rules, dialogue(call("get_users", "g0"), LOOKUP), writes) == set()
    assert blocked_tools([], dialogue(), writes) == set()
