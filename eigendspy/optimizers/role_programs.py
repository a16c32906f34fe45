"""Per-role programs under test, metrics and examples for ``eigendspy evolve --role ROLE``.

Why a module of its own: the CLI should only parse arguments, and each role needs a different
program, metric and example set — built from the same task source (a domain's task set or a
synth run's accepted tasks). What each role plays against matters as much as the metric:

- ``assistant``: full episodes against a real counterpart — by default a `UserSimulator` on the
  configured ``user`` LM (the `OracleUser` only says "Hi, I need help with my request", so a
  metric on it carries no signal), or any participant the caller builds (an SFT'd user model).
- ``user``: full episodes against the configured `Assistant` (or the `OracleAssistant`).
- ``generator``: `TaskGeneration` on plans (the run's plans, or one plan per known task) and sampled
  DB rows, scored by `task_generator_metric` (execution-verified, no near-duplicate of a known task).
- ``task_validator``: `TaskValidator` calibrated against execution: known tasks whose gold replay
  passes (accept) and the same tasks with one gold write dropped or altered, which the checker of
  the scenario's request rejects (reject, blame ``task``); `validator_calibration_metric`.
- ``trajectory_validator``: `TrajectoryValidator` on `planted_trajectory_items` (gold dialogue vs.
  one with the last write dropped), `validator_calibration_metric`.

Example:
    ```python
    lms = build_role_lms(RoleLMConfig.from_toml("roles.toml"))
    tasks = accepted_tasks("runs/synth")  # or domain.tasks("train")
    compiled, report = evolve_role("assistant", domain, lms, tasks, out_dir="runs/evolve", budget=20)
    ```
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dspy

from eigendspy.agents.assistant import Assistant
from eigendspy.agents.task_generator import TaskGenerator
from eigendspy.agents.task_validator import TaskValidator
from eigendspy.agents.trajectory_validator import DEFAULT_RUBRIC, TrajectoryValidator
from eigendspy.agents.user_simulator import UserSimulator
from eigendspy.core.environment import Environment
from eigendspy.core.oracle import OracleAssistant, OracleUser, build_trajectory
from eigendspy.core.participants import Participant
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.core.task import Task
from eigendspy.engine.entities import sample_entities
from eigendspy.engine.export import read_records
from eigendspy.optimizers.evolve import Budget, OptimizerName, evolve
from eigendspy.optimizers.metrics import (
    Metric,
    assistant_metric,
    planted_trajectory_items,
    task_generator_metric,
    user_simulator_metric,
    validator_calibration_metric,
)
from eigendspy.optimizers.programs import AssistantEpisode, TaskGeneration, UserEpisode
from eigendspy.optimizers.report import EvolveReport
from eigendspy.scoring.checker import Checker
from eigendspy.scoring.execution import execution_check
from eigendspy.scoring.results import is_success
from eigendspy.scoring.verify import mutants

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

EVOLVABLE = ("assistant", "user", "generator", "task_validator", "trajectory_validator")
#: The role each dialogue role plays against (the partner is frozen, never optimized).
COUNTERPART = {"assistant": "user", "user": "assistant"}
#: Partner choices resolved here; the CLI builds the other participant forms (``model:DIR`` ...) itself.
CONFIGURED, ORACLE = "configured", "oracle"
_MUTANT_TRIES = 3


@dataclass
class RoleSetup:
    """What `evolve` needs for one role: the program under test, its metric and held-apart examples."""

    role: str
    program: dspy.Module
    metric: Metric
    trainset: list[dspy.Example]
    valset: list[dspy.Example]
    partner: str = ""
    notes: list[str] = field(default_factory=list)


def accepted_tasks(run_dir: str | Path) -> list[Task]:
    """The accepted tasks of a synth run directory, in store order (first record per task id)."""
    records, _ = read_records(run_dir)
    seen: dict[str, Task] = {}
    for rec in records:
        if rec.accepted and rec.task is not None:
            seen.setdefault(rec.task.id, rec.task)
    return list(seen.values())


def run_plans(run_dir: str | Path) -> list[PlanPair]:
    """The distinct plans a synth run generated tasks for (accepted or not), in store order."""
    records, _ = read_records(run_dir)
    plans: dict[str, PlanPair] = {}
    for rec in records:
        if rec.plan is not None:
            plans.setdefault(rec.plan.plan_id, rec.plan)
    return list(plans.values())


def counterpart(role: str, choice: str, lms: Mapping[str, dspy.LM]) -> Participant:
    """The frozen partner of a dialogue role: ``"configured"`` (the role module on its LM) or ``"oracle"``."""
    if role not in COUNTERPART:
        raise ValueError(f"only {sorted(COUNTERPART)} play against a partner, not {role!r}")
    side = COUNTERPART[role]
    if choice == ORACLE:
        return OracleUser() if side == "user" else OracleAssistant()
    if choice != CONFIGURED:
        raise ValueError(f"partner must be {CONFIGURED!r} or {ORACLE!r} here, got {choice!r}")
    return UserSimulator(lm=lms.get("user")) if side == "user" else Assistant(lm=lms.get("assistant"))


def plan_for_task(task: Task, domain: Domain) -> PlanPair:
    """A plan of the task's cell (its intent, gold tool sequence, complexity), to generate *new* tasks like it."""
    ins = task.user_scenario.instructions
    intent = ins if isinstance(ins, str) else ins.reason_for_call
    names = list(dict.fromkeys(a.name for a in task.gold_actions)) or ["(no tool)"]
    writes = sum(domain.mutates_state(a.name, a.requestor) for a in task.gold_actions)
    complexity = "single_action" if len(task.gold_actions) <= 1 else "compound_request" if writes > 1 else "multi_step"
    synthesis = SynthesisPlan(intent_family=" ".join(intent.split())[:160], complexity=complexity,
                              tool_pattern=" -> ".join(names), user_style=task.user_scenario.persona or "plain")
    return PlanPair(plan_id=f"like_{task.id}", synthesis=synthesis, evaluation=EvaluationPlan(rubric=DEFAULT_RUBRIC))


