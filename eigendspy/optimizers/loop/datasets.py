"""Turn one round's stored records into per-role evidence: who failed, why, and examples to learn from.

Why from the store and not from the engine's memory: a round's run directory is the audited record
of what happened (resumable, inspectable), so the sets a role is compiled on can always be rebuilt
from it, and a resumed loop rebuilds exactly the sets an uninterrupted one built.

Attribution, each role against executable ground truth where there is one:

- ``generator``: tasks rejected whose gold replay fails execution (or that never became a task, or
  were filtered as duplicates / gameable), and dialogues blamed on the task. Examples are the
  generator's own inputs (plan, re-sampled entities, task id); the metric re-runs execution.
- ``task_validator``: tasks the validator rejected although execution passes them (a false
  rejection); calibration examples carry the execution verdict as ground truth.
- ``user``: dialogues the trajectory validator blamed on the user (its pre-checks are deterministic).
- ``assistant``: dialogues whose checker failed and were not blamed on the user or the task.
- ``trajectory_validator``: dialogues whose verdict disagrees with the checker plus the user
  pre-checks (the executable truth of a dialogue).

Each failure keeps its stored rejection reasons (``round_reasons``): the metric returns them as
feedback next to its own fresh reasons (`with_round_reasons`). Passing items are added as controls
(as many as failures), so a compiled role is also scored on what it already did right.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from eigendspy.agents.trajectory_prechecks import user_findings
from eigendspy.core.domain import Domain
from eigendspy.core.records import DialogueRecord, Stage, TaskRecord
from eigendspy.core.task import Task
from eigendspy.engine.config import EngineConfig
from eigendspy.engine.entities import sample_entities
from eigendspy.engine.store.store import RunStore
from eigendspy.optimizers.metrics import Metric, score_of
from eigendspy.scoring.execution import execution_check

_EXCEPTION = re.compile(r"^([\w.]+\.)?[A-Z]\w*(Error|Exception|Timeout\w*)\b")
_UNAVAILABLE = "validator unavailable:"

__all__ = ["RoleEvidence", "RoundEvidence", "round_evidence", "with_round_reasons"]


@dataclass
class RoleEvidence:
    """One role's failures in a round (``reasons`` per failure) and its train/val examples."""

    role: str
    failures: int = 0
    reasons: list[list[str]] = field(default_factory=list)
    failing: list[dspy.Example] = field(default_factory=list)
    passing: list[dspy.Example] = field(default_factory=list)

    def examples(self, limit: int) -> list[dspy.Example]:
        """Up to ``limit`` failures and as many passing controls, in stored (work key) order."""
        failing = self.failing[:limit]
        return failing + self.passing[:len(failing)]


@dataclass
class RoundEvidence:
    """Per-role evidence of one round, and the round's totals."""

    roles: dict[str, RoleEvidence]
    tasks: int = 0
    dialogues: int = 0
    rejections: int = 0
    lm_failures: int = 0  # rejections caused by LM calls that failed: attributed to no role

    def counts(self) -> dict[str, int]:
        return {name: ev.failures for name, ev in self.roles.items()}


def with_round_reasons(metric: Metric) -> Metric:
    """``metric`` whose failing feedback also quotes the reasons the round rejected the item for.

    The fresh feedback says what is wrong with the candidate's output now; the stored reasons are the
    evidence the loop selected the item on (what the engine's checkers said when it was synthesized).
    """

    def metric_with_reasons(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                            pred_trace: Any = None) -> dspy.Prediction:
        result = metric(gold, pred, trace, pred_name, pred_trace)
        reasons = list(gold.get("round_reasons") or [])
        if not isinstance(result, dspy.Prediction) or score_of(result) >= 1.0 or not reasons:
            return result
        quoted = "\n".join(f"- {r}" for r in dict.fromkeys(reasons))
        return dspy.Prediction(score=result.score, feedback=f"{result.feedback}\nWhen this item was synthesized, "
                                                            f"the data engine rejected it because:\n{quoted}")

    return metric_with_reasons


def _task_id(domain: Domain, config: EngineConfig, key: str) -> str:
    return f"{domain.name}_{config.seed}_{key.replace('/', '_')}"


def _generator_example(domain: Domain, config: EngineConfig, rec: TaskRecord, reasons: list[str]) -> dspy.Example:
    """The generator's first-attempt inputs for ``rec``, re-sampled exactly as the engine sampled them."""
    entities = sample_entities(domain, random.Random(f"{config.seed}:{rec.work_key}:0"), k=config.entities_k,
                               max_chars=config.entities_chars)
    return dspy.Example(plan=rec.plan, entities=entities, task_id=_task_id(domain, config, rec.work_key),
                        round_reasons=reasons, work_key=rec.work_key).with_inputs("plan", "entities", "task_id")


def _user_blamed(task: Task, rec: DialogueRecord, domain: Domain) -> list[str]:
    return [f.reason for f in user_findings(task, rec.messages, domain) if f.decisive]


