"""What an `evolve` run reports and leaves in its run directory.

Why a typed report: an optimizer that silently returns the program it was given looks exactly like
one that succeeded, so the report carries an explicit ``status`` with a message, the held-out
scores before and after, the per-iteration curve, proposal counts and LM cost — and the same
report is written as JSON (for tools), markdown (for people) and a PNG score curve.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import dspy
from pydantic import BaseModel, Field

from eigendspy.engine.config import load_keeping_lms

Status = Literal["improved", "unchanged", "all_proposals_failed"]


class ModelUsage(BaseModel):
    """LM calls, tokens and cost (0 when the provider reports none)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


class LMUsage(ModelUsage):
    """Usage over a phase, in total and per model string; ``complete`` is False when history was truncated."""

    by_model: dict[str, ModelUsage] = Field(default_factory=dict)
    complete: bool = True
    note: str = ""

    def merge(self, other: LMUsage) -> None:
        """Add ``other``'s counts (totals and per model) into this one."""
        for mine, theirs in [(self, other), *((self.by_model.setdefault(k, ModelUsage()), v)
                                              for k, v in other.by_model.items())]:
            mine.calls += theirs.calls
            mine.prompt_tokens += theirs.prompt_tokens
            mine.completion_tokens += theirs.completion_tokens
            mine.cost += theirs.cost
        self.complete = self.complete and other.complete
        self.note = self.note or other.note


class EvalScores(BaseModel):
    """Mean metric score over a set, per-item scores, and how many items raised."""

    mean: float
    scores: list[float] = Field(default_factory=list)
    errors: int = 0
    first_error: str | None = None


class CurvePoint(BaseModel):
    """One point of the optimizer's own progress (candidate or trial score on its selection set)."""

    step: int
    metric_calls: int | None = None
    score: float
    best: float
    label: str = ""


class InstructionChange(BaseModel):
    """A predictor's instruction and demo count before and after compilation."""

    predictor: str
    before: str
    after: str
    demos_before: int = 0
    demos_after: int = 0

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.demos_before != self.demos_after


class EvolveReport(BaseModel):
    """The outcome of one `evolve` run.

    ``before``/``after`` are measured on the held-out ``valset`` (the optimizer never sees it);
    ``curve`` is the optimizer's own progress on its selection set (``curve_source`` says which).
    """

    role: str
    optimizer: Literal["gepa", "miprov2", "bootstrap"]
    budget: str | int
    seed: int
    status: Status
    message: str
    before: EvalScores
    after: EvalScores
    trainset_size: int
    valset_size: int
    curve: list[CurvePoint] = Field(default_factory=list)
    curve_source: str = ""
    proposals: int = 0
    failed_proposals: int = 0
    accepted_proposals: int = 0
    proposal_errors: list[str] = Field(default_factory=list)
    program_changed: bool = False
    changes: list[InstructionChange] = Field(default_factory=list)
    optimizer_usage: LMUsage = Field(default_factory=LMUsage)
    evaluation_usage: LMUsage = Field(default_factory=LMUsage)
    optimize_s: float = 0.0
    runtime_s: float = 0.0
    artifacts: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @property
    def improvement(self) -> float:
        return self.after.mean - self.before.mean

    def to_markdown(self) -> str:
        """A human-readable summary: verdict, scores, proposals, cost, curve and instruction changes."""
        u = self.optimizer_usage
        lines = [
            f"# evolve: {self.role} ({self.optimizer}, budget {self.budget})",
            "",
            f"**Status: {self.status}** — {self.message}",
            "",
            "| | held-out mean | items | errors |",
            "|---|---|---|---|",
            f"| before | {self.before.mean:.3f} | {self.valset_size} | {self.before.errors} |",
            f"| after | {self.after.mean:.3f} | {self.valset_size} | {self.after.errors} |",
            "",
            f"- proposals: {self.proposals} (failed {self.failed_proposals}, accepted {self.accepted_proposals})",
            f"- optimizer LM usage: {u.calls} calls, {u.prompt_tokens} prompt + {u.completion_tokens} completion "
            f"tokens, cost {u.cost:.4f}" + ("" if u.complete else f" (incomplete: {u.note})"),
            f"- time: optimize {self.optimize_s:.1f} s, total {self.runtime_s:.1f} s; seed {self.seed}; "
            f"trainset {self.trainset_size}",
        ]
        lines += [f"- proposal error: {e}" for e in self.proposal_errors[:3]]
        lines += [f"- note: {n}" for n in self.notes]
        if self.curve:
            lines += ["", f"## Curve ({self.curve_source})", "", "| step | metric calls | score | best | |",
                      "|---|---|---|---|---|"]
            lines += [f"| {p.step} | {p.metric_calls if p.metric_calls is not None else ''} | {p.score:.3f} | "
                      f"{p.best:.3f} | {p.label} |" for p in self.curve]
        for change in self.changes:
            if change.changed:
                lines += ["", f"## {change.predictor}", "", "Before:", "", _quote(change.before), "", "After:", "",
                          _quote(change.after)]
                if change.demos_before != change.demos_after:
                    lines += ["", f"Demos: {change.demos_before} -> {change.demos_after}"]
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in (text or "(empty)").splitlines())


