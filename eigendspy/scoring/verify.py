"""Checker verification: is this checker a reward an RL policy cannot game?

A checker is *verified* when (1) the gold replay passes it, (2) every mutant of the gold
solution — one write action dropped, or one argument of one write action altered — fails it,
and (3) we know its ``null_pass``: whether a null policy (do nothing; transfer to a human at
once; perform only the reads) passes it. tau2 has tasks that a null policy passes (read-only
and refusal tasks whose basis is only the DB): as RL rewards they pay for doing nothing, so the
data engine rejects or caps them unless they carry an assertion a null policy fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from eigendspy.core.environment import Environment
from eigendspy.core.oracle import build_trajectory
from eigendspy.core.task import Action, Task
from eigendspy.scoring.checker import Checker
from eigendspy.scoring.results import is_success

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

NULL_TEXT = "I'm sorry, but I can't help with that request."
TRANSFER_TEXT = "YOU ARE BEING TRANSFERRED TO A HUMAN AGENT. PLEASE HOLD ON."


class MutantOutcome(BaseModel):
    kind: Literal["drop", "alter"]
    action_index: int
    description: str
    reward: float

    @property
    def survived(self) -> bool:
        return is_success(self.reward)


class NullOutcome(BaseModel):
    policy: Literal["do_nothing", "transfer", "reads_only"]
    reward: float

    @property
    def passed(self) -> bool:
        return is_success(self.reward)


class VerificationReport(BaseModel):
    """Outcome of verifying one task's checker.

    ``unknown_tools`` lists gold actions that name a tool the domain does not have (for their
    requestor). Such a gold solution still scores 1.0 (its replay errors the same way every time,
    so gold and reference agree), but it is not a solution an agent could produce: the task is
    reported unverified, as ``eigendspy tasks`` reports its gold replay as broken.
    """

    task_id: str
    gold_reward: float
    gold_failures: list[str] = Field(default_factory=list)
    unknown_tools: list[str] = Field(default_factory=list)
    mutants: list[MutantOutcome] = Field(default_factory=list)
    nulls: list[NullOutcome] = Field(default_factory=list)

    @property
    def gold_passes(self) -> bool:
        return is_success(self.gold_reward) and not self.unknown_tools

    @property
    def surviving_mutants(self) -> list[MutantOutcome]:
        return [m for m in self.mutants if m.survived]

    @property
    def null_pass(self) -> bool:
        """True when some null policy earns the full reward (a gameable reward)."""
        return any(n.passed for n in self.nulls)

    @property
    def null_policies_passing(self) -> list[str]:
        return [n.policy for n in self.nulls if n.passed]

    @property
    def verified(self) -> bool:
        return self.gold_passes and not self.surviving_mutants


def alter_value(value: Any) -> Any | None:
    """A plausible wrong value of the same type (None when there is no sensible alteration)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("1" if not value.endswith("1") else "2") if value else "x"
    if isinstance(value, list) and len(value) > 1:
        return value[:-1]
    if isinstance(value, list) and len(value) == 1:
        altered = alter_value(value[0])
        return [altered] if altered is not None else None
    if isinstance(value, dict) and value:
        key = sorted(value)[0]
        altered = alter_value(value[key])
        return {**value, key: altered} if altered is not None else None
    return None


def mutants(task: Task, is_write: Any) -> Iterable[tuple[str, int, str, list[Action]]]:
    """(kind, index, description, actions) for every drop-one-write and alter-one-argument mutant."""
    gold = task.gold_actions
    for i, action in enumerate(gold):
        if not is_write(action):
            continue
        yield "drop", i, f"dropped {action.name} #{i}", gold[:i] + gold[i + 1:]
        for arg, value in action.arguments.items():
            altered = alter_value(value)
            if altered is None or altered == value:
                continue
            changed = action.model_copy(update={"arguments": {**action.arguments, arg: altered}})
            yield "alter", i, f"{action.name} #{i}: {arg}={value!r} -> {altered!r}", gold[:i] + [changed] + gold[i + 1:]


def unknown_gold_tools(domain: Domain, task: Task) -> list[str]:
    """``name #index`` of each gold action whose tool its requestor's toolkit does not have."""
    return [f"{a.name} #{i}" + (" (user)" if a.requestor == "user" else "")
            for i, a in enumerate(task.gold_actions) if a.name not in domain.toolkit_for(a.requestor)]


def verify_checker(domain: Domain, task: Task, checker: Checker | None = None) -> VerificationReport:
    """Score the gold replay, all mutants and the three null policies with one checker.

    By default the checker is the RL reward (``Checker.for_reward``): verification is about what
    an execution-grounded reward can tell apart.
    """
    checker = checker or Checker.for_reward(domain, task)

    def is_write(action: Action) -> bool:
        return domain.mutates_state(action.name, action.requestor)

    def score(actions: list[Action], final_text: str | None = None) -> Any:
        env = Environment.for_task(domain, task, tau2_compat=checker.tau2_compat)
        return checker.score(build_trajectory(task, env, actions, final_text=final_text))

    gold = score(task.gold_actions)
    unknown = unknown_gold_tools(domain, task)
    report = VerificationReport(task_id=task.id, gold_reward=gold.reward, unknown_tools=unknown,
                                gold_failures=[*gold.failures, *(f"gold action {u} is not a tool of the domain"
                                                                 for u in unknown)])
    for kind, index, description, actions in mutants(task, is_write):
        report.mutants.append(MutantOutcome(kind=kind, action_index=index, description=description,
                                            reward=score(actions).reward))
    report.nulls.append(NullOutcome(policy="do_nothing", reward=score([], NULL_TEXT).reward))
    if "transfer_to_human_agents" in domain.toolkit:
        transfer = Action(action_id="null_transfer", name="transfer_to_human_agents",
                          arguments={"summary": "The user needs help."})
        report.nulls.append(NullOutcome(policy="transfer", reward=score([transfer], TRANSFER_TEXT).reward))
    reads = [a for a in task.gold_actions if not is_write(a) and a.name != "transfer_to_human_agents"]
    report.nulls.append(NullOutcome(policy="reads_only", reward=score(reads, NULL_TEXT).reward))
    return report


class VerificationSummary(BaseModel):
    reports: list[VerificationReport]

    @property
    def null_passing_tasks(self) -> list[str]:
        return [r.task_id for r in self.reports if r.null_pass]

    @property
    def unverified_tasks(self) -> list[str]:
        return [r.task_id for r in self.reports if not r.verified]

    def to_markdown(self) -> str:
        lines = ["| task | gold | mutants | surviving | null policies passing |", "|---|---|---|---|---|"]
        for r in self.reports:
            unknown = f" (unknown tools: {', '.join(r.unknown_tools)})" if r.unknown_tools else ""
            gold = f"{r.gold_reward:.1f}{unknown}"
            lines.append(f"| {r.task_id} | {gold} | {len(r.mutants)} | {len(r.surviving_mutants)} | "
                         f"{', '.join(r.null_policies_passing) or '-'} |")
        return "\n".join(lines)


def verify_tasks(domain: Domain, tasks: Iterable[Task], **checker_kwargs: Any) -> VerificationSummary:
    checker_kwargs.setdefault("exclude_nl", True)
    return VerificationSummary(
        reports=[verify_checker(domain, t, Checker(domain, t, **checker_kwargs)) for t in tasks]
    )