def task_validator_items(domain: Domain, tasks: Sequence[Task]) -> list[dspy.Example]:
    """Calibration items for a task validator, labelled by execution (inputs ``domain, task``).

    Per task: the task itself (accept iff `execution_check` passes; otherwise its reasons are the
    truth) and, for a task that passes, one mutant — a gold write dropped or altered with the
    scenario unchanged — that the checker of the scenario's request rejects (reject, blame
    ``task``). Mutants that still execute are preferred: only those reach the LLM judge.
    """
    items = []
    for task in tasks:
        report = execution_check(domain, task)
        items.append(_item(domain, task, report.passed, list(report.reasons)))
        if report.passed and (mutant := _planted_mutant(domain, task)) is not None:
            items.append(_item(domain, *mutant))
    return items


def _item(domain: Domain, task: Task, passed: bool, reasons: list[str]) -> dspy.Example:
    return dspy.Example(domain=domain, task=task, expected_passed=passed, expected_blame=None if passed else "task",
                        truth_reasons=reasons).with_inputs("domain", "task")


def _planted_mutant(domain: Domain, task: Task) -> tuple[Task, bool, list[str]] | None:
    checker = Checker.for_reward(domain, task)
    found = None
    for tries, (_, _, description, actions) in enumerate(
            mutants(task, lambda a: domain.mutates_state(a.name, a.requestor))):
        result = checker.score(build_trajectory(task, Environment.for_task(domain, task), actions))
        if is_success(result.reward):
            continue  # the checker cannot tell this mutant apart: no ground truth
        criteria = task.evaluation_criteria.model_copy(update={"actions": actions})
        bad = task.model_copy(update={"id": f"{task.id}_mutant", "evaluation_criteria": criteria})
        reasons = [f"the gold actions do not do what the scenario asks ({description}): {'; '.join(result.failures)}"]
        found = found or (bad, False, reasons)
        if execution_check(domain, bad).passed or tries + 1 >= _MUTANT_TRIES:
            return bad, False, reasons
    return found


def _split(items: Sequence[Any], n: int, seed: int, what: str) -> tuple[list[Any], list[Any]]:
    if len(items) < 2:
        raise ValueError(f"need at least 2 {what} to evolve on (one to train, one held out), got {len(items)}")
    chosen = random.Random(seed).sample(list(items), min(len(items), 2 * n))
    half = len(chosen) // 2
    return chosen[:half], chosen[half:]


def _generation_examples(domain: Domain, plans: Sequence[PlanPair], seed: int) -> list[dspy.Example]:
    return [dspy.Example(plan=plan, entities=sample_entities(domain, random.Random(f"{seed}:{plan.plan_id}:{i}")),
                         task_id=f"evolve_{domain.name}_{i}").with_inputs("plan", "entities", "task_id")
            for i, plan in enumerate(plans)]