def role_name(program: dspy.Module) -> str:
    """The artifact name of a program: its ``evolved_role`` name, else its class name in snake case."""
    evolved = getattr(program, "evolved_role", None)
    if evolved is not None:
        return evolved[0]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(program).__name__).lower()


def artifact_module(program: dspy.Module) -> dspy.Module:
    """The module whose state is saved: the evolved role inside a program under test, else the program."""
    evolved = getattr(program, "evolved_role", None)
    return evolved[1] if evolved is not None else program


def without_lms(module: dspy.Module) -> dspy.Module:
    """A copy with no per-predictor LMs: LMs are runtime choices, not artifacts (and a custom engine,
    like the scripted one, need not be serializable)."""
    clone = module.deepcopy()
    for _, predictor in clone.named_predictors():
        predictor.lm = None
    return clone


def save_compiled(program: dspy.Module, out_dir: str | Path, role: str | None = None) -> tuple[Path, Path]:
    """Save with dspy's own JSON state: ``compiled/<role>.v{n}.json`` (next free n) and ``<role>.json``.

    Returns:
        (versioned path, latest path); the engine loads the latest, the versions stay for audit.
    """
    role = role or role_name(program)
    folder = Path(out_dir) / "compiled"
    folder.mkdir(parents=True, exist_ok=True)
    version = 1
    while (folder / f"{role}.v{version}.json").exists():
        version += 1
    module = without_lms(artifact_module(program))
    versioned, latest = folder / f"{role}.v{version}.json", folder / f"{role}.json"
    module.save(str(versioned))
    module.save(str(latest))
    return versioned, latest


def load_compiled(program: dspy.Module, path: str | Path, role: str | None = None) -> dspy.Module:
    """Load a compiled state into ``program`` (in place, also returned), keeping its own LMs.

    The engine's roles load the same files with `Roles.load_compiled`; both use `load_keeping_lms`.

    Args:
        program: A program of the same structure (e.g. ``Assistant(lm=my_lm)``, or the program
            under test, whose evolved role is loaded).
        path: A ``.json`` file, or a ``compiled/`` folder holding ``<role>.json``.
        role: The role to load from a folder (default: ``role_name(program)``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / f"{role or role_name(program)}.json"
    load_keeping_lms(artifact_module(program), path)
    return program


def plot_curve(report: EvolveReport, path: str | Path) -> Path:
    """A PNG of the optimizer's curve with the held-out before/after scores (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if report.curve:
        use_calls = all(p.metric_calls is not None for p in report.curve)
        xs = [p.metric_calls if use_calls else p.step for p in report.curve]
        ax.plot(xs, [p.score for p in report.curve], "o", alpha=0.5, label="candidate / trial")
        ax.step(xs, [p.best for p in report.curve], where="post", label="best so far")
        ax.set_xlabel("metric calls" if use_calls else "trial")
    else:
        ax.set_xticks([])
    ax.axhline(report.before.mean, color="grey", linestyle="--", label=f"held-out before {report.before.mean:.2f}")
    ax.axhline(report.after.mean, color="green", linestyle=":", label=f"held-out after {report.after.mean:.2f}")
    ax.set_ylabel("mean metric score")
    ax.set_ylim(-0.05, 1.05 if max([1.0, *(p.score for p in report.curve)]) <= 1.0 else None)
    ax.set_title(f"{report.role}: {report.optimizer} ({report.status})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_run(report: EvolveReport, program: dspy.Module, out_dir: str | Path) -> EvolveReport:
    """Save the compiled role, ``report.json``, ``report.md`` and ``score_curve.png`` into ``out_dir``.

    The versioned compiled file gets its report next to it (``<role>.v{n}.report.json``), so
    earlier runs stay auditable when ``report.*`` is overwritten by the latest run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    versioned, latest = save_compiled(program, out, report.role)
    report.artifacts.update(compiled=str(latest), compiled_version=str(versioned))
    plot = plot_curve(report, out / "score_curve.png")
    report.artifacts.update(report_json=str(out / "report.json"), report_md=str(out / "report.md"), plot=str(plot))
    text = json.dumps(report.model_dump(mode="json"), indent=2)
    (out / "report.json").write_text(text)
    versioned.with_suffix(".report.json").write_text(text)
    (out / "report.md").write_text(report.to_markdown())
    return report
