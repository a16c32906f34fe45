"""What a closed loop reports: per round, the yield, who failed, what was compiled, and what it did.

Why per round and typed: the loop's claim is causal — this round's rejections chose these roles, their
compiled programs (named by content hash) produced the next round's data, whose yield is the measured
effect. Each `RoundReport` is also the round's completion marker (``round_<i>/round.json``), so a
resumed loop reads back exactly what an uninterrupted one computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from eigendspy.optimizers.loop.config import EvolveLoopConfig
from eigendspy.optimizers.loop.workflow import WorkflowDecision, WorkflowProposal

__all__ = ["CompiledRole", "EvolveLoopReport", "RoundReport"]


class CompiledRole(BaseModel):
    """One role compiled in a round: its new version and what `evolve` measured on held-out items."""

    role: str
    version: str = Field(description="Content hash of the compiled program (`versions.state_hash`)")
    path: str = Field(description="The versioned file (``<role>.<version>.json``), never overwritten")
    status: str
    before: float
    after: float
    trainset: int
    valset: int
    message: str = ""


class RoundReport(BaseModel):
    """One round of the loop (also its completion marker)."""

    round: int
    run_dir: str
    seed: int
    tasks: int = 0
    tasks_accepted: int = 0
    dialogues: int = 0
    dialogues_accepted: int = 0
    dialogue_slots: int = Field(0, description="Tasks attempted x episodes per task")
    accepted_yield: float = Field(0.0, description="Accepted dialogues / dialogue slots")
    rejections: int = 0
    rejection_counts: dict[str, int] = Field(default_factory=dict)
    rejection_shares: dict[str, float] = Field(default_factory=dict)
    selected: list[str] = Field(default_factory=list)
    compiled: list[CompiledRole] = Field(default_factory=list)
    versions_used: dict[str, str] = Field(default_factory=dict, description="Role -> hash that made this data")
    versions_after: dict[str, str] = Field(default_factory=dict, description="Role -> hash the next round uses")
    optimizer: str
    budget: str | int
    blank_feedback: bool = False
    knobs: dict[str, int] = Field(default_factory=dict, description="Workflow knobs this round ran with")
    workflow_decision: WorkflowDecision | None = None
    workflow_proposal: WorkflowProposal | None = None
    effect: dict[str, float] | None = Field(None, description="Yield change from the previous round")

    def manifest_note(self) -> dict[str, Any]:
        """The round as recorded in its run manifest's ``notes["evolve_loop"]``."""
        return self.model_dump(mode="json", exclude={"run_dir"})


class EvolveLoopReport(BaseModel):
    """All rounds of a loop, in order, with the config that ran them."""

    out_dir: str
    config: EvolveLoopConfig
    rounds: list[RoundReport]
    plot: str | None = None

    @property
    def yields(self) -> list[float]:
        return [r.accepted_yield for r in self.rounds]

    @property
    def final_versions(self) -> dict[str, str]:
        return dict(self.rounds[-1].versions_after) if self.rounds else {}

    def to_markdown(self) -> str:
        cfg = self.config
        lines = [f"# evolve-loop: {cfg.domain}, {len(self.rounds)} rounds"
                 + (" (ablation: blank feedback)" if cfg.blank_feedback else ""), "",
                 f"Optimizer {cfg.optimizer}, budget {cfg.budget}, top {cfg.top_k} role(s) per round, "
                 f"{cfg.tasks_per_round} tasks per round, seed {cfg.seed}. Yield = accepted dialogues / "
                 "(tasks x episodes).", "",
                 "| round | yield | tasks acc/att | dialogues acc/att | rejection shares | compiled | knobs |",
                 "|---|---|---|---|---|---|---|"]
        for r in self.rounds:
            shares = ", ".join(f"{k} {v:.2f}" for k, v in r.rejection_shares.items() if v) or "-"
            compiled = ", ".join(f"{c.role} `{c.version}` ({c.before:.2f}->{c.after:.2f})" for c in r.compiled) or "-"
            knobs = ", ".join(f"{k}={v}" for k, v in r.knobs.items())
            lines.append(f"| {r.round + 1} | {r.accepted_yield:.2f} | {r.tasks_accepted}/{r.tasks} | "
                         f"{r.dialogues_accepted}/{r.dialogues} | {shares} | {compiled} | {knobs} |")
        lines += ["", "## Versions", ""]
        for r in self.rounds:
            used = ", ".join(f"{k}=`{v}`" for k, v in r.versions_used.items()) or "seed programs"
            lines.append(f"- round {r.round + 1} ran with {used}")
        wf = [r for r in self.rounds if r.workflow_proposal or r.workflow_decision]
        if wf:
            lines += ["", "## Workflow", ""]
            for r in wf:
                if r.workflow_decision is not None:
                    d = r.workflow_decision
                    knobs = ", ".join(f"{c.knob} {c.old}->{c.new}" for c in d.changes)
                    lines.append(f"- round {r.round + 1}: {d.decision} ({knobs}): yield {d.yield_before:.2f} -> "
                                 f"{d.yield_after:.2f}")
                if r.workflow_proposal is not None:
                    p = r.workflow_proposal
                    knobs = ", ".join(f"{c.knob} {c.old}->{c.new}" for c in p.changes) or "no change"
                    why = f" (fallback: {p.fallback})" if p.fallback else ""
                    lines.append(f"- after round {r.round + 1}: {p.source} proposed {knobs}{why}")
        if self.plot:
            lines += ["", f"![yield per round]({Path(self.plot).name})"]
        return "\n".join(lines) + "\n"

    def save_plot(self, path: str | Path) -> Path:
        """PNG of the accepted-dialogue yield per round, with the rounds' rejection shares stacked below.

        Uses the Agg canvas directly (no pyplot): headless, and leaves global matplotlib state alone.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        xs = [r.round + 1 for r in self.rounds]
        fig = Figure(figsize=(8, 3.4), dpi=110)
        FigureCanvasAgg(fig)
        ax, bx = fig.subplots(1, 2)
        ax.plot(xs, self.yields, marker="o", lw=2, color="black")
        for r in self.rounds:
            if r.compiled:
                ax.annotate("+" + ",".join(c.role for c in r.compiled), (r.round + 1, r.accepted_yield),
                            textcoords="offset points", xytext=(0, 8), fontsize=7, ha="center")
        ax.set(xlabel="round", ylabel="accepted-dialogue yield", ylim=(-0.05, 1.1), xticks=xs, title="Yield")
        bottom = [0.0] * len(xs)
        for role in self.config.roles:
            ys = [r.rejection_shares.get(role, 0.0) for r in self.rounds]
            if any(ys):
                bx.bar(xs, ys, bottom=bottom, label=role)
                bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        bx.set(xlabel="round", ylabel="share of rejections", xticks=xs, title="Who failed")
        if any(bottom):
            bx.legend(fontsize=7)
        fig.suptitle("evolve-loop" + (" (blank-feedback ablation)" if self.config.blank_feedback else ""))
        fig.tight_layout()
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
        return out
