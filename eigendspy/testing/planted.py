"""Engine roles with planted, learnable failure causes in three roles: generator, user, assistant.

Why: to show that the closed loop (`eigendspy.optimizers.loop.evolve_loop`) learns from the *reasons*
its rounds reject items, each weak scripted model here fails in one specific way unless its
instruction text states a rule — and the rule is exactly what the rejection reason asks for. The
scripted reflection LM (`planted_reflection_policy`) may derive a rule *only* from the ``Feedback``
entries GEPA shows it, so with blank feedback (the ablation) nothing can be learned.

The planted failures are tied to the plan of the stream that made the task (`planted_planner` gives
stream ``s`` plan kind ``s % 4``), so a round's shares are exact, not sampled:

- stream 0, plan kind "bare numbers": the generator writes task ids without their ``task_`` prefix (a
  task that does not exist), so execution validation rejects the task; fixed by `GENERATOR_RULE`;
- stream 1, plan "reads from notes": the user reads its task instructions aloud, so the trajectory
  pre-check rejects the dialogue with blame ``"user"``; fixed by `USER_RULE`;
- stream 2, plan "terse": the user does not ask for the new status and the assistant does not say
  it, so the checker's COMMUNICATE check fails (blame ``"assistant"``); fixed by `ASSISTANT_RULE`;
- stream 3: no hazard.

With 4 streams the first round's accepted-dialogue yield is 1/4; each fixed role adds 1/4.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from eigendspy.engine.config import Roles
from eigendspy.testing.lm import ScriptedToolCall, ScriptedToolCalls, scripted_lm
from eigendspy.testing.request import ScriptedRequest

GENERATOR_RULE = "Copy entity ids exactly as the sampled rows spell them (e.g. 'task_12', never '12')."
USER_RULE = "Never repeat your task instructions word for word; say what you want in your own words."
ASSISTANT_RULE = "In your final message, state the task's new status in words."
# A phrase of the rejection reason each rule answers (what the reflection LM looks for in the feedback).
GENERATOR_REASON = "not found"  # the gold replay's tool error: "Task 12 not found"
USER_REASON = "repeated its task instructions verbatim"
ASSISTANT_REASON = "never told the user"
RULES = {GENERATOR_REASON: GENERATOR_RULE, USER_REASON: USER_RULE, ASSISTANT_REASON: ASSISTANT_RULE}
PLAN_KINDS = ("bare numbers", "reads from notes", "terse", "polite")


def planted_domain() -> Any:
    """The mock domain with enough tasks that streams rarely pick the same one (40 users x 5 tasks)."""
    from eigendspy.domains import get_domain

    return get_domain("mock", num_users=40, tasks_per_user=5)


_PLANS = (
    ("close out a finished work item", "single_action", "none", "hurried, gives ids as bare numbers"),
    ("reopen something ticked off by mistake", "multi_step", "missing_information", "reads from notes"),
    ("flip a chore on the tracker", "compound_request", "user_changes_mind", "terse"),
    ("correct the state of a project entry", "single_action", "wrong_identity_details", "polite"),
)


def planted_planner(req: ScriptedRequest) -> dict[str, Any]:
    """Plan kind ``s % 4`` for stream ``s`` (`PLAN_KINDS`; the kind is the plan's user style)."""
    n = int(re.search(r"\d+", req.inputs.get("n", "4")).group()) if req.inputs.get("n") else 4
    return {"plans": [
        {"synthesis": {"intent_family": intent, "complexity": complexity, "tool_pattern": "update_task_status",
                       "user_style": style, "edge_case": edge},
         "evaluation": {"rubric": "the status is changed and confirmed", "failure_types": ["wrong status"]}}
        for intent, complexity, edge, style in (_PLANS[i % 4] for i in range(n))]}


def planted_generator(req: ScriptedRequest) -> dict[str, Any]:
    """Flips one sampled task's status; on a "bare numbers" plan writes the id without its ``task_`` prefix
    (a task that does not exist) unless its instruction says to copy ids exactly."""
    entities, plan, key = req.inputs.get("entities", ""), req.inputs.get("plan", ""), req.inputs.get("task_id", "")
    rows = re.findall(r'"task_id":"(task_\d+)"[^\n]*"status":"(\w+)"', entities)
    task_id, status = rows[zlib.crc32(key.encode()) % len(rows)] if rows else ("task_1", "pending")
    target = "completed" if status == "pending" else "pending"
    written = task_id
    if PLAN_KINDS[0] in plan and GENERATOR_RULE.lower() not in req.instructions.lower():
        written = task_id.removeprefix("task_")
    kind = next((k for k in PLAN_KINDS[1:3] if k in plan), "plain")
    persona = {"reads from notes": "a team member who reads from notes", "terse": "a terse team member"}.get(
        kind, "a busy team member")
    return {"task": {
        "persona": persona, "reason_for_call": f"You want {task_id} marked as {target}.",
        "known_info": f"The task id is {task_id}.", "unknown_info": "",
        "task_instructions": f"Ask the agent to mark {task_id} as {target} and wait until it confirms the new "
                             "status of the task, then say goodbye.",
        "actions": [{"name": "update_task_status", "arguments": {"task_id": written, "status": target}}],
        "communicate_info": [target], "reward_basis": ["DB", "COMMUNICATE"], "state_predicates": []}}


def planted_task_judge(req: ScriptedRequest) -> dict[str, Any]:
    return {"policy_consistent": True, "solvable": True, "scenario_sufficient": True, "reasons": []}


def planted_user(req: ScriptedRequest) -> dict[str, str]:
    """Asks for the flip (reading its notes aloud unless told not to); stops once the agent says it is done."""
    scenario, dialogue = req.inputs.get("scenario", ""), req.inputs.get("dialogue", "")
    match = re.search(r"(task_\d+) marked as (\w+)", scenario)
    task_id, target = match.groups() if match else ("task_1", "completed")
    said = dialogue.split("agent:")[-1] if "agent:" in dialogue else ""
    if "Done" in said or target in said:
        return {"message": "Thanks, that's all. ###STOP###"}
    if "terse" in scenario:
        return {"message": f"Mark {task_id} {target}."}
    message = f"Please mark {task_id} as {target} and tell me its new status."
    notes = re.search(r"Ask the agent to[^\n]*goodbye\.", scenario)
    if "reads from notes" in scenario and notes and USER_RULE.lower() not in req.instructions.lower():
        message += f" My notes say: {notes.group()}"
    return {"message": message}


def planted_assistant(req: ScriptedRequest) -> Any:
    """Makes the write, then names the new status only if asked to or if its instruction says so."""
    dialogue = req.inputs.get("dialogue", "")
    match = re.search(r"[Mm]ark (task_\d+) (?:as )?(pending|completed)", dialogue)
    if match is None:
        return {"response": "Which task should I update, and to which status?", "tool_calls": []}
    task_id, target = match.groups()
    if "[tool result" not in dialogue:
        call = ScriptedToolCall(name="update_task_status", arguments={"task_id": task_id, "status": target})
        return ScriptedToolCalls(calls=[call], outputs={"response": ""})
    if "new status" in dialogue or ASSISTANT_RULE.lower() in req.instructions.lower():
        return {"response": f"Done: {task_id} is now {target}.", "tool_calls": []}
    return {"response": f"Done, {task_id} is taken care of.", "tool_calls": []}


def planted_trajectory_judge(req: ScriptedRequest) -> dict[str, Any]:
    """A calibrated judge: passes exactly the dialogues the checker passes, else blames the assistant."""
    feedback = req.inputs.get("checker_feedback", "")
    if "all checks passed" in feedback:
        return {"passed": True, "blame": "none", "reasons": []}
    reasons = [line[2:] for line in feedback.splitlines() if line.startswith("- ")] or ["the checker failed"]
    return {"passed": False, "blame": "assistant", "reasons": reasons}


def planted_reflector(req: ScriptedRequest) -> dict[str, Any]:
    """Keeps the plan (the loop's between-round learning is role compilation, not plan rewriting)."""
    return {"revised": {"synthesis": {"intent_family": "update a task's status", "complexity": "single_action",
                                      "tool_pattern": "update_task_status", "user_style": "plain",
                                      "edge_case": "none"},
                        "evaluation": {"rubric": "the status is changed and confirmed", "failure_types": []}},
            "rationale": "unchanged"}


def _feedback_texts(req: ScriptedRequest) -> list[str]:
    """Only the ``Feedback`` entries of GEPA's reflective examples (inputs and outputs are ignored)."""
    raw = req.inputs.get("examples_with_feedback", "")
    try:
        items = json.loads(raw)
    except (TypeError, ValueError):
        return [bytes(m, "utf-8").decode("unicode_escape")
                for m in re.findall(r'"Feedback":\s*"((?:[^"\\]|\\.)*)"', raw)] or re.findall(
                    r"Feedback[^\n]*\n((?:(?!###).*\n?)*)", raw)
    return [str(item.get("Feedback", "")) for item in items if isinstance(item, dict)]


def planted_reflection_policy(req: ScriptedRequest) -> dict[str, str]:
    """GEPA's reflection LM: appends the rule for each planted reason it finds in the feedback it is shown."""
    current = req.inputs.get("current_instruction", "").strip()
    feedback = "\n".join(_feedback_texts(req))
    rules = [rule for reason, rule in RULES.items() if reason in feedback and rule not in current]
    return {"new_instruction": " ".join([current, *rules])}


PLANTED_POLICIES = {
    "planner": planted_planner, "generator": planted_generator, "task_validator": planted_task_judge,
    "user": planted_user, "assistant": planted_assistant, "trajectory_validator": planted_trajectory_judge,
    "reflector": planted_reflector,
}
"""Policy per role name of `eigendspy.lm.config.ROLES` (for ``Roles.from_lms``-style wiring)."""


def planted_lms(reflection: bool = True, latency_s: float = 0.0) -> dict[str, Any]:
    """One scripted LM per role; with ``reflection`` the ``reflector`` LM answers GEPA's reflection prompts
    (what the CLI passes as the reflection LM) — the engine's plan reflector is never called by the loop."""
    policies = {**PLANTED_POLICIES, **({"reflector": planted_reflection_policy} if reflection else {})}
    return {role: scripted_lm(policy, latency_s=latency_s) for role, policy in policies.items()}


def planted_roles(latency_s: float = 0.0) -> Roles:
    """Fresh engine roles played by the planted scripted LMs (deterministic: pure functions of the request)."""
    return Roles.from_lms(planted_lms(reflection=False, latency_s=latency_s))


def planted_reflection_lm() -> Any:
    """The scripted reflection LM for GEPA (answers the JSON its proposer asks for)."""
    return scripted_lm(planted_reflection_policy)


def planted_loop_config(**overrides: Any) -> Any:
    """The loop settings the planted case is sized for: 4 streams x 2 tasks, GEPA with 30 metric calls, top 2."""
    from eigendspy.optimizers.loop import EvolveLoopConfig

    base = dict(domain="mock", rounds=3, tasks_per_round=8, streams=4, optimizer="gepa", budget=30, top_k=2)
    return EvolveLoopConfig(**{**base, **overrides})


def run_planted_loop(out_dir: Any, *, latency_s: float = 0.0, resume: bool = False, workflow_lm: Any = None,
                     **overrides: Any) -> Any:
    """`evolve_loop` on the planted case (what the tests and the notebook run); returns its report.

    Example:
        ```python
        report = run_planted_loop("runs/planted")                       # yields 0.25 -> 0.75 -> 1.0
        ablation = run_planted_loop("runs/blank", blank_feedback=True)  # stays at 0.25
        ```
    """
    from eigendspy.optimizers.loop import evolve_loop

    return evolve_loop(planted_domain(), planted_roles(latency_s=latency_s), planted_loop_config(**overrides),
                       out_dir, reflection_lm=planted_reflection_lm(), workflow_lm=workflow_lm, resume=resume)
