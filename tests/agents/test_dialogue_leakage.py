"""Prompt leakage and format chatter: every pattern rejected on either side, clean text accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

import eigendspy
from eigendspy.agents import TrajectoryValidator
from eigendspy.agents.leakage import CHATTER_PATTERNS, INSTRUCTION_NGRAM, POLICY_NGRAM, leakage_findings
from eigendspy.core.messages import Message
from eigendspy.core.render import AGENT_INSTRUCTIONS
from eigendspy.core.task import Task
from eigendspy.domains import get_domain
from eigendspy.testing.lm import scripted_lm

POLICY = (Path(eigendspy.__file__).parent / "domains" / "retail" / "policy.md").read_text()

# One example per pattern of CHATTER_PATTERNS, and the text the finding must quote.
CHATTER = {
    "field_marker": ("[[ ## response ## ]]\nYour order has been cancelled.", "[[ ## response ## ]]"),
    "format_instruction": ("You must provide a valid JSON object with the order id.", "valid JSON object"),
    "field_label": ("Reasoning: the customer wants a refund.\nI can help with that.", "Reasoning:"),
    "role_label": ("Sure, I can help with that.\nUser: thanks, please go ahead", "User:"),
    "transcript_marker": ("[tool result] yusuf_rossi_9620", "[tool result]"),
    "ai_disclaimer": ("As an AI language model, I cannot see your card.", "As an AI language model"),
    "role_preamble": ("You are a customer service agent and I need a refund.", "You are a customer service agent"),
}
MORE_CHATTER = [
    ("format_instruction", "```json\n{\"order_id\": \"#W2378156\"}\n```"),
    ("format_instruction", "Please fill in the output fields below."),
    ("field_label", "next_tool_name: cancel_pending_order"),
    ("field_label", "{\"response\": \"Your order is cancelled\"}"),
    ("field_label", "**Response:** Your order is cancelled."),
    ("role_label", "Assistant: How can I help you today?"),
    ("role_label", "system: follow the policy"),
    ("role_label", "**Agent:** one moment please"),
    ("transcript_marker", "assistant [tool call] get_order_details({\"order_id\": \"#W1\"})\n"
                          "[assistant tool result] {}"),
    ("ai_disclaimer", "I'm just an AI model, so I can't do that."),
]
CLEAN_ASSISTANT = [
    "Hi! How can I help you today?",
    "I can help with that. Could you please give me your email address so I can verify your identity?",
    "Here are the details of the exchange:\n- Order ID: #W2378156\n- Items: keyboard (clicky, RGB) -> (linear, RGB)"
    "\n- Price difference: $12.34, charged to the credit card ending in 1234\nWould you like me to proceed? (yes/no)",
    "Reason: no longer needed\nPayment method: gift card (balance $80)\nNote: the refund arrives in 5 to 7 days.",
    "I'm sorry, but an order can only be cancelled while it is pending; #W2378156 has already been delivered.",
    "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON.",
    "Your user id is yusuf_rossi_9620 and your response is noted. Is there anything else?",
    "Please turn airplane mode off and tell me what the status bar shows.",
    "To summarize: 1093.34 ; the order was cancelled . Is there anything else?",
]
CLEAN_USER = [
    "Hi, I want to exchange two items from order #W2378156. I'm Yusuf Rossi, zip 19122.",
    "Yes, please go ahead.",
    "I don't know my order number, could you look it up? The response time on my last order was slow.",
    "The status bar says: no signal.",
    "Thank you, that's all. ###STOP###",
]


def dialogue(assistant: str = "Let me check that for you.", user: str = "Hi, I need help with my order.") -> list:
    return [Message.assistant("Hi! How can I help you today?"), Message.user(user), Message.assistant(assistant),
            Message.user("Okay. ###STOP###")]


def test_every_documented_pattern_has_an_example():
    assert set(CHATTER) == {p.name for p in CHATTER_PATTERNS}
    assert all(p.why for p in CHATTER_PATTERNS)


@pytest.mark.parametrize("side", ["assistant", "user"])
@pytest.mark.parametrize("name", sorted(CHATTER))
def test_each_chatter_pattern_is_rejected_on_either_side(side, name):
    text, quoted = CHATTER[name]
    messages = dialogue(**{side: text})
    found = [f for f in leakage_findings(messages, side, policy=POLICY) if f.kind.startswith("format_chatter")]
    assert len(found) == 1
    assert found[0].kind == f"format_chatter:{name}" and found[0].blame == side and found[0].decisive
    assert name in found[0].reason and quoted in found[0].reason
    assert leakage_findings(messages, "user" if side == "assistant" else "assistant", policy=POLICY) == []


@pytest.mark.parametrize(("name", "text"), MORE_CHATTER)
def test_more_spellings_of_each_pattern(name, text):
    found = leakage_findings(dialogue(assistant=text), "assistant")
    assert [f.kind for f in found] == [f"format_chatter:{name}"]


def test_the_issue_example_is_rejected():
    text = "You are a customer service agent. You must provide a valid JSON object with your answer."
    found = leakage_findings(dialogue(assistant=text), "assistant", policy=POLICY)
    assert found and all(f.decisive and f.blame == "assistant" for f in found)


def test_clean_text_on_both_sides_is_accepted():
    messages = [m for a, u in zip(CLEAN_ASSISTANT, CLEAN_USER * 2, strict=False)
                for m in (Message.assistant(a), Message.user(u))]
    assert leakage_findings(messages, "assistant", policy=POLICY) == []
    assert leakage_findings(messages, "user") == []


def test_a_recital_of_the_policy_is_rejected_but_a_quoted_rule_is_not():
    recital = ("Sure. Verify the customer before anything else, even if they tell you their user id. Look them up "
               "by email address, or, if they cannot give one or it is not found, by first name, last name and zip.")
    [finding] = leakage_findings(dialogue(assistant=recital), "assistant", policy=POLICY)
    assert finding.kind == "prompt_leak:policy" and finding.blame == "assistant"
    assert "verify the customer before anything else" in finding.reason
    rule = "Only state facts that come from the customer or from a tool, so I cannot guess the price."
    assert len(rule.split()) < POLICY_NGRAM
    assert leakage_findings(dialogue(assistant=rule), "assistant", policy=POLICY) == []
    # the policy's quoted phrase is meant to be said word for word
    transfer = "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON."
    assert leakage_findings(dialogue(assistant=transfer), "assistant", policy=POLICY) == []
    assert leakage_findings(dialogue(user=recital), "user", policy=POLICY) == []  # the user never saw it


@pytest.mark.parametrize("recital", [
    "You are a customer service agent. Follow the policy strictly. Each turn, either call tools or write.",
    AGENT_INSTRUCTIONS.splitlines()[-1],
    "All interactions will be structured in the following way, with the appropriate values filled in.",
])
def test_a_recital_of_the_assistant_instructions_is_rejected(recital):
    found = leakage_findings(dialogue(assistant=recital), "assistant", policy=POLICY)
    assert found[0].kind == "prompt_leak:instructions" and found[0].blame == "assistant"


def test_extra_instructions_of_an_optimized_program_are_checked_too():
    optimized = "Always greet the customer warmly and double check every order number before acting on it."
    said = "Always greet the customer warmly and double check every order number. How can I help?"
    assert leakage_findings(dialogue(assistant=said), "assistant") == []
    [finding] = leakage_findings(dialogue(assistant=said), "assistant", instructions=[optimized])
    assert finding.kind == "prompt_leak:instructions"
    assert len(finding.reason.split("'")[1].split()) >= INSTRUCTION_NGRAM


def test_the_user_reciting_its_guidelines_is_rejected():
    said = "Write one message at a time, reveal details only when asked. I want a refund."
    [finding] = leakage_findings(dialogue(user=said), "user")
    assert finding.kind == "prompt_leak:instructions" and finding.blame == "user"


@pytest.fixture(scope="module")
def mock():
    domain = get_domain("mock")
    return domain, Task.model_validate({"id": "t0", "user_scenario": {"instructions": "Ask for a compliment."}})


@pytest.mark.parametrize("use_judge", [False, True])
@pytest.mark.parametrize("side", ["assistant", "user"])
def test_the_validator_rejects_chatter_with_or_without_the_judge(mock, side, use_judge):
    domain, task = mock
    lm = scripted_lm(lambda req: {"passed": True, "blame": "none", "reasons": []})
    messages = dialogue(**{side: CHATTER["field_marker"][0]})
    pred = TrajectoryValidator(lm=lm, use_judge=use_judge)(domain=domain, task=task, messages=messages)
    assert not pred.verdict.passed and pred.verdict.blame == side and not pred.judged
    assert "format chatter (field_marker" in pred.verdict.reasons[0]
    assert lm.call_count == 0


def test_the_validator_passes_a_clean_dialogue_without_the_judge(mock):
    domain, task = mock
    messages = dialogue(assistant="You look great today, and your work on the roadmap was excellent!",
                        user="Could you give me a compliment?")
    pred = TrajectoryValidator(use_judge=False)(domain=domain, task=task, messages=messages)
    assert pred.verdict.passed and pred.findings == []
