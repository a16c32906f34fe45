"""Plan evolution, the seed paper's loop made measurable: K reflection rounds over N streams.

The data engine already runs the loop — after each round the `Reflector` rewrites every stream's
plan pair from that stream's blamed failures (`DataEngine._reflect`). This module runs it for K
rounds and reads back, per round and per stream, what the loop did: tasks and dialogues attempted
and accepted (stream yield), plan cells covered, gold-action Jaccard of the round's accepted
tasks, and the plan lineage (which plan each rewrite came from, and which fields it changed).

Mechanism: **the Reflector as its own DSPy module** rewrites the plans; GEPA is not run over the
plan pairs themselves. Why: a plan pair is per-stream, per-round *state* whose only evidence is its
own stream's failures, and scoring one candidate plan costs a full synthesize-and-roll-out round,
so GEPA over plan text would spend its whole budget evaluating single plans and would lose the
lineage and the cell structure the diversity report relies on. The Reflector's *instructions*, by
contrast, are shared by every stream and every round: they are the evolvable text. They can be
set here (`with_reflector_instructions`) and compiled like any other role's prompt by the
optimizers in `eigendspy.optimizers` with this report's yield as the metric, and one compiled
reflector then serves every later run.

`BlankReasonsReflector` is the ablation: it shows the reflector each failure's blame but not its
reasons, which tells whether the gains come from the reasons (they should: the paper's
reflector reads verifier failures, not just who failed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import dspy
from pydantic import BaseModel, Field

from eigendspy.agents.reflector import Reflector
from eigendspy.core.domain import Domain
from eigendspy.core.orchestrator import run_sync
from eigendspy.core.plans import PlanPair
from eigendspy.core.records import DialogueRecord, TaskRecord, Verdict
from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.diversity import DiversityReport, mean_pairwise_jaccard
from eigendspy.engine.engine import DataEngine
from eigendspy.engine.store.store import RunManifest, RunStore, atomic_write_text

__all__ = ["BlankReasonsReflector", "PlanEvolutionReport", "PlanNode", "RoundStats", "StreamRound",
           "evolve_plans", "plan_evolution_report", "with_reflector_instructions"]

NO_REASON = "(no reason given)"


class BlankReasonsReflector(Reflector):
    """The blank-reason ablation: the wrapped reflector sees each failure's blame, never its reasons.

    Shares the wrapped reflector's predictor (its LM, instructions and demos), so the only
    difference between an ablated and a normal run is the evidence the reflector is shown.
    """

    def __init__(self, inner: Reflector) -> None:
        super().__init__()
        self.reflect = inner.reflect

    @staticmethod
    def blank(failures: Sequence[Verdict | str]) -> list[Verdict | str]:
        return [Verdict(passed=f.passed, reasons=[], blame=f.blame) if isinstance(f, Verdict) else NO_REASON
                for f in failures]

    def forward(self, plan: PlanPair, failures: Sequence[Verdict | str], others: Sequence[PlanPair] = (),
                plan_id: str | None = None) -> dspy.Prediction:
        return super().forward(plan, self.blank(failures), others, plan_id)

    async def aforward(self, plan: PlanPair, failures: Sequence[Verdict | str], others: Sequence[PlanPair] = (),
                       plan_id: str | None = None) -> dspy.Prediction:
        return await super().aforward(plan, self.blank(failures), others, plan_id)


def with_reflector_instructions(roles: Roles, instructions: str) -> Roles:
    """Roles whose Reflector uses ``instructions`` (same LM and demos): the reflector's evolvable text."""
    reflector = Reflector()
    old = roles.reflector.reflect
    reflector.reflect = dspy.Predict(old.signature.with_instructions(instructions))
    reflector.reflect.demos = list(old.demos)
    if old.lm is not None:
        reflector.reflect.set_lm(old.lm)
    return replace(roles, reflector=reflector)


class StreamRound(BaseModel):
    """What one stream did in one round under one plan."""

    round: int
    stream: int
    plan_id: str | None = None
    parent_id: str | None = None
    cell: str | None = None
    tasks_attempted: int = 0
    tasks_accepted: int = 0
    dialogues_attempted: int = 0
    dialogues_accepted: int = 0
    stream_yield: float = Field(0.0, description="Accepted dialogues per dialogue slot (tasks x episodes)")
    blame: dict[str, int] = Field(default_factory=dict, description="Blame of the rejected items")
    top_reason: str | None = None


