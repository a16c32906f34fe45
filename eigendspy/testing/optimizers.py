"""A tiny role whose scripted task LM follows a rule only when its instruction states it.

Why: to prove that prompt optimization *closes the loop* (checker reasons -> reflection ->
instruction -> behaviour -> checker pass), the task model must be unable to do the right thing
from its inputs alone. Here the policy text is in every request, but the scripted "weak model"
ignores it and obeys only the instruction text, with two planted failure causes:

- it refunds to the original payment method only if its instruction mentions "original payment
  method" (otherwise it refunds to a gift card);
- it asks for confirmation only if its instruction mentions "explicit confirmation".

`refund_checker` scores a decision like a checker (one human-readable reason per failed check).
`reflection_policy` is a scripted GEPA reflection LM that may derive a fix *only* from the
``Feedback`` entries of the reflection prompt; `prompt_model_policy` is a scripted MIPROv2 prompt
model that derives candidate rules from the dataset it is shown.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Any

import dspy

from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls
from eigendspy.testing.request import ScriptedRequest

SEED_INSTRUCTION = "Decide where the customer's refund goes and whether to check with them before refunding."
POLICY = (
    "Refunds go back to the original payment method of the order. Before any refund, the agent must get "
    "the customer's explicit confirmation."
)
REFUND_RULE = "Always refund to the original payment method of the order."
CONFIRM_RULE = "Before any refund, ask the customer for explicit confirmation."
REFUND_REASON = "instead of the original payment method"  # "refund went to the gift card instead of ..."
CONFIRM_REASON = "refund issued without asking the customer for explicit confirmation"

_METHODS = ["visa card", "paypal account", "mastercard", "bank transfer", "amex card", "gift card", "apple pay"]
_ITEMS = ["lamp", "backpack", "kettle", "headphones", "desk chair", "jacket", "blender", "monitor"]


class RefundDecision(dspy.Signature):
    """Decide where the customer's refund goes and whether to check with them before refunding."""

    request: str = dspy.InputField(desc="The customer's message, with the order's payment method")
    policy: str = dspy.InputField(desc="The refund policy")
    refund_to: str = dspy.OutputField(desc="Where the refund goes")
    ask_confirmation: bool = dspy.OutputField(desc="Whether to ask the customer to confirm before refunding")


class RefundAgent(dspy.Module):
    """The role being optimized: one predictor over `RefundDecision`."""

    def __init__(self) -> None:
        super().__init__()
        self.decide = dspy.Predict(RefundDecision.with_instructions(SEED_INSTRUCTION))

    def forward(self, request: str, policy: str) -> dspy.Prediction:
        return self.decide(request=request, policy=policy)


def refund_examples(n: int, offset: int = 0) -> list[dspy.Example]:
    """``n`` refund requests; every seventh was paid with a gift card (refunding there is right anyway)."""
    out = []
    for i in range(offset, offset + n):
        method, item = _METHODS[i % len(_METHODS)], _ITEMS[i % len(_ITEMS)]
        request = f"Hi, I want to return the {item} from order #R{1000 + i}. Payment method: {method}."
        out.append(dspy.Example(request=request, policy=POLICY, payment_method=method).with_inputs("request", "policy"))
    return out


def refund_checker(gold: dspy.Example, pred: dspy.Prediction, trace: Any = None, pred_name: str | None = None,
                   pred_trace: Any = None) -> dspy.Prediction:
    """Checker-style metric: half a point per check, a human-readable reason per failure."""
    failures = []
    refund_to = str(getattr(pred, "refund_to", "") or "").strip().lower()
    if refund_to != gold.payment_method:
        failures.append(f"refund went to the {refund_to or 'nowhere'} {REFUND_REASON} ({gold.payment_method})")
    if getattr(pred, "ask_confirmation", None) is not True:
        failures.append(CONFIRM_REASON)
    feedback = "All checks passed." if not failures else "Failed checks:\n" + "\n".join(f"- {f}" for f in failures)
    return dspy.Prediction(score=1.0 - len(failures) / 2, feedback=feedback)


def blank_feedback_checker(gold: dspy.Example, pred: dspy.Prediction, trace: Any = None,
                           pred_name: str | None = None, pred_trace: Any = None) -> dspy.Prediction:
    """The ablation: the same scores, but the reflection LM is told nothing about why."""
    return dspy.Prediction(score=refund_checker(gold, pred).score, feedback="")


def task_policy(req: ScriptedRequest) -> dict[str, Any]:
    """The weak task model: obeys the instruction text only (the policy input is ignored)."""
    instructions = req.instructions.lower()
    match = re.search(r"payment method: ([\w ]+)\.", req.inputs.get("request", ""), re.IGNORECASE)
    method = match.group(1) if match else "card"
    return {
        "refund_to": method if "original payment method" in instructions else "gift card",
        "ask_confirmation": "explicit confirmation" in instructions,
    }