def role_setup(role: str, domain: Domain, lms: Mapping[str, dspy.LM], tasks: Sequence[Task], *,
               partner: Participant | None = None, plans: Sequence[PlanPair] | None = None, n: int = 8,
               seed: int = 0) -> RoleSetup:
    """The program under test, metric and train/held-out examples of ``role``.

    Args:
        role: One of `EVOLVABLE`.
        domain: The domain the tasks live in.
        lms: Role LMs by role name (``build_role_lms``); the evolved role's module gets its own.
        tasks: Known tasks (a domain's task set, or `accepted_tasks` of a run): the episodes of the
            dialogue roles, the calibration items of the validators, the near-duplicates the
            generator must avoid (and, without ``plans``, one plan per task).
        partner: The frozen counterpart of ``assistant``/``user``; default `counterpart` "configured".
        plans: Generator plans (e.g. `run_plans`); default: `plan_for_task` of each task.
        n: Training items; as many are held out.
        seed: Sampling seed of the split and of the generator's DB rows.

    Raises:
        ValueError: an unknown role, or too few tasks/items for a train and a held-out example.
    """
    if role not in EVOLVABLE:
        raise ValueError(f"role must be one of {', '.join(EVOLVABLE)}, got {role!r}")
    if role in COUNTERPART:
        partner = partner if partner is not None else counterpart(role, CONFIGURED, lms)
        train, val = _split([dspy.Example(task=t).with_inputs("task") for t in tasks], n, seed, "tasks")
        if role == "assistant":
            program = AssistantEpisode(domain, Assistant(lm=lms.get("assistant")), user=partner)
            return RoleSetup(role, program, assistant_metric(domain), train, val, partner=_describe(partner))
        program = UserEpisode(domain, UserSimulator(lm=lms.get("user")), assistant=partner)
        return RoleSetup(role, program, user_simulator_metric(domain), train, val, partner=_describe(partner))
    if role == "generator":
        chosen = list(plans) if plans else [plan_for_task(t, domain) for t in tasks]
        train, val = _split(_generation_examples(domain, chosen, seed), n, seed, "plans")
        program = TaskGeneration(domain, TaskGenerator(lm=lms.get("generator")))
        return RoleSetup(role, program, task_generator_metric(domain, earlier_tasks=tasks), train, val,
                         notes=[f"{len(chosen)} plans; {len(tasks)} known tasks count as near-duplicates"])
    train_tasks, val_tasks = _split(tasks, n, seed, "tasks")
    if role == "task_validator":
        validator: dspy.Module = TaskValidator(judge_lm=lms.get("task_validator"))
        train, val = task_validator_items(domain, train_tasks), task_validator_items(domain, val_tasks)
    else:
        validator = TrajectoryValidator(lm=lms.get("trajectory_validator"))
        train, val = planted_trajectory_items(domain, train_tasks), planted_trajectory_items(domain, val_tasks)
    if not train or not val:
        raise ValueError(f"the tasks gave {len(train)} training and {len(val)} held-out calibration items for "
                         f"the {role}; give tasks with gold writes")
    bad = sum(not ex.expected_passed for ex in [*train, *val])
    return RoleSetup(role, validator, validator_calibration_metric(), train, val,
                     notes=[f"{len(train) + len(val)} calibration items, {bad} that execution rejects"])


def _describe(partner: Participant) -> str:
    lm = getattr(getattr(partner, "turn", None), "lm", None)
    return type(partner).__name__ + (f" on {getattr(lm, 'model', lm)}" if lm is not None else "")


def evolve_role(role: str, domain: Domain, lms: Mapping[str, dspy.LM], tasks: Sequence[Task], *,
                partner: Participant | None = None, plans: Sequence[PlanPair] | None = None,
                optimizer: OptimizerName = "gepa", budget: Budget = "light", n: int = 8, seed: int = 0,
                out_dir: str | Path | None = None,
                num_threads: int | None = None) -> tuple[dspy.Module, EvolveReport, RoleSetup]:
    """`role_setup` then `evolve` with the role's LM as task LM and the ``reflector`` LM as reflection LM.

    Returns:
        (compiled program, report, the setup it ran); with ``out_dir`` the compiled role lands in
        ``out_dir/compiled/<role>.json`` with the report beside it.
    """
    setup = role_setup(role, domain, lms, tasks, partner=partner, plans=plans, n=n, seed=seed)
    compiled, report = evolve(setup.program, setup.trainset, setup.valset, setup.metric, optimizer=optimizer,
                              budget=budget, reflection_lm=lms.get("reflector"), task_lm=lms.get(role), seed=seed,
                              out_dir=out_dir, role=role, num_threads=num_threads)
    return compiled, report, setup


__all__ = ["CONFIGURED", "COUNTERPART", "EVOLVABLE", "ORACLE", "RoleSetup", "accepted_tasks", "counterpart",
           "evolve_role", "plan_for_task", "role_setup", "run_plans", "task_validator_items"]
