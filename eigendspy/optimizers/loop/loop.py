"""`evolve_loop`: synthesize -> learn from the round's failures -> recompile the weakest roles -> repeat.

Each round ``i`` is a normal, resumable run directory ``out/round_<i>/``:

1. the engine synthesizes a batch with the roles as the previous round left them (seed ``seed + i``);
2. the round's stored rejections are attributed to roles (`datasets.round_evidence`) and the roles
   with the largest shares are selected (`select.select_roles`);
3. each selected role is compiled with `evolve` (chosen optimizer and budget) on its failures, the
   metric's feedback carrying the round's rejection reasons, in pipeline order — a later role plays
   against the earlier ones' new programs; each result is saved by content hash in ``compiled/``;
4. optionally, workflow knobs are proposed for the next round (`workflow.propose`) and the previous
   round's proposal is kept or reverted on this round's measured yield (`workflow.decide`);
5. ``compiled/<role>.json`` then holds every role's current program (`Roles.load_compiled` reads it,
   so ``synth --compiled out/round_<i>/compiled`` reproduces the next round's roles), the run
   manifest records the versions used and made (``compiled`` + ``notes["evolve_loop"]``), and
   ``round.json`` marks the round complete.

Resume: a round with ``round.json`` is read back, not rerun; an interrupted round resumes its engine
run (the store skips stored work) and recompiles only roles without their ``<role>.evolve.json``
marker. Scripted LMs and seeded optimizers make a resumed loop end where an uninterrupted one does.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dspy

from eigendspy.core.domain import Domain
from eigendspy.core.orchestrator import run_sync
from eigendspy.engine.config import EngineConfig, Roles, load_keeping_lms
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore, atomic_write_text
from eigendspy.optimizers.evolve import evolve
from eigendspy.optimizers.loop.config import EvolveLoopConfig
from eigendspy.optimizers.loop.datasets import RoleEvidence, round_evidence, with_round_reasons
from eigendspy.optimizers.loop.report import CompiledRole, EvolveLoopReport, RoundReport
from eigendspy.optimizers.loop.select import rejection_shares, select_roles
from eigendspy.optimizers.loop.versions import compiled_versions, save_versioned
from eigendspy.optimizers.loop.workflow import WorkflowProposer, decide, propose, reverted, with_changes
from eigendspy.optimizers.metrics import (
    Metric,
    assistant_metric,
    blank_feedback,
    task_generator_metric,
    user_simulator_metric,
    validator_calibration_metric,
)
from eigendspy.optimizers.programs import AssistantEpisode, TaskGeneration, UserEpisode
from eigendspy.optimizers.report import EvolveReport
from eigendspy.optimizers.workflow import WorkflowChange

__all__ = ["LOOP_FILE", "LoopConfigMismatchError", "engine_config", "evolve_loop", "load_loop_config"]

LOOP_FILE = "loop.json"
NOTES_KEY = "evolve_loop"
Progress = Callable[[str, bool], None]


def engine_config(config: EvolveLoopConfig, round_index: int, knobs: dict[str, int]) -> EngineConfig:
    """Round ``round_index``'s engine settings: the loop's sizes, seed ``seed + round``, the current knobs."""
    return EngineConfig(domain=config.domain, data_dir=config.data_dir, seed=config.seed + round_index,
                        streams=config.streams, rounds=1,
                        tasks_per_round=math.ceil(config.tasks_per_round / config.streams),
                        episodes_per_task=knobs["episodes_per_task"], max_repairs=knobs["max_repairs"],
                        reject_null_pass=knobs["validator_strictness"] >= 1, held_out_split=config.held_out_split)


def _program(role: str, domain: Domain, roles: Roles) -> tuple[dspy.Module, Metric] | None:
    """The program under test and metric of a role (None: the role is no DSPy module, e.g. a gold teacher)."""
    module = getattr(roles, role)
    if not isinstance(module, dspy.Module):
        return None
    module = module.deepcopy()
    if role == "generator":
        return TaskGeneration(domain, module), task_generator_metric(domain)
    if role == "user":
        return UserEpisode(domain, module), user_simulator_metric(domain)  # oracle assistant: user blame only
    if role == "assistant":
        return AssistantEpisode(domain, module, user=roles.user), assistant_metric(domain)
    return module, validator_calibration_metric()


def _compile_role(role: str, evidence: RoleEvidence, domain: Domain, roles: Roles, config: EvolveLoopConfig,
                  folder: Path, seed: int, reflection_lm: dspy.LM | None, task_lm: dspy.LM | None
                  ) -> CompiledRole | None:
    """Compile one role on its evidence (or read back a compiled one on resume) and load it into ``roles``."""
    marker = folder / f"{role}.evolve.json"
    if marker.is_file():
        done = CompiledRole.model_validate_json(marker.read_text())
        load_keeping_lms(getattr(roles, role), folder / f"{role}.{done.version}.json")
        return done
    built = _program(role, domain, roles)
    examples = evidence.examples(config.max_examples)
    if built is None or not evidence.failing:
        return None
    program, metric = built
    metric = blank_feedback(metric) if config.blank_feedback else with_round_reasons(metric)
    train, val = examples[0::2], examples[1::2] or examples[0::2]
    compiled, report = evolve(program, train, val, metric, optimizer=config.optimizer, budget=config.budget,
                              reflection_lm=reflection_lm, task_lm=task_lm, seed=seed, role=role,
                              num_threads=config.num_threads)
    version, latest = save_versioned(compiled, folder, role)
    load_keeping_lms(getattr(roles, role), latest)
    done = _compiled_role(role, version, folder / f"{role}.{version}.json", report)
    atomic_write_text(folder / f"{role}.report.json", report.model_dump_json(indent=2))
    atomic_write_text(marker, done.model_dump_json(indent=2))
    return done


def _compiled_role(role: str, version: str, path: Path, report: EvolveReport) -> CompiledRole:
    return CompiledRole(role=role, version=version, path=str(path), status=report.status, before=report.before.mean,
                        after=report.after.mean, trainset=report.trainset_size, valset=report.valset_size,
                        message=report.message)


def _round_roles(base: Roles, previous: Path | None, knobs: dict[str, int]) -> Roles:
    """A private copy of the base roles with the previous round's compiled programs and the strictness knob."""
    roles = copy.deepcopy(base)
    if previous is not None:
        roles.load_compiled(previous)
    roles.task_validator.strict = knobs["validator_strictness"] >= 2
    return roles