def _feedback_texts(req: ScriptedRequest) -> list[str]:
    """Only the ``Feedback`` entries of GEPA's reflective examples (inputs and outputs are ignored)."""
    raw = req.inputs.get("examples_with_feedback", "")
    try:
        items = json.loads(raw)
    except (TypeError, ValueError):
        return re.findall(r'"Feedback":\s*"((?:[^"\\]|\\.)*)"', raw)
    return [str(item.get("Feedback", "")) for item in items if isinstance(item, dict)]


def reflection_policy(req: ScriptedRequest) -> dict[str, str]:
    """GEPA's reflection LM: appends a rule only for a failure reason it was shown in the feedback."""
    current = req.inputs.get("current_instruction", "").strip()
    feedback = "\n".join(_feedback_texts(req)).lower()
    rules = []
    if REFUND_REASON in feedback and REFUND_RULE not in current:
        rules.append(REFUND_RULE)
    if CONFIRM_REASON in feedback and CONFIRM_RULE not in current:
        rules.append(CONFIRM_RULE)
    return {"new_instruction": " ".join([current, *rules])}


def garbage_policy(req: ScriptedRequest) -> str:
    """A reflection LM that never answers in the JSON the proposer asks for."""
    return "Sure! Here is a better instruction: be nicer. %%% not json %%%"


class PromptModel:
    """MIPROv2's prompt model: reads rules from the data it is shown and proposes instruction variants.

    The dataset summary is derived from the training examples (their policy text); each proposed
    instruction includes a different subset of the observed rules (as sampling at temperature 1
    would), so the search has wrong candidates to reject and one right one to find.
    """

    SUBSETS = ((REFUND_RULE,), (CONFIRM_RULE,), (REFUND_RULE, CONFIRM_RULE), ())

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proposals = itertools.count()
        self.proposed: list[str] = []

    @staticmethod
    def _observed(text: str) -> list[str]:
        text = text.lower()
        return [rule for phrase, rule in (("original payment method", REFUND_RULE),
                                          ("explicit confirmation", CONFIRM_RULE)) if phrase in text]

    def __call__(self, req: ScriptedRequest) -> dict[str, str]:
        fields = req.output_fields
        if "observations" in fields:
            rules = self._observed(req.inputs.get("examples", ""))
            return {"observations": "Refund requests with a policy. Rules: " + " ".join(rules)}
        if "summary" in fields:
            return {"summary": req.inputs.get("observations", "")}
        if "program_description" in fields:
            return {"program_description": "Decides refund handling for customer requests."}
        if "module_description" in fields:
            return {"module_description": "Chooses the refund destination and whether to confirm."}
        if "proposed_instruction" in fields:
            observed = self._observed(req.inputs.get("dataset_description", ""))
            with self._lock:
                subset = self.SUBSETS[next(self._proposals) % len(self.SUBSETS)]
            rules = [r for r in subset if r in observed]
            text = " ".join([SEED_INSTRUCTION, *rules])
            with self._lock:
                self.proposed.append(text)
            return {"proposed_instruction": text}
        raise AssertionError(f"unexpected prompt-model request for {fields}")


# --- an instruction-dependent assistant for full episodes (mock domain) ----------------------------------

STATUS_RULE = "In your final message, state the task's new status in words."
STATUS_REASON = "never told the user"  # the checker's COMMUNICATE reason: "the agent never told the user 'completed'"


def episode_assistant_policy(req: ScriptedRequest) -> Any:
    """Marks the requested task done, but names the new status only if its instruction says so."""
    dialogue = req.inputs.get("dialogue", "")
    task = re.search(r"mark (task_\d+)", dialogue)
    if task is None:
        return {"response": "Which task should I update?", "tool_calls": []}
    if "[tool result" not in dialogue:
        call = ScriptedToolCall(name="update_task_status", arguments={"task_id": task.group(1), "status": "completed"})
        return ScriptedToolCalls(calls=[call], outputs={"response": ""})
    if "state the task's new status" in req.instructions.lower():
        return {"response": f"Done: {task.group(1)} is now completed.", "tool_calls": []}
    return {"response": f"Done, {task.group(1)} is taken care of.", "tool_calls": []}


def episode_user_policy(req: ScriptedRequest) -> dict[str, str]:
    """Asks once for its task to be marked done and stops after the agent's 'Done'."""
    if "Done" in req.inputs.get("dialogue", ""):
        return {"message": "Thanks, that's all. ###STOP###"}
    task = re.search(r"task_\d+", req.inputs.get("scenario", ""))
    return {"message": f"Please mark {task.group() if task else 'my task'} as completed."}


def episode_reflection_policy(req: ScriptedRequest) -> dict[str, str]:
    """Adds the status rule only when the feedback it is shown carries the checker's reason."""
    current = req.inputs.get("current_instruction", "").strip()
    feedback = "\n".join(_feedback_texts(req))
    rules = [STATUS_RULE] if STATUS_REASON in feedback and STATUS_RULE not in current else []
    return {"new_instruction": " ".join([current, *rules])}
