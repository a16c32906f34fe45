"""Scripted policies and users for GRPO tests: rewards chosen per task, tokens through the real path."""

from __future__ import annotations

import itertools
import json
import re

from eigendspy.core.participants import FunctionParticipant, InfrastructureError
from eigendspy.testing.backend import ScriptedBackend

ALWAYS_RIGHT, ALWAYS_WRONG = "create_task_1", "update_task_1"
ALTERNATING = ("create_task_1_with_env_assertions", "update_task_with_initialization_data")
TASK_IDS = [ALWAYS_RIGHT, ALWAYS_WRONG, *ALTERNATING]
WRONG_CALL = '<tool_call>\n{"name": "get_users", "arguments": {}}\n</tool_call>'


def call_text(action) -> str:
    return f'<tool_call>\n{json.dumps({"name": action.name, "arguments": action.arguments})}\n</tool_call>'


def opening_user() -> FunctionParticipant:
    """Names its task in the opening line (so the scripted policy knows it), then stops."""
    def user(messages, ctx):
        if not any(m.role == "user" for m in messages):
            return f"Hello, this is about [{ctx.task.id}]."
        return "###STOP###"
    return FunctionParticipant(user)


def task_script(tasks: dict) -> callable:
    """First policy turn: the gold call (right) or a read-only call (wrong); then say what must be said, stop."""
    flips = {tid: itertools.cycle([True, False]) for tid in ALTERNATING}

    def script(prompt: str, _rng) -> str:
        task_id = re.search(r"\[([\w]+)\]", prompt).group(1)
        if "<tool_response>" in prompt:
            said = " ".join(tasks[task_id].evaluation_criteria.communicate_info or [])
            return f"All done. {said} ###STOP###"
        right = task_id == ALWAYS_RIGHT or (task_id in flips and next(flips[task_id]))
        return call_text(tasks[task_id].gold_actions[0]) if right else WRONG_CALL
    return script


def scripted_backend(tokenizer, tasks: dict) -> ScriptedBackend:
    return ScriptedBackend(tokenizer, task_script(tasks))


def alternating_script(tasks: dict) -> callable:
    """Every task: episodes alternate between replaying all gold assistant actions and a wrong call."""
    right_next = dict.fromkeys(tasks, True)

    def script(prompt: str, _rng) -> str:
        task_id = re.search(r"\[([\w\-:.]+)\]", prompt).group(1)
        task = tasks[task_id]
        gold = [a for a in task.gold_actions if a.requestor == "assistant"]
        done = prompt.count("<tool_response>")
        if done == 0:
            right = right_next[task_id]
            right_next[task_id] = not right
            return call_text(gold[0]) if right and gold else WRONG_CALL
        if WRONG_CALL.split("\n")[1] not in prompt and done < len(gold):
            return call_text(gold[done])
        said = " ".join(task.evaluation_criteria.communicate_info or [])
        return f"All done. {said} ###STOP###"
    return script


def trial_user() -> FunctionParticipant:
    """Names its task and trial in the opening line (a trial-keyed script reads both), then stops."""
    def user(messages, ctx):
        if not any(m.role == "user" for m in messages):
            return f"Hello, this is about [{ctx.task.id}] (trial {ctx.trial})."
        return "###STOP###"
    return FunctionParticipant(user)


def trial_script(tasks: dict, right=lambda trial: trial % 2 == 0, doomed=frozenset(), mark="", error=""):
    """Episodes decided by their trial number, whatever order they run in: ``right(trial)`` replays the
    gold actions (reward 1), otherwise a wrong call (reward 0). A ``doomed`` trial's first turn says
    ``mark`` and its next turn raises `InfrastructureError(error)`, the way a failing server would."""
    def script(prompt: str, _rng) -> str:
        task_id, trial = re.search(r"\[([\w\-:.]+)\] \(trial (\d+)\)", prompt).groups()
        task, trial = tasks[task_id], int(trial)
        gold = [a for a in task.gold_actions if a.requestor == "assistant"]
        done = prompt.count("<tool_response>")
        if trial in doomed:
            if done:
                raise InfrastructureError(error)
            return f"{mark} {WRONG_CALL}"
        if right(trial) and done < len(gold):
            return call_text(gold[done])
        if done == 0:
            return WRONG_CALL
        return f"All done. {' '.join(task.evaluation_criteria.communicate_info or [])} ###STOP###"
    return script