class RoundStats(BaseModel):
    """One round over all streams; ``cells_covered`` counts cells that yielded an accepted dialogue."""

    round: int
    tasks_attempted: int = 0
    tasks_accepted: int = 0
    dialogues_attempted: int = 0
    dialogues_accepted: int = 0
    stream_yield: float = 0.0
    cells_planned: int = 0
    cells_planned_cumulative: int = 0
    cells_covered: int = 0
    cells_covered_cumulative: int = 0
    gold_action_jaccard: float | None = Field(None, description="Mean pairwise, accepted tasks; lower = more diverse")


class PlanNode(BaseModel):
    """One stored plan and how it differs from its parent (``changes``: field -> [old, new])."""

    round: int
    stream: int
    plan_id: str
    parent_id: str | None = None
    cell: str
    changes: dict[str, list[str]] = Field(default_factory=dict)


class PlanEvolutionReport(BaseModel):
    run_dir: Path
    rounds: int
    streams: int
    episodes_per_task: int
    ablate_reasons: bool = False
    reflector_instructions: str = ""
    per_round: list[RoundStats]
    per_stream: list[StreamRound]
    lineage: list[PlanNode]
    diversity: DiversityReport | None = None
    plot: Path | None = None

    @property
    def yields(self) -> list[float]:
        return [r.stream_yield for r in self.per_round]

    def to_markdown(self) -> str:
        """The report as markdown: per-round table, per-stream table, plan lineage with changes."""
        head = [f"# Plan evolution: {self.rounds} rounds x {self.streams} streams"
                + (" (ablation: blank failure reasons)" if self.ablate_reasons else ""), "",
                f"Run: `{self.run_dir}`. Yield = accepted dialogues / (tasks x {self.episodes_per_task} episodes). "
                "Cells covered = plan cells that yielded an accepted dialogue; Jaccard = mean pairwise gold-action "
                "Jaccard of the round's accepted tasks (lower is more diverse).", "",
                "| round | tasks acc/att | dialogues acc/att | yield | cells planned (cum.) | cells covered (cum.) "
                "| gold Jaccard |", "|---|---|---|---|---|---|---|"]
        for r in self.per_round:
            jac = "-" if r.gold_action_jaccard is None else f"{r.gold_action_jaccard:.3f}"
            head.append(f"| {r.round + 1} | {r.tasks_accepted}/{r.tasks_attempted} | {r.dialogues_accepted}/"
                        f"{r.dialogues_attempted} | {r.stream_yield:.2f} | {r.cells_planned} "
                        f"({r.cells_planned_cumulative}) | {r.cells_covered} ({r.cells_covered_cumulative}) | {jac} |")
        head += ["", "## Streams", "", "| round | stream | plan | parent | tasks acc/att | dialogues acc/att | yield "
                 "| blame | top failure |", "|---|---|---|---|---|---|---|---|---|"]
        for s in self.per_stream:
            blame = ", ".join(f"{k}={v}" for k, v in sorted(s.blame.items())) or "-"
            reason = (s.top_reason or "-").replace("|", "/")[:100]
            head.append(f"| {s.round + 1} | {s.stream} | {s.plan_id} | {s.parent_id or '-'} | {s.tasks_accepted}/"
                        f"{s.tasks_attempted} | {s.dialogues_accepted}/{s.dialogues_attempted} | {s.stream_yield:.2f} "
                        f"| {blame} | {reason} |")
        head += ["", "## Plan lineage", ""]
        for n in self.lineage:
            changed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in n.changes.items()) or "unchanged"
            head.append(f"- r{n.round + 1} s{n.stream} `{n.plan_id}` <- `{n.parent_id or '-'}` [{n.cell}]: {changed}")
        if self.reflector_instructions:
            head += ["", "## Reflector instructions", "", "```", self.reflector_instructions.strip(), "```"]
        if self.plot is not None:
            head += ["", f"![yield and diversity per round]({self.plot.name})"]
        return "\n".join(head) + "\n"

    def save_plot(self, path: str | Path) -> Path:
        """PNG of stream yield (overall and per stream) and cells covered / Jaccard per round.

        Uses the Agg canvas directly (no pyplot): headless, and leaves global matplotlib state alone.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        xs = [r.round + 1 for r in self.per_round]
        fig = Figure(figsize=(9, 3.6), dpi=110)
        FigureCanvasAgg(fig)
        ax, bx = fig.subplots(1, 2)
        for s in range(self.streams):
            ys = [next((p.stream_yield for p in self.per_stream if p.round == r.round and p.stream == s), 0.0)
                  for r in self.per_round]
            ax.plot(xs, ys, marker=".", lw=0.8, alpha=0.5, label=f"stream {s}")
        ax.plot(xs, self.yields, marker="o", lw=2.2, color="black", label="all streams")
        ax.set(xlabel="round", ylabel="stream yield", ylim=(-0.05, 1.05), xticks=xs, title="Yield")
        ax.legend(fontsize=7)
        bx.plot(xs, [r.cells_covered for r in self.per_round], marker="o", label="cells covered")
        bx.plot(xs, [r.cells_covered_cumulative for r in self.per_round], marker="s", label="cells covered (cum.)")
        bx.plot(xs, [r.cells_planned_cumulative for r in self.per_round], ls="--", label="cells planned (cum.)")
        bx.set(xlabel="round", ylabel="cells", xticks=xs, title="Diversity")
        bx.set_ylim(bottom=0)
        jx = bx.twinx()
        jx.plot(xs, [r.gold_action_jaccard if r.gold_action_jaccard is not None else float("nan")
                     for r in self.per_round], color="grey", ls=":", marker="x", label="gold Jaccard")
        jx.set(ylabel="gold-action Jaccard", ylim=(-0.05, 1.05))
        bx.legend(fontsize=7, loc="upper left")
        fig.suptitle("Plan evolution" + (" (blank-reason ablation)" if self.ablate_reasons else ""))
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
        return out


def _cell(plan: PlanPair) -> str:
    return " / ".join(plan.synthesis.cell)


def _stored_plans(run_dir: Path) -> dict[tuple[int, int], PlanPair]:
    plans = {}
    for path in sorted((run_dir / "plans").glob("r*_s*.json")):
        r, s = (int(part[1:]) for part in path.stem.split("_"))
        plans[(r, s)] = PlanPair.model_validate_json(path.read_text())
    return plans


def _lineage(plans: dict[tuple[int, int], PlanPair]) -> list[PlanNode]:
    nodes = []
    for (r, s), plan in sorted(plans.items()):
        parent = plans.get((r - 1, s))
        changes: dict[str, list[str]] = {}
        if parent is not None:
            for part in ("synthesis", "evaluation"):
                old, new = getattr(parent, part).model_dump(), getattr(plan, part).model_dump()
                changes.update({k: [str(old[k]), str(new[k])] for k in new if old.get(k) != new[k]})
        nodes.append(PlanNode(round=r, stream=s, plan_id=plan.plan_id, parent_id=plan.parent_id, cell=_cell(plan),
                              changes=changes))
    return nodes


def _where(rec: TaskRecord | DialogueRecord) -> tuple[int, int]:
    """(round, stream) of a record: task records carry both; dialogue work keys are ``s{s}/r{r}/t{i}/e{k}``."""
    if isinstance(rec, TaskRecord):
        return rec.round, rec.stream
    s, r = (int(part[1:]) for part in rec.work_key.split("/")[:2])
    return r, s


def plan_evolution_report(run_dir: str | Path, *, ablate_reasons: bool = False,
                          reflector_instructions: str = "") -> PlanEvolutionReport:
    """Per-round, per-stream yield, diversity and lineage of a stored run (any engine run, read-only)."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir, read_only=True)
    cfg = store.manifest.config
    episodes = int(cfg.get("episodes_per_task", 1))
    plans = _stored_plans(run_dir)
    tasks, dialogues = list(store.iter_records("task")), list(store.iter_records("dialogue"))
    rounds = max([int(cfg.get("rounds", 1))] + [r + 1 for r, _ in plans])
    streams = max([int(cfg.get("streams", 1))] + [s + 1 for _, s in plans])
    cells = {k: _cell(p) for k, p in plans.items()}
    cell_stats: dict[tuple[int, int], StreamRound] = {}
    reasons: dict[tuple[int, int], dict[str, int]] = {}
    for rec in [*tasks, *dialogues]:
        key = _where(rec)
        plan = plans.get(key)
        sr = cell_stats.setdefault(key, StreamRound(round=key[0], stream=key[1], plan_id=plan and plan.plan_id,
                                                    parent_id=plan and plan.parent_id, cell=cells.get(key)))
        kind = "tasks" if isinstance(rec, TaskRecord) else "dialogues"
        setattr(sr, f"{kind}_attempted", getattr(sr, f"{kind}_attempted") + 1)
        setattr(sr, f"{kind}_accepted", getattr(sr, f"{kind}_accepted") + int(rec.accepted))
        if not rec.accepted:
            verdict = rec.validation if isinstance(rec, TaskRecord) else rec.validator
            blame = verdict.blame if verdict is not None else ("task" if isinstance(rec, TaskRecord) else "none")
            sr.blame[blame] = sr.blame.get(blame, 0) + 1
            for reason in rec.reasons:
                counts = reasons.setdefault(key, {})
                counts[reason] = counts.get(reason, 0) + 1
    per_stream, per_round = [], []
    planned_cum: set[str] = set()
    covered_cum: set[str] = set()
    for r in range(rounds):
        rs = RoundStats(round=r)
        covered: set[str] = set()
        for s in range(streams):
            plan = plans.get((r, s))
            sr = cell_stats.get((r, s)) or StreamRound(round=r, stream=s, plan_id=plan and plan.plan_id,
                                                       parent_id=plan and plan.parent_id, cell=cells.get((r, s)))
            slots = sr.tasks_attempted * episodes
            sr.stream_yield = sr.dialogues_accepted / slots if slots else 0.0
            if (r, s) in reasons:
                sr.top_reason = max(reasons[(r, s)].items(), key=lambda kv: (kv[1], kv[0]))[0]
            per_stream.append(sr)
            for field in ("tasks_attempted", "tasks_accepted", "dialogues_attempted", "dialogues_accepted"):
                setattr(rs, field, getattr(rs, field) + getattr(sr, field))
            if sr.dialogues_accepted and sr.cell:
                covered.add(sr.cell)
        round_cells = {cells[(r, s)] for s in range(streams) if (r, s) in cells}
        planned_cum |= round_cells
        covered_cum |= covered
        slots = rs.tasks_attempted * episodes
        rs.stream_yield = rs.dialogues_accepted / slots if slots else 0.0
        rs.cells_planned, rs.cells_planned_cumulative = len(round_cells), len(planned_cum)
        rs.cells_covered, rs.cells_covered_cumulative = len(covered), len(covered_cum)
        rs.gold_action_jaccard = mean_pairwise_jaccard(
            [t.task for t in tasks if t.accepted and t.task is not None and t.round == r])
        per_round.append(rs)
    diversity_path = run_dir / "diversity.json"
    diversity = DiversityReport.model_validate_json(diversity_path.read_text()) if diversity_path.exists() else None
    return PlanEvolutionReport(run_dir=run_dir, rounds=rounds, streams=streams, episodes_per_task=episodes,
                               ablate_reasons=ablate_reasons, reflector_instructions=reflector_instructions,
                               per_round=per_round, per_stream=per_stream, lineage=_lineage(plans),
                               diversity=diversity)