def round_evidence(domain: Domain, run_dir: str | Path, config: EngineConfig, *, blank: bool = False,
                   roles: Iterable[str] = ()) -> RoundEvidence:
    """Read a finished round's run directory and attribute every rejection to a role (module docstring).

    Args:
        domain: The round's domain.
        run_dir: The round's run directory.
        config: The `EngineConfig` the round ran with (its seed and entity settings re-sample inputs).
        blank: The ablation: stored reasons are dropped (``round_reasons`` stays empty).
        roles: Roles to build examples for (all when empty; counts are always built for all).
    """
    wanted = set(roles) or {"generator", "task_validator", "user", "assistant", "trajectory_validator"}
    store = RunStore.open(run_dir, read_only=True)
    try:
        tasks = sorted(store.iter_records("task"), key=lambda r: r.work_key)
        dialogues = sorted(store.iter_records("dialogue"), key=lambda r: r.work_key)
    finally:
        store.close()
    ev = {name: RoleEvidence(name) for name in ("generator", "task_validator", "user", "assistant",
                                                 "trajectory_validator")}
    by_id = {rec.task.id: rec for rec in tasks if rec.task is not None}

    def fail(role: str, reasons: list[str], example: dspy.Example | None) -> None:
        ev[role].failures += 1
        ev[role].reasons.append(list(reasons))
        if example is not None and role in wanted:
            ev[role].failing.append(example)

    lm_failures = 0
    for rec in tasks:
        reasons = [] if blank else list(rec.reasons)
        if not rec.accepted and _lm_failure(rec):
            lm_failures += 1  # an LM that did not answer: no prompt to fix
            continue
        report = execution_check(domain, rec.task) if rec.task is not None and not rec.accepted else None
        if rec.accepted:
            if "generator" in wanted:
                ev["generator"].passing.append(_generator_example(domain, config, rec, []))
            if "task_validator" in wanted and rec.task is not None:
                ev["task_validator"].passing.append(_validator_example(domain, rec, True, []))
        elif rec.stage == Stage.VALIDATE_TASK and report is not None and report.passed and not rec.null_pass:
            fail("task_validator", reasons, _validator_example(domain, rec, True, []))
        else:
            fail("generator", reasons, _generator_example(domain, config, rec, reasons))
            if report is not None and not report.passed and "task_validator" in wanted:
                ev["task_validator"].passing.append(_validator_example(domain, rec, False, list(report.reasons)))
    for rec in dialogues:
        task_rec = by_id.get(rec.task_id)
        if task_rec is None or task_rec.task is None:
            continue
        if not rec.accepted and any(_EXCEPTION.match(r) or r.startswith(_UNAVAILABLE) for r in rec.reasons):
            lm_failures += 1
            continue
        task = task_rec.task
        reasons = [] if blank else list(dict.fromkeys(rec.reasons))
        verdict = rec.validator
        user_reasons = _user_blamed(task, rec, domain)
        truth = rec.checker_passed and not user_reasons
        said = bool(verdict and verdict.passed and verdict.blame != "user")
        episode = dspy.Example(task=task, round_reasons=reasons, work_key=rec.work_key).with_inputs("task")
        calibration = _trajectory_example(domain, task_rec, rec, truth, user_reasons)
        if said != truth and verdict is not None:
            fail("trajectory_validator", reasons, calibration)
        elif "trajectory_validator" in wanted:
            ev["trajectory_validator"].passing.append(calibration)
        if rec.accepted:
            for role in ("user", "assistant"):
                if role in wanted:
                    ev[role].passing.append(episode)
        elif user_reasons or (verdict is not None and verdict.blame == "user"):
            fail("user", reasons, episode)
        elif verdict is not None and verdict.blame == "task":
            fail("generator", reasons, _generator_example(domain, config, task_rec, reasons))
        elif not rec.checker_passed:
            fail("assistant", reasons, episode)
    rejections = sum(1 for r in tasks if not r.accepted) + sum(1 for d in dialogues if not d.accepted)
    return RoundEvidence(roles=ev, tasks=len(tasks), dialogues=len(dialogues), rejections=rejections,
                         lm_failures=lm_failures)


def _lm_failure(rec: TaskRecord) -> bool:
    """A task lost to an LM call that failed after its retries (the engine stores the exception's text)."""
    if rec.stage == Stage.VALIDATE_TASK and rec.validation is None:
        return True
    return rec.stage == Stage.GENERATE and bool(rec.reasons) and bool(_EXCEPTION.match(rec.reasons[0]))


def _validator_example(domain: Domain, rec: TaskRecord, passed: bool, truth: list[str]) -> dspy.Example:
    return dspy.Example(domain=domain, task=rec.task, plan=rec.plan, expected_passed=passed,
                        expected_blame=None if passed else "task", truth_reasons=truth,
                        work_key=rec.work_key).with_inputs("domain", "task", "plan")


def _trajectory_example(domain: Domain, task_rec: TaskRecord, rec: DialogueRecord, truth: bool,
                        user_reasons: list[str]) -> dspy.Example:
    blame = None if truth else ("user" if user_reasons else "assistant")
    truth_reasons = user_reasons + ([] if rec.checker_passed else [rec.checker_feedback])
    return dspy.Example(domain=domain, task=task_rec.task, messages=rec.messages, plan=task_rec.plan,
                        checker_feedback=rec.checker_feedback, expected_passed=truth, expected_blame=blame,
                        truth_reasons=truth_reasons, work_key=rec.work_key
                        ).with_inputs("domain", "task", "messages", "plan", "checker_feedback")
