"""Workflow evolution: the engine adjusts its own settings from a run's failure statistics, within bounds.

Plan evolution changes *what* the engine synthesizes; workflow evolution changes *how*: how many
repair rounds a rejected draft gets, how many episodes a verified task is rolled out, how strictly
null-pass tasks are treated, how hot the LMs sample. Each proposal is a `WorkflowChange` that names
the knob, its old and new value and the statistic that motivated it, is clamped to declared
`WorkflowBounds` (so evolution can never, say, loosen reward-integrity checks below a floor), and is
recorded with its measured effect in the run manifest (``notes["workflow_evolution"]``), so every
setting of every run can be traced back to the evidence that chose it.

Knobs and where they land:

- ``max_repairs`` and ``episodes_per_task``: `EngineConfig` fields.
- ``validator_strictness`` (0..2): 0 accepts null-pass tasks, 1 drops them after validation
  (``EngineConfig.reject_null_pass``, the default), 2 also makes them a *validation* failure
  (``TaskValidator(strict=True)``) so the reason goes back to the generator and the draft is
  repaired instead of dropped. Level 2 lives on the roles (`apply_to_roles`), since `EngineConfig`
  has no field for it.
- ``temperature``: **record-only**. The engine has no sampling-temperature knob (each role's LM
  carries its own settings), so the change is recorded with ``applied=False`` and not enforced.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from eigendspy.core.domain import Domain
from eigendspy.core.orchestrator import run_sync
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore, RunSummary
from eigendspy.optimizers.run_yield import RunYield, effect_of

__all__ = ["FailureStats", "FloatBounds", "IntBounds", "RunYield", "WorkflowBounds", "WorkflowChange",
           "WorkflowEvolutionReport", "WorkflowStep", "apply_changes", "apply_to_roles", "evolve_workflow",
           "failure_stats", "propose_workflow_changes", "record_changes", "strictness_of"]

Knob = Literal["max_repairs", "episodes_per_task", "validator_strictness", "temperature"]
NOTES_KEY = "workflow_evolution"
# Evidence thresholds (shares of the run's tasks or rejected dialogues) that trigger a proposal.
REPAIRABLE_SHARE = 0.25
NULL_PASS_SHARE = 0.2
DUPLICATE_SHARE = 0.2
ASSISTANT_BLAME_SHARE = 0.5
LOW_DIALOGUE_YIELD = 0.5
DEFAULT_TEMPERATURE = 0.7
_LM_FAILURE = re.compile(r"^(validator unavailable: )?([\w.]+\.)?[A-Z]\w*(Error|Exception|Timeout\w*)\b")


class IntBounds(BaseModel):
    """Inclusive range of an integer knob."""

    lo: int
    hi: int

    @model_validator(mode="after")
    def _ordered(self) -> IntBounds:
        if self.lo > self.hi:
            raise ValueError(f"lo ({self.lo}) > hi ({self.hi})")
        return self

    def clamp(self, value: int) -> int:
        return max(self.lo, min(self.hi, value))


class FloatBounds(IntBounds):
    """Inclusive range of a float knob."""

    lo: float  # type: ignore[assignment]
    hi: float  # type: ignore[assignment]

    def clamp(self, value: float) -> float:  # type: ignore[override]
        return max(self.lo, min(self.hi, value))


class WorkflowBounds(BaseModel):
    """Declared range of every knob; proposals never leave it.

    ``validator_strictness`` defaults to at least 1: evolution may make null-pass handling stricter,
    never let gameable tasks into the data (the checker is the RL reward).
    """

    max_repairs: IntBounds = IntBounds(lo=0, hi=6)
    episodes_per_task: IntBounds = IntBounds(lo=1, hi=4)
    validator_strictness: IntBounds = IntBounds(lo=1, hi=2)
    temperature: FloatBounds = FloatBounds(lo=0.0, hi=1.2)
    repair_step: int = Field(2, ge=1, description="How many repair rounds one proposal adds")
    temperature_step: float = Field(0.2, gt=0)

    @model_validator(mode="after")
    def _levels(self) -> WorkflowBounds:
        if not 0 <= self.validator_strictness.lo <= self.validator_strictness.hi <= 2:
            raise ValueError("validator_strictness levels are 0, 1 and 2")
        return self


class WorkflowChange(BaseModel):
    """One proposed setting change and the evidence for it (``old``/``new`` are the knob's values)."""

    knob: Knob
    old: int | float
    new: int | float
    reason: str
    applied: bool = Field(True, description="False for record-only knobs (temperature)")


class FailureStats(BaseModel):
    """What a `RunSummary` says about where items were lost (the evidence behind proposals)."""

    tasks: int = 0
    tasks_accepted: int = 0
    repairable_rejections: int = Field(0, description="Rejected at generate/validate_task after all repair rounds, "
                                                      "for content reasons (not LM failures)")
    null_pass_rejections: int = 0
    duplicate_rejections: int = 0
    lm_failures: int = 0
    dialogues: int = 0
    dialogues_accepted: int = 0
    dialogue_blame: dict[str, int] = Field(default_factory=dict)
    example_reason: str | None = None

    @property
    def dialogue_yield(self) -> float:
        return self.dialogues_accepted / self.dialogues if self.dialogues else 0.0


def failure_stats(summary: RunSummary) -> FailureStats:
    """Failure statistics of a run; reasons are classified from the summary's ``top_reasons``.

    Reasons often name entities (so they rarely repeat): for exact counts pass a summary made with a
    large ``top_n`` (`evolve_workflow` does). Stage counts are always exact.
    """
    stats = FailureStats()
    task, dialogue = summary.kinds.get("task"), summary.kinds.get("dialogue")
    if task is not None:
        stats.tasks, stats.tasks_accepted = task.total, task.accepted
        for rc in task.top_reasons:
            if rc.reason.startswith("near-duplicate"):
                stats.duplicate_rejections += rc.count
            elif "null policy" in rc.reason and "passes this task's checker" in rc.reason:  # the engine's filter
                stats.null_pass_rejections += rc.count
            elif _LM_FAILURE.match(rc.reason):
                stats.lm_failures += rc.count
            elif stats.example_reason is None and not rc.reason.startswith("overlaps held-out"):
                stats.example_reason = rc.reason
        content_stage = task.stages.get("validate_task", 0) + task.stages.get("generate", 0)
        stats.repairable_rejections = max(0, content_stage - stats.lm_failures)
    if dialogue is not None:
        stats.dialogues, stats.dialogues_accepted = dialogue.total, dialogue.accepted
        stats.dialogue_blame = dict(dialogue.blame)
    return stats


def strictness_of(config: EngineConfig, roles: Roles | None = None) -> int:
    """The current validator strictness level (0..2) of a config (and its roles, for level 2)."""
    if not config.reject_null_pass:
        return 0
    return 2 if roles is not None and getattr(roles.task_validator, "strict", False) else 1


def propose_workflow_changes(summary: RunSummary, config: EngineConfig, bounds: WorkflowBounds | None = None, *,
                             roles: Roles | None = None, temperature: float | None = None) -> list[WorkflowChange]:
    """Settings changes the failure statistics call for, each clamped to ``bounds`` (none at a bound).

    Rules (why each knob moves):

    - many tasks rejected at generation/validation after every repair round, for content reasons
      (execution or judge findings, not LM failures) -> ``max_repairs`` up: the reasons are
      actionable feedback the generator had no more rounds to use;
    - low dialogue yield with most rejected dialogues blamed on the assistant -> more
      ``episodes_per_task``: the tasks are sound, a single rollout is a coin flip, and each extra
      episode is another chance for an accepted dialogue (the failed ones are RL signal);
    - many tasks dropped by the engine's null-pass filter -> ``validator_strictness`` 2: make it a
      validation failure, so the generator gets the reason and repairs the draft;
    - many near-duplicate rejections -> ``temperature`` up (record-only, see the module doc).

    Args:
        summary: The run's summary (`RunStore.summary()`).
        config: The settings the run used.
        bounds: Knob ranges (defaults: `WorkflowBounds()`).
        roles: The roles the run used (to read the task validator's strictness).
        temperature: The LMs' sampling temperature, if known (else `DEFAULT_TEMPERATURE` is assumed).
    """
    bounds = bounds or WorkflowBounds()
    stats = failure_stats(summary)
    level = strictness_of(config, roles)
    current: dict[str, Any] = {"max_repairs": config.max_repairs, "episodes_per_task": config.episodes_per_task,
                               "validator_strictness": level,
                               "temperature": temperature if temperature is not None else DEFAULT_TEMPERATURE}
    changes: dict[str, WorkflowChange] = {}
    for knob, value in current.items():
        if knob == "temperature" and temperature is None:
            continue  # an assumed temperature is no setting to correct
        inside = getattr(bounds, knob).clamp(value)
        if inside != value:  # a setting outside the declared bounds is brought back first
            changes[knob] = WorkflowChange(knob=knob, old=value, new=inside, applied=knob != "temperature",
                                           reason=f"{knob}={value} is outside the declared bounds "
                                                  f"[{getattr(bounds, knob).lo}, {getattr(bounds, knob).hi}]")

    def propose(knob: Knob, step: float, reason: str) -> None:
        old = changes[knob].new if knob in changes else current[knob]
        new = getattr(bounds, knob).clamp(round(old + step, 3))
        if new > old:  # every rule raises its knob; at the upper bound it proposes nothing
            first = changes.get(knob)
            changes[knob] = WorkflowChange(knob=knob, old=current[knob], new=new, applied=knob != "temperature",
                                           reason=f"{first.reason}; {reason}" if first else reason)

    if stats.tasks and stats.repairable_rejections / stats.tasks >= REPAIRABLE_SHARE:
        propose("max_repairs", bounds.repair_step,
                f"{stats.repairable_rejections}/{stats.tasks} tasks were rejected after all {config.max_repairs} "
                f"repair rounds for repairable reasons (e.g. {(stats.example_reason or '-')[:240]!r})")
    rejected = stats.dialogues - stats.dialogues_accepted
    blamed = stats.dialogue_blame.get("assistant", 0)
    if (stats.dialogues and stats.dialogue_yield < LOW_DIALOGUE_YIELD and rejected
            and blamed / rejected >= ASSISTANT_BLAME_SHARE):
        propose("episodes_per_task", 1,
                f"dialogue yield {stats.dialogue_yield:.2f} with {blamed}/{rejected} rejections blamed on the "
                "assistant: the tasks are sound, more rollouts per task give more accepted dialogues")
    if stats.tasks and stats.null_pass_rejections / stats.tasks >= NULL_PASS_SHARE:
        propose("validator_strictness", 2 - level,
                f"{stats.null_pass_rejections}/{stats.tasks} tasks were dropped by the null-pass filter after "
                "validation: make it a validation failure so the generator repairs them")
    if stats.tasks and stats.duplicate_rejections / stats.tasks >= DUPLICATE_SHARE:
        propose("temperature", bounds.temperature_step,
                f"{stats.duplicate_rejections}/{stats.tasks} tasks were near-duplicates: sample more diversely "
                "(record-only: the engine has no temperature knob)")
    return list(changes.values())


def apply_changes(config: EngineConfig, changes: list[WorkflowChange]) -> EngineConfig:
    """A new `EngineConfig` with the applied changes (strictness maps to ``reject_null_pass``)."""
    update: dict[str, Any] = {}
    for change in changes:
        if not change.applied:
            continue
        if change.knob in ("max_repairs", "episodes_per_task"):
            update[change.knob] = int(change.new)
        elif change.knob == "validator_strictness":
            update["reject_null_pass"] = int(change.new) >= 1
    return config.model_copy(update=update)


def apply_to_roles(roles: Roles, changes: list[WorkflowChange]) -> Roles:
    """Roles with strictness level 2 (or back below it) set on a copy of the task validator."""
    level = next((int(c.new) for c in reversed(changes) if c.knob == "validator_strictness" and c.applied), None)
    if level is None:
        return roles
    validator = copy.copy(roles.task_validator)  # shares the judge predictor and its LM
    validator.strict = level >= 2
    return replace(roles, task_validator=validator)


def record_changes(store: RunStore, changes: list[WorkflowChange], effect: dict[str, Any] | None, *,
                   status: Literal["proposed", "applied"] = "applied", source_run: str | None = None) -> None:
    """Append each change (with the measured ``effect`` of the batch) to ``notes["workflow_evolution"]``."""
    entries = store.manifest.notes.setdefault(NOTES_KEY, [])
    at = datetime.now(UTC).isoformat(timespec="seconds")
    knobs = [c.knob for c in changes]
    for change in changes:
        entries.append({**change.model_dump(mode="json"), "source_run": source_run,
                        "status": status if change.applied or status == "proposed" else "record-only",
                        "applied_together": knobs, "effect": effect, "recorded_at": at})
    store.write_manifest()


class WorkflowStep(BaseModel):
    """One engine run of a workflow evolution: its yields, its settings, what it led to."""

    run: RunYield
    config: dict[str, Any]
    strictness: int
    changes: list[WorkflowChange] = Field(default_factory=list, description="Proposed from this run")
    effect: dict[str, Any] | None = Field(None, description="Of the previous step's changes, measured on this run")


class WorkflowEvolutionReport(BaseModel):
    """All runs of a workflow evolution, in order."""

    steps: list[WorkflowStep]

    def to_markdown(self) -> str:
        lines = ["# Workflow evolution", "", "| run | max_repairs | episodes | strictness | task yield | "
                 "dialogue yield | dialogues/task | LM calls |", "|---|---|---|---|---|---|---|---|"]
        for i, step in enumerate(self.steps):
            r, c = step.run, step.config
            lines.append(f"| {i} | {c['max_repairs']} | {c['episodes_per_task']} | {step.strictness} | "
                         f"{r.task_yield:.2f} | {r.dialogue_yield:.2f} | {r.dialogues_per_task:.2f} | {r.lm_calls} |")
        for i, step in enumerate(self.steps):
            for ch in step.changes:
                lines.append(f"- after run {i}: `{ch.knob}` {ch.old} -> {ch.new}"
                             f"{'' if ch.applied else ' (record-only)'}: {ch.reason}")
        return "\n".join(lines) + "\n"


def _run_once(domain: Domain, roles: Roles, config: EngineConfig, run_dir: Path) -> tuple[RunStore, RunSummary]:
    """Run the engine into a new ``run_dir``; the store is returned open so changes can be recorded."""
    store = RunStore.create(run_dir, RunManifest(config=config, seed=config.seed, domain=domain.name))
    try:
        run_sync(DataEngine(domain, roles, store, config).run())
        return store, store.summary(top_n=100_000)  # every reason: the statistics count them by kind
    except BaseException:
        store.close()
        raise


def evolve_workflow(domain: Domain, roles: Roles, config: EngineConfig, out_root: str | Path, rounds: int = 2,
                    bounds: WorkflowBounds | None = None) -> WorkflowEvolutionReport:
    """Run, propose, apply, rerun: ``rounds`` engine runs into ``out_root/run{k}`` (same seed each time).

    Run k's manifest records the changes proposed from it (``status="proposed"``); run k+1's records
    the same changes as ``"applied"`` with their measured effect (yields before and after). Stops
    early when the statistics call for no change. Writes ``out_root/workflow_evolution.{json,md}``.
    Every run uses the same seed, so the difference between two runs is the changed settings.

    Args:
        domain: The domain to synthesize for.
        roles: The role modules of the first run (strictness level 2 is applied to copies).
        config: The first run's settings.
        out_root: Parent folder of the run directories (``run0``, ``run1``, ... must not exist yet).
        rounds: How many engine runs (2: baseline, then one set of changes).
        bounds: Knob ranges (defaults: `WorkflowBounds()`).

    Returns:
        The `WorkflowEvolutionReport` (one step per run).
    """
    out = Path(out_root)
    bounds = bounds or WorkflowBounds()
    steps: list[WorkflowStep] = []
    pending: list[WorkflowChange] = []
    for k in range(rounds):
        store, summary = _run_once(domain, roles, config, out / f"run{k}")
        try:
            step = WorkflowStep(run=RunYield.of(store, summary), config=config.model_dump(mode="json"),
                                strictness=strictness_of(config, roles))
            if steps:
                step.effect = effect_of(steps[-1].run, step.run)
                record_changes(store, pending, step.effect, source_run=steps[-1].run.run_id)
            if k + 1 < rounds:
                step.changes = propose_workflow_changes(summary, config, bounds, roles=roles)
                if step.changes:
                    record_changes(store, step.changes, None, status="proposed")
        finally:
            store.close()
        steps.append(step)
        if not step.changes:
            break
        pending = step.changes
        config, roles = apply_changes(config, pending), apply_to_roles(roles, pending)
    report = WorkflowEvolutionReport(steps=steps)
    out.mkdir(parents=True, exist_ok=True)
    (out / "workflow_evolution.json").write_text(report.model_dump_json(indent=2))
    (out / "workflow_evolution.md").write_text(report.to_markdown())
    return report