def evolve_plans(domain: Domain, roles: Roles, config: EngineConfig, out_dir: str | Path, rounds: int = 3, *,
                 ablate_reasons: bool = False, reflector_instructions: str | None = None, plot: bool = True,
                 resume: bool = False, progress: Callable[[str, bool], None] | None = None) -> PlanEvolutionReport:
    """Run the engine for ``rounds`` reflection rounds and report what plan evolution did per round.

    Writes into ``out_dir`` (a normal run directory) ``plan_evolution.json``, ``plan_evolution.md``,
    ``plan_evolution.png``, and the per-round numbers into the manifest's ``notes["plan_evolution"]``.

    Args:
        domain: The domain to synthesize for.
        roles: The role modules; the Reflector rewrites the plans between rounds.
        config: Engine settings; ``rounds`` is replaced by ``rounds``.
        out_dir: The run directory (new, or an interrupted one with ``resume=True``).
        rounds: K, the number of rounds (K - 1 reflections).
        ablate_reasons: Show the reflector blame but blank reasons (`BlankReasonsReflector`).
        reflector_instructions: Replace the Reflector's instructions (e.g. a compiled version).
        plot: Also write the PNG.
        resume: Continue the run stored in ``out_dir``.
        progress: Passed to `DataEngine`.

    Returns:
        The `PlanEvolutionReport` (also saved as JSON and markdown).
    """
    cfg = config.model_copy(update={"rounds": rounds})
    if reflector_instructions is not None:
        roles = with_reflector_instructions(roles, reflector_instructions)
    if ablate_reasons:
        roles = replace(roles, reflector=BlankReasonsReflector(roles.reflector))
    instructions = roles.reflector.reflect.signature.instructions
    out = Path(out_dir)
    store = RunStore.create(out, RunManifest(config=cfg, seed=cfg.seed, domain=domain.name), resume=resume)
    try:
        run_sync(DataEngine(domain, roles, store, cfg, progress=progress).run())
        report = plan_evolution_report(out, ablate_reasons=ablate_reasons, reflector_instructions=instructions)
        if plot:
            report.plot = report.save_plot(out / "plan_evolution.png")
        store.manifest.notes["plan_evolution"] = {
            "ablate_reasons": ablate_reasons, "mechanism": "reflector-module",
            "rounds": [r.model_dump(mode="json") for r in report.per_round]}
        store.write_manifest()
    finally:
        store.close()
    atomic_write_text(out / "plan_evolution.json", report.model_dump_json(indent=2))
    atomic_write_text(out / "plan_evolution.md", report.to_markdown())
    return report
