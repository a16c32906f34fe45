"""Execution checks of a synthesized task: the half of task validation no LLM can fake.

A task is only as good as its checker, and its checker is the RL reward. So before any judge
reads a task, it is *executed*: on a fresh environment every gold action must succeed (a task
that names an order the DB does not have fails here, because its lookup or write errors), every
gold write must change the state (a no-op write teaches nothing and cannot be checked), and the
checker must be verified — the gold replay passes it and every mutant (one write dropped or one
argument altered) fails it. Whether a null policy (do nothing, transfer at once, reads only)
passes is recorded as ``null_pass``; rejecting such tasks is the caller's choice
(``reject_null_pass``), since refusal tasks are legitimate when capped in RL sets.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from eigendspy.core.environment import Environment
from eigendspy.core.task import Task
from eigendspy.scoring.checker import Checker
from eigendspy.scoring.verify import VerificationReport, verify_checker

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

Fault = Literal[
    "initial_state",
    "action_error",
    "no_op_write",
    "gold_fails_checker",
    "mutant_survives",
    "null_pass",
    "verification_error",
]


class ExecutionReport(BaseModel):
    """What executing a task showed; ``reasons`` are written to be fed back to the generator."""

    task_id: str
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list, description="One code per reason, for failure statistics")
    null_pass: bool | None = Field(None, description="Some null policy earns full reward (None: not verified)")
    null_policies_passing: list[str] = Field(default_factory=list)
    verification: VerificationReport | None = None

    def summary(self) -> str:
        """One line for logs and records."""
        if self.verification is None:
            return f"task {self.task_id}: {'passed' if self.passed else 'failed'} (not verified)"
        v = self.verification
        return (f"task {self.task_id}: {'passed' if self.passed else 'failed'}; gold reward {v.gold_reward:.1f}, "
                f"{len(v.mutants)} mutants ({len(v.surviving_mutants)} surviving), "
                f"null policies passing: {', '.join(v.null_policies_passing) or '-'}")


def _call_text(name: str, arguments: dict) -> str:
    text = json.dumps(arguments, ensure_ascii=False, default=str)
    return f"{name}({text if len(text) <= 200 else text[:199] + '…'})"


def execution_check(
    domain: Domain, task: Task, *, reject_null_pass: bool = False, tau2_compat: bool = False
) -> ExecutionReport:
    """Execute a task's gold solution and verify its checker (``Checker.for_reward``: the RL reward).

    Args:
        domain: The domain the task lives in.
        task: The task to check.
        reject_null_pass: Fail tasks that a null policy passes (for RL task sets).
        tau2_compat: Build environments and the checker in tau2-compatibility mode.

    Returns:
        An `ExecutionReport`; it never raises on a broken task (that is what it reports).

    Example:
        ```python
        report = execution_check(domain, task)
        if not report.passed:
            feedback = report.reasons  # back to the TaskGenerator
        ```
    """
    reasons: list[str] = []
    faults: list[Fault] = []

    def fail(fault: Fault, reason: str) -> None:
        faults.append(fault)
        reasons.append(reason)

    try:
        env = Environment.for_task(domain, task, tau2_compat=tau2_compat)
    except Exception as exc:  # a broken initial state is a finding, not a crash
        fail("initial_state", f"the task's initial state cannot be built: {type(exc).__name__}: {exc}")
        return ExecutionReport(task_id=task.id, passed=False, reasons=reasons, faults=faults)

    for i, action in enumerate(task.gold_actions):
        writes = env.toolkit(action.requestor).mutates_state(action.name)
        before = env.fork() if writes else None
        msg = env.execute(action.as_call(f"check_{i}"), action.requestor)
        call = _call_text(action.name, action.arguments)
        if msg.error:
            fail("action_error", f"gold action #{i} {call} fails on the task's initial state: {msg.content}")
        elif before is not None and env.same_state(before):
            fail("no_op_write", f"gold write #{i} {call} changes nothing (the state already has these values); "
                                "a write must change the state")
    if faults:  # verifying a checker over a broken reference solution would only add noise
        return ExecutionReport(task_id=task.id, passed=False, reasons=reasons, faults=faults)

    try:
        report = verify_checker(domain, task, Checker.for_reward(domain, task, tau2_compat=tau2_compat))
    except Exception as exc:
        fail("verification_error", f"checker verification failed: {type(exc).__name__}: {exc}")
        return ExecutionReport(task_id=task.id, passed=False, reasons=reasons, faults=faults)
    if not report.gold_passes:
        detail = "; ".join(report.gold_failures) or f"reward {report.gold_reward}"
        fail("gold_fails_checker", f"the gold solution fails the task's own checks: {detail}")
    for mutant in report.surviving_mutants:
        fail("mutant_survives", f"the checks accept a wrong solution ({mutant.description}): that write is "
                                "redundant, or the checks cannot tell it apart")
    if reject_null_pass and report.null_pass:
        fail("null_pass", f"a null policy ({', '.join(report.null_policies_passing)}) earns the full reward: "
                          "add a check a do-nothing agent fails (a write, or information to communicate)")
    return ExecutionReport(
        task_id=task.id,
        passed=not faults,
        reasons=reasons,
        faults=faults,
        null_pass=report.null_pass,
        null_policies_passing=report.null_policies_passing,
        verification=report,
    )
