"""A run's summary (``summary.json``): counts per kind and stage, rejection reasons, blame, usage, plan yield.

:meth:`eigendspy.engine.store.store.RunStore.summary` feeds :func:`summarize` the stored records; the models are
re-exported from :mod:`eigendspy.engine.store.store`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field, computed_field

from eigendspy.core.records import DialogueRecord, TaskRecord, Usage

__all__ = ["KindSummary", "PlanYield", "ReasonCount", "RunSummary", "summarize"]


class ReasonCount(BaseModel):
    reason: str
    count: int


class KindSummary(BaseModel):
    """Counts for one record kind. ``blame`` counts the verdicts of *rejected* records."""

    total: int = 0
    accepted: int = 0
    rejected: int = 0
    stages: dict[str, int] = Field(default_factory=dict)
    top_reasons: list[ReasonCount] = Field(default_factory=list)
    blame: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)


class PlanYield(BaseModel):
    """What one plan produced (the paper's diversity report: yield per plan)."""

    tasks: int = 0
    tasks_accepted: int = 0
    dialogues: int = 0
    dialogues_accepted: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dialogue_yield(self) -> float:
        return self.dialogues_accepted / self.dialogues if self.dialogues else 0.0


class RunSummary(BaseModel):
    run_id: str
    kinds: dict[str, KindSummary]
    usage: Usage = Field(description="LM usage over all records, per role")
    plans: dict[str, PlanYield]
    corrupt_lines: int = 0
    corrupt: list[str] = Field(default_factory=list, description="Each bad stored line: file, line, reason")


def summarize(
    records: Mapping[str, Iterable[TaskRecord | DialogueRecord]],
    *,
    run_id: str,
    top_n: int = 20,
    corrupt_lines: int = 0,
    corrupt: list[str] | None = None,
) -> RunSummary:
    """Summarize records given per kind (``{"task": ..., "dialogue": ...}``, read in that order).

    Every kind in ``records`` gets a :class:`KindSummary`, even with no records; plans appear in
    the order their first record is read; ``top_n`` bounds each kind's ``top_reasons``.
    """
    kinds: dict[str, KindSummary] = {}
    plans: dict[str, PlanYield] = {}
    total = Usage()
    for kind, kind_records in records.items():
        ks, reasons = KindSummary(), Counter()
        for rec in kind_records:
            ks.total += 1
            ks.stages[rec.stage.value] = ks.stages.get(rec.stage.value, 0) + 1
            ks.usage.merge(rec.usage)
            verdict = rec.validation if isinstance(rec, TaskRecord) else rec.validator
            plan_id = (rec.plan.plan_id if rec.plan else None) if isinstance(rec, TaskRecord) else rec.plan_id
            plan = plans.setdefault(plan_id, PlanYield()) if plan_id else PlanYield()
            if kind == "task":
                plan.tasks += 1
                plan.tasks_accepted += rec.accepted
            else:
                plan.dialogues += 1
                plan.dialogues_accepted += rec.accepted
            if rec.accepted:
                ks.accepted += 1
                continue
            ks.rejected += 1
            reasons.update(rec.reasons)
            if verdict is not None:
                ks.blame[verdict.blame] = ks.blame.get(verdict.blame, 0) + 1
        ks.top_reasons = [ReasonCount(reason=r, count=c) for r, c in reasons.most_common(top_n)]
        total.merge(ks.usage)
        kinds[kind] = ks
    return RunSummary(run_id=run_id, kinds=kinds, usage=total, plans=plans, corrupt_lines=corrupt_lines,
                      corrupt=list(corrupt or []))
