"""Text renderings the synthesis roles read: tool summaries, plans, tasks, failures (dialogues: `transcript`).

DSPy's text adapters see every input as text, so each role's inputs are rendered here, once,
the same way for every role (and every optimizer run). Tool summaries are *inputs*, never part
of instruction text: prompt optimizers rewrite instructions wholesale and would delete them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from eigendspy.core.plans import PlanPair
from eigendspy.core.records import Verdict
from eigendspy.core.task import Task

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain


def _first_line(text: str) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")


def tool_summary(domain: Domain) -> str:
    """One line per tool: ``name(arg, ...) [write]: first line of its description``.

    User-side tools (dual control: the user acts on their own device) are listed after the
    agent's, marked ``[user device]``, so the generator can give them the user as requestor.
    """
    lines = []
    for side, kit in (("assistant", domain.toolkit), ("user", domain.user_toolkit)):
        for spec in kit:
            args = ", ".join(spec.parameters_schema.get("properties", {}))
            tags = (["write"] if spec.mutates_state else []) + (["user device"] if side == "user" else [])
            tag = f" [{', '.join(tags)}]" if tags else ""
            lines.append(f"{spec.name}({args}){tag}: {_first_line(spec.description)}")
    return "\n".join(lines)


def all_tool_names(domain: Domain) -> list[str]:
    """Agent tool names, then user tool names not already listed."""
    names = list(domain.toolkit.names)
    return names + [n for n in domain.user_toolkit.names if n not in names]


def render_plans(plans: Iterable[PlanPair]) -> str:
    """Previously used plans, one per line (``"(none)"`` when there are none)."""
    lines = [plan.render() for plan in plans]
    return "\n".join(lines) if lines else "(none)"


def render_task(task: Task) -> str:
    """What a task judge reads: the user's scenario, the reference solution and the checks."""
    criteria = task.evaluation_criteria
    parts = [f"Task {task.id}", "User scenario:", task.user_scenario.render(), "Gold actions (reference solution):"]
    for action in task.gold_actions:
        parts.append(f"- [{action.requestor}] {action.name}({json.dumps(action.arguments, ensure_ascii=False)})")
    if not task.gold_actions:
        parts.append("- (none: nothing should be changed)")
    if criteria is not None:
        if criteria.communicate_info:
            parts.append("The agent must tell the user: " + "; ".join(criteria.communicate_info))
        if criteria.state_predicates:
            parts.append("Final-state predicates: " + "; ".join(p.expression for p in criteria.state_predicates))
        parts.append("Reward basis: " + ", ".join(r.value for r in criteria.reward_basis))
    return "\n".join(parts)


def render_failures(failures: Iterable[Verdict | str]) -> str:
    """Failure reasons with blame, one per line (the reflector's evidence)."""
    lines = []
    for failure in failures:
        if isinstance(failure, Verdict):
            reasons = "; ".join(failure.reasons) or "(no reason given)"
            lines.append(f"- blame={failure.blame}: {reasons}")
        else:
            lines.append(f"- {failure}")
    return "\n".join(lines) if lines else "(no failures recorded)"


def render_feedback(feedback: str | Sequence[str] | None) -> str:
    """Reasons a previous attempt was rejected (empty on the first attempt)."""
    if not feedback:
        return ""
    if isinstance(feedback, str):
        return feedback
    return "\n".join(f"- {reason}" for reason in feedback)