class LoopConfigMismatchError(ValueError):
    """A resume asked for other settings than the loop directory was run with."""


def _check_loop_file(out: Path, config: EvolveLoopConfig, resume: bool) -> None:
    path = out / LOOP_FILE
    if path.exists():
        stored = EvolveLoopConfig.model_validate_json(path.read_text())
        if not resume:
            raise FileExistsError(f"{out} holds an evolve-loop run; resume it or choose another directory")
        if stored.model_dump(exclude={"rounds"}) != config.model_dump(exclude={"rounds"}):
            raise LoopConfigMismatchError(f"{out} was run with other settings ({path}); resume with the same "
                                          "settings (only --rounds may grow)")
    elif out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} is not empty; choose another directory")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, config.model_dump_json(indent=2))


def evolve_loop(domain: Domain, roles: Roles, config: EvolveLoopConfig, out_dir: str | Path, *,
                reflection_lm: dspy.LM | None = None, task_lm: dspy.LM | None = None,
                workflow_lm: dspy.LM | None = None, resume: bool = False, plot: bool = True,
                progress: Progress | None = None) -> EvolveLoopReport:
    """Run ``config.rounds`` rounds of synthesize -> attribute failures -> recompile (module docstring).

    Args:
        domain: The domain to synthesize for.
        roles: The starting roles (each with its LM); never modified, every round works on a copy.
        config: Loop settings (`EvolveLoopConfig`).
        out_dir: The loop directory (``loop.json``, ``round_<i>/``, ``evolve_loop.{json,md,png}``).
        reflection_lm: GEPA's reflection LM (MIPROv2's prompt model).
        task_lm: Context LM for predictors without their own during compilation.
        workflow_lm: LM of the `WorkflowProposer` (``config.workflow``); without one the rules propose.
        resume: Continue an interrupted loop in ``out_dir``.
        plot: Also write the per-round yield plot.
        progress: Called with ``(event, ok)`` for every engine record and every loop step.

    Returns:
        The `EvolveLoopReport` (also saved as ``evolve_loop.json`` and ``evolve_loop.md``).
    """
    if config.optimizer == "gepa" and reflection_lm is None:
        raise ValueError("optimizer 'gepa' needs reflection_lm=... (the LM that rewrites instructions from feedback)")
    out = Path(out_dir)
    _check_loop_file(out, config, resume)
    emit = progress or (lambda event, ok: None)
    proposer = WorkflowProposer(lm=workflow_lm) if config.workflow and workflow_lm is not None else None
    loop = _Loop(domain, roles, config, proposer, reflection_lm, task_lm, emit)
    knobs = {"max_repairs": config.max_repairs, "episodes_per_task": config.episodes_per_task,
             "validator_strictness": 2 if getattr(roles.task_validator, "strict", False) else 1}
    pending: list[WorkflowChange] = []  # workflow changes the current round runs with, to be judged on its yield
    reports: list[RoundReport] = []
    previous: Path | None = None
    for i in range(config.rounds):
        folder = out / f"round_{i}"
        marker = folder / "round.json"
        if marker.is_file():
            report = RoundReport.model_validate_json(marker.read_text())
            emit(f"loop:round {i + 1} already complete", True)
        else:
            report = _run_round(loop, i, folder, previous, knobs, pending, reports)
        reports.append(report)
        previous = folder / "compiled" if report.versions_after else None
        knobs, pending = _next_knobs(report, knobs)
    final = EvolveLoopReport(out_dir=str(out), config=config, rounds=reports)
    if plot:
        final.plot = str(final.save_plot(out / "evolve_loop.png"))
    atomic_write_text(out / "evolve_loop.json", final.model_dump_json(indent=2))
    atomic_write_text(out / "evolve_loop.md", final.to_markdown())
    return final


