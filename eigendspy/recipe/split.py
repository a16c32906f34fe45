"""Train / held-out split of the synthesized tasks: by plan cell, then a near-duplicate check across the split.

Why by cell: a held-out task from a plan cell the training data also covers measures recall of that cell,
not generalisation; the seed paper's plans are cells of the task space (`eigendspy.core.plans`), so whole
cells are held out. Why a near-duplicate check as well: two cells can still produce near-identical tasks
(in small-model mode the plan barely steers the generator), so every held-out task whose word n-grams of
scenario text and gold actions overlap a training task's by ``max_jaccard`` or more is dropped from the
held-out set. The same check runs against the second held-out set (tau2-bench's own mock tasks).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from eigendspy.core.records import TaskRecord
from eigendspy.core.similarity import jaccard, task_shingles
from eigendspy.core.task import Task
from eigendspy.recipe.config import SplitSettings

__all__ = ["NearDuplicate", "SplitReport", "accepted_tasks", "closest", "jaccard", "shingles", "split_by_cell"]


class NearDuplicate(BaseModel):
    """A held-out task dropped because it is too close to a training task."""

    model_config = ConfigDict(frozen=True)

    held_out: str
    train: str
    jaccard: float


class SplitReport(BaseModel):
    """Which tasks train and which are held out, and the evidence that the two do not overlap."""

    model_config = ConfigDict(extra="forbid")

    train_cells: list[list[str]]
    held_out_cells: list[list[str]]
    train_task_ids: list[str]
    held_out_task_ids: list[str]
    dropped: list[NearDuplicate] = Field(default_factory=list)
    max_cross_jaccard: float = Field(0.0, description="Largest train/held-out similarity left after dropping")
    tau2_task_ids: list[str] = Field(default_factory=list)
    tau2_dropped: list[NearDuplicate] = Field(default_factory=list)
    tau2_max_cross_jaccard: float = 0.0


def shingles(task: Task, n: int = 3) -> frozenset[tuple[str, ...]]:
    """Word n-grams of the task's scenario text and its gold actions (`eigendspy.core.similarity.task_shingles`)."""
    return task_shingles(task, n)


def closest(task: Task, pool: Sequence[tuple[str, frozenset]], n: int) -> tuple[str | None, float]:
    """The id of the ``pool`` task most similar to ``task``, and that similarity."""
    mine = shingles(task, n)
    best: tuple[str | None, float] = (None, 0.0)
    for other, theirs in pool:
        score = jaccard(mine, theirs)
        if score > best[1]:
            best = (other, score)
    return best


def accepted_tasks(records: Iterable[TaskRecord]) -> list[TaskRecord]:
    """Accepted task records with a task and a plan, one per task id, in a stable order."""
    seen: dict[str, TaskRecord] = {}
    for record in records:
        if record.accepted and record.task is not None and record.plan is not None:
            seen.setdefault(record.task.id, record)
    return [seen[k] for k in sorted(seen)]


def split_by_cell(records: Iterable[TaskRecord], settings: SplitSettings, seed: int = 0,
                  tau2_tasks: Sequence[Task] = ()) -> SplitReport:
    """Hold out whole plan cells (a seeded choice of ``held_out_cells`` of them, at least one), then drop
    held-out tasks that near-duplicate a training task.

    Raises:
        ValueError: fewer than two plan cells among the accepted tasks (nothing can be held out by cell).
    """
    tasks = accepted_tasks(records)
    cells = sorted({r.plan.synthesis.cell for r in tasks})
    if len(cells) < 2:
        raise ValueError(f"the accepted tasks cover {len(cells)} plan cell(s); a split by cell needs at least 2 "
                         "(more streams, or synthesis.planner='grid')")
    order = list(cells)
    random.Random(seed).shuffle(order)
    k = min(len(cells) - 1, max(1, round(settings.held_out_cells * len(cells))))
    held_cells = set(order[:k])
    train = [r.task for r in tasks if r.plan.synthesis.cell not in held_cells]
    held = [r.task for r in tasks if r.plan.synthesis.cell in held_cells]
    pool = [(t.id, shingles(t, settings.ngram)) for t in train]
    kept, dropped, worst = _check(held, pool, settings)
    tau2_kept, tau2_dropped, tau2_worst = _check(list(tau2_tasks), pool, settings)
    return SplitReport(
        train_cells=[list(c) for c in cells if c not in held_cells],
        held_out_cells=[list(c) for c in sorted(held_cells)],
        train_task_ids=[t.id for t in train], held_out_task_ids=[t.id for t in kept], dropped=dropped,
        max_cross_jaccard=worst, tau2_task_ids=[t.id for t in tau2_kept], tau2_dropped=tau2_dropped,
        tau2_max_cross_jaccard=tau2_worst,
    )


def _check(candidates: Sequence[Task], pool: Sequence[tuple[str, frozenset]],
           settings: SplitSettings) -> tuple[list[Task], list[NearDuplicate], float]:
    kept, dropped, worst = [], [], 0.0
    for task in candidates:
        other, score = closest(task, pool, settings.ngram)
        if other is not None and score >= settings.max_jaccard:
            dropped.append(NearDuplicate(held_out=task.id, train=other, jaccard=round(score, 4)))
        else:
            kept.append(task)
            worst = max(worst, score)
    return kept, dropped, round(worst, 4)
