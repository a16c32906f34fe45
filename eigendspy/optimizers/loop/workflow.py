"""Workflow evolution as proposal + measurement: a DSPy module proposes knob changes, the next round judges.

Why a module and a fallback: the rule-based raiser (`eigendspy.optimizers.workflow`) only ever raises a
knob when a fixed threshold trips; an LM reading the same statistics can weigh them (and is a DSPy
program, so it can be compiled like any role). But an LM may answer nonsense, so every proposal is
checked against the declared `WorkflowBounds` and the known knobs: one invalid entry rejects the
whole proposal and the rules decide instead (the record says why). Either way a change is a
hypothesis: `decide` keeps it only if the next round's measured yield improves, else it is reverted.
The yield of the next round also moves with that round's recompiled roles; the decision is recorded
with both rounds' numbers so a reader can weigh it.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import dspy
from pydantic import BaseModel, Field

from eigendspy.engine.config import EngineConfig, Roles
from eigendspy.engine.store.store import RunSummary
from eigendspy.optimizers.workflow import (
    WorkflowBounds,
    WorkflowChange,
    failure_stats,
    propose_workflow_changes,
    strictness_of,
)
from eigendspy.signatures.workflow import ProposeWorkflow

__all__ = ["WorkflowDecision", "WorkflowProposal", "WorkflowProposer", "decide", "propose", "reverted",
           "settings_of", "with_changes"]

KNOBS = ("max_repairs", "episodes_per_task", "validator_strictness")


class WorkflowProposal(BaseModel):
    """What was proposed after a round, by whom, and (``fallback``) why the LM's proposal was not used."""

    source: Literal["lm", "rules"]
    changes: list[WorkflowChange] = Field(default_factory=list)
    rationale: str = ""
    fallback: str | None = None


class WorkflowDecision(BaseModel):
    """Whether the previous round's changes are kept, judged on the measured yield of the round they ran in."""

    decision: Literal["kept", "reverted"]
    changes: list[WorkflowChange]
    yield_before: float
    yield_after: float


class WorkflowProposer(dspy.Module):
    """Proposes bounded knob changes from a round's failure statistics (`ProposeWorkflow`).

    Args:
        lm: The LM for the proposal; ``None`` uses the caller's context.
    """

    def __init__(self, lm: dspy.LM | None = None) -> None:
        super().__init__()
        self.propose = dspy.Predict(ProposeWorkflow)
        if lm is not None:
            self.propose.set_lm(lm)

    def forward(self, failure_stats: str, settings: str, bounds: str) -> dspy.Prediction:
        return self.propose(failure_stats=failure_stats, settings=settings, bounds=bounds)


def settings_of(config: EngineConfig, roles: Roles | None = None) -> dict[str, int]:
    """The current value of every applied knob."""
    return {"max_repairs": config.max_repairs, "episodes_per_task": config.episodes_per_task,
            "validator_strictness": strictness_of(config, roles)}


def _validate(raw: Any, current: dict[str, int], bounds: WorkflowBounds) -> tuple[list[WorkflowChange], str | None]:
    """The LM's proposals as `WorkflowChange`s, or the first reason they cannot be used."""
    changes: dict[str, WorkflowChange] = {}
    for item in list(raw or []):
        knob = getattr(item, "knob", None)
        if knob not in KNOBS:
            return [], f"unknown knob {knob!r} (known: {', '.join(KNOBS)})"
        value, limits = float(item.new), getattr(bounds, knob)
        if value != int(value) or not limits.lo <= value <= limits.hi:
            return [], f"{knob}={item.new} is outside its bounds [{limits.lo}, {limits.hi}] or not an integer"
        if int(value) != current[knob]:
            changes[knob] = WorkflowChange(knob=knob, old=current[knob], new=int(value), reason=str(item.reason))
    return list(changes.values()), None


def propose(summary: RunSummary, config: EngineConfig, bounds: WorkflowBounds, *, roles: Roles | None = None,
            proposer: WorkflowProposer | None = None) -> WorkflowProposal:
    """Knob changes for the next round: the proposer's when it has an LM and answers validly, else the rules'."""
    current = settings_of(config, roles)
    fallback = "no workflow LM" if proposer is None else None
    if proposer is not None:
        if proposer.propose.lm is None and dspy.settings.lm is None:
            fallback = "no workflow LM"
        else:
            bounds_json = {k: [getattr(bounds, k).lo, getattr(bounds, k).hi] for k in KNOBS}
            try:
                pred = proposer(failure_stats=failure_stats(summary).model_dump_json(),
                                settings=json.dumps(current), bounds=json.dumps(bounds_json))
                changes, fallback = _validate(pred.changes, current, bounds)
            except Exception as exc:  # an unparsable answer is a failed proposal, not a failed loop
                fallback = f"the proposer failed: {type(exc).__name__}: {exc}"[:300]
            if fallback is None:
                return WorkflowProposal(source="lm", changes=changes, rationale=str(pred.rationale))
    rules = [c for c in propose_workflow_changes(summary, config, bounds, roles=roles) if c.knob in KNOBS]
    return WorkflowProposal(source="rules", changes=rules, fallback=fallback)


def decide(changes: list[WorkflowChange], yield_before: float, yield_after: float) -> WorkflowDecision:
    """Keep the changes only if the yield measured with them beats the yield without them."""
    kept = yield_after > yield_before + 1e-9
    return WorkflowDecision(decision="kept" if kept else "reverted", changes=changes, yield_before=yield_before,
                            yield_after=yield_after)


def reverted(changes: list[WorkflowChange]) -> list[WorkflowChange]:
    """The changes that undo ``changes`` (each knob back to its old value)."""
    return [WorkflowChange(knob=c.knob, old=c.new, new=c.old, reason=f"revert: {c.reason}"[:400]) for c in changes]


def with_changes(knobs: dict[str, int], changes: list[WorkflowChange]) -> dict[str, int]:
    """The knob values after ``changes`` (a copy)."""
    return {**knobs, **{c.knob: int(c.new) for c in changes if c.knob in KNOBS}}