def _next_knobs(report: RoundReport, knobs: dict[str, int]) -> tuple[dict[str, int], list[WorkflowChange]]:
    """The knobs of the next round: this round's, undone if its changes were reverted, plus its proposal."""
    knobs = dict(report.knobs) or dict(knobs)
    if report.workflow_decision is not None and report.workflow_decision.decision == "reverted":
        knobs = with_changes(knobs, reverted(report.workflow_decision.changes))
    changes = report.workflow_proposal.changes if report.workflow_proposal is not None else []
    return with_changes(knobs, changes), list(changes)


@dataclass
class _Loop:
    """What stays fixed over a loop's rounds."""

    domain: Domain
    base: Roles
    config: EvolveLoopConfig
    proposer: WorkflowProposer | None
    reflection_lm: dspy.LM | None
    task_lm: dspy.LM | None
    emit: Progress


def _run_round(loop: _Loop, i: int, folder: Path, previous: Path | None, knobs: dict[str, int],
               pending: list[WorkflowChange], done: list[RoundReport]) -> RoundReport:
    domain, config, emit = loop.domain, loop.config, loop.emit
    cfg = engine_config(config, i, knobs)
    roles = _round_roles(loop.base, previous, knobs)
    used = compiled_versions(previous) if previous is not None else {}
    manifest = RunManifest(config=cfg, seed=cfg.seed, domain=domain.name, data_dir=config.data_dir, compiled=used)
    store = RunStore.create(folder, manifest, resume=True)
    try:
        emit(f"loop:round {i + 1} synthesizing", True)
        run_sync(DataEngine(domain, roles, store, cfg, progress=emit).run())
        summary = store.summary(top_n=100_000)
        evidence = round_evidence(domain, folder, cfg, blank=config.blank_feedback, roles=config.roles)
        shares = rejection_shares(evidence.counts(), evidence.rejections)
        trainable = [r for r in config.roles if evidence.roles[r].failing]
        selected = select_roles(shares, config.roles, config.top_k, trainable)
        task, dialogue = summary.kinds.get("task"), summary.kinds.get("dialogue")
        tasks = task.total if task else 0
        slots = tasks * cfg.episodes_per_task
        accepted = dialogue.accepted if dialogue else 0
        report = RoundReport(round=i, run_dir=str(folder), seed=cfg.seed, tasks=tasks,
                             tasks_accepted=task.accepted if task else 0, dialogues=dialogue.total if dialogue else 0,
                             dialogues_accepted=accepted, dialogue_slots=slots,
                             accepted_yield=round(accepted / slots, 4) if slots else 0.0,
                             rejections=evidence.rejections, rejection_counts=evidence.counts(),
                             rejection_shares=shares, selected=selected, versions_used=used,
                             optimizer=config.optimizer, budget=config.budget, blank_feedback=config.blank_feedback,
                             knobs=dict(knobs))
        if done:
            report.effect = {"yield_before": done[-1].accepted_yield, "yield_after": report.accepted_yield,
                             "delta": round(report.accepted_yield - done[-1].accepted_yield, 4)}
            if pending:
                report.workflow_decision = decide(pending, done[-1].accepted_yield, report.accepted_yield)
        compiled_dir = folder / "compiled"
        for role in selected:
            emit(f"loop:round {i + 1} compiling {role}", True)
            made = _compile_role(role, evidence.roles[role], domain, roles, config, compiled_dir,
                                 config.seed + i, loop.reflection_lm, loop.task_lm)
            if made is not None:
                report.compiled.append(made)
        report.versions_after = _carry_forward(previous, compiled_dir, {c.role for c in report.compiled})
        if config.workflow and i + 1 < config.rounds:
            report.workflow_proposal = propose(summary, cfg, config.bounds, roles=roles, proposer=loop.proposer)
        store.manifest.notes[NOTES_KEY] = report.manifest_note()
        store.write_manifest()
    finally:
        store.close()
    atomic_write_text(folder / "round.json", report.model_dump_json(indent=2))
    emit(f"loop:round {i + 1} yield {report.accepted_yield:.2f}", True)
    return report


def _carry_forward(previous: Path | None, folder: Path, compiled: set[str]) -> dict[str, str]:
    """Copy the previous round's current programs of roles not compiled now into ``folder``; all versions."""
    if previous is not None:
        for role in compiled_versions(previous):
            if role not in compiled:
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write_text(folder / f"{role}.json", (previous / f"{role}.json").read_text())
    if not folder.is_dir() or not any(folder.glob("*.json")):
        return {}
    return compiled_versions(folder)


def load_loop_config(out_dir: str | Path) -> EvolveLoopConfig:
    """The config a loop directory was run with (``loop.json``)."""
    return EvolveLoopConfig.model_validate(json.loads((Path(out_dir) / LOOP_FILE).read_text()))
