"""Task-level filters that keep the synthesized set honest: near-duplicates and held-out overlap.

Why: a generator that keeps emitting the same task inflates yield without adding signal, and a task
that touches the same entities with the same writes as a held-out evaluation task leaks the test set
into training. Both are cheap and deterministic.

A duplicate is caught two ways. Exactly: the same gold actions on the same entities. By text: a task
that acts on an entity an earlier accepted task acts on, and whose scenario text + rendered gold
actions (`eigendspy.core.similarity.task_text`) share at least ``threshold`` of their word n-grams
with it — the same request reworded and reordered, with a read added or an argument spelled
differently. Why the shared-entity condition: text alone cannot tell a reworded duplicate from the same
template on other entities, and the latter is a different task (another order, another DB change).
Measured on word 2-grams: three hand-written reworded duplicates score 0.53-0.61; same-template tasks
on other entities score 0.60-0.72 (0.79 among the embedded model's accepted tasks in ``runs/recipe-cpu``),
and different requests on the same order 0.22-0.40. So entities gate, and 0.5 on 2-grams decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel

from eigendspy.core.domain import Domain
from eigendspy.core.similarity import ShingleIndex, jaccard, task_shingles
from eigendspy.core.task import Task

_ID_KEYS = ("id", "_id", "ids")
NEAR_DUPLICATE_JACCARD = 0.5
"""Default text-similarity threshold of `DuplicateFilter` (word 2-grams; see the module docstring)."""
NEAR_DUPLICATE_NGRAM = 2


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def action_signature(task: Task) -> frozenset[str]:
    """The set of gold actions as ``name(args)`` strings (order-insensitive)."""
    return frozenset(f"{a.name}({_canonical(a.arguments)})" for a in task.gold_actions)


def entity_ids(task: Task) -> set[str]:
    """Identifier-like argument values of the gold actions (``order_id``, ``item_ids``, ``user_id``...)."""
    out: set[str] = set()
    for action in task.gold_actions:
        for key, value in action.arguments.items():
            if not key.endswith(_ID_KEYS):
                continue
            values = value if isinstance(value, list) else [value]
            out.update(str(v) for v in values if isinstance(v, (str, int)))
    return out


def write_signature(task: Task, domain: Domain) -> set[tuple[str, str]]:
    """(write tool, entity id) pairs: what the task changes, and where."""
    out: set[tuple[str, str]] = set()
    for action in task.gold_actions:
        if not domain.mutates_state(action.name, action.requestor):
            continue
        for key, value in action.arguments.items():
            if key.endswith(_ID_KEYS):
                for v in value if isinstance(value, list) else [value]:
                    out.add((action.name, str(v)))
    return out


class FilterDecision(BaseModel):
    rejected: bool
    reason: str = ""


class DuplicateFilter:
    """Remembers accepted tasks and rejects a task that duplicates an earlier one, exactly or by text.

    Exact: the same gold actions (`action_signature`). By text: it shares an entity id with an earlier
    task (or neither names any) and the word ``ngram``-gram Jaccard of their `task_text` is at least
    ``threshold``; the reason names that task and the score. ``threshold=None`` keeps the exact check only.
    Ties go to the earliest added task, so a replayed filter decides as the original did.

    Cost: the entity gate comes first, so a check scores only the few earlier tasks on the same
    entities (tasks naming no entity are scored through a `ShingleIndex`), not every accepted task.
    """

    def __init__(self, threshold: float | None = NEAR_DUPLICATE_JACCARD, ngram: int = NEAR_DUPLICATE_NGRAM) -> None:
        if threshold is not None and not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold, self.ngram = threshold, ngram
        self._seen: dict[frozenset[str], str] = {}
        self._order: dict[str, int] = {}
        self._shingles: dict[str, frozenset] = {}
        self._by_entity: dict[str, list[str]] = {}
        self._no_entity = ShingleIndex()

    def __len__(self) -> int:
        return len(self._order)

    def check(self, task: Task) -> FilterDecision:
        sig = action_signature(task)
        if sig and sig in self._seen:
            return FilterDecision(rejected=True, reason=f"near-duplicate of task {self._seen[sig]} (same gold actions "
                                                        "on the same entities)")
        if self.threshold is None:
            return FilterDecision(rejected=False)
        other, score, shared = self.closest(task)
        if other is not None and score >= self.threshold:
            on = f" on {', '.join(shared)}" if shared else ""
            return FilterDecision(rejected=True, reason=(
                f"near-duplicate of task {other} (similar text: word {self.ngram}-gram Jaccard {score:.2f} >= "
                f"{self.threshold:g} over scenario and gold actions{on})"))
        return FilterDecision(rejected=False)

    def closest(self, task: Task) -> tuple[str | None, float, list[str]]:
        """The most similar earlier task it may be compared with (earliest on ties), the score, and the
        entity ids they share."""
        mine, entities = task_shingles(task, self.ngram), entity_ids(task)
        if not entities:
            other, score = self._no_entity.closest(mine)
            return (str(other) if other is not None else None), score, []
        candidates = sorted({c for e in entities for c in self._by_entity.get(e, ())}, key=self._order.__getitem__)
        best: tuple[str | None, float] = (None, 0.0)
        for candidate in candidates:
            score = jaccard(mine, self._shingles[candidate])
            if score > best[1]:
                best = (candidate, score)
        shared = sorted(e for e in entities if best[0] in self._by_entity.get(e, ())) if best[0] else []
        return best[0], best[1], shared

    def add(self, task: Task) -> None:
        sig = action_signature(task)
        if sig:
            self._seen.setdefault(sig, task.id)
        if task.id in self._order:
            return
        self._order[task.id] = len(self._order)
        entities = entity_ids(task)
        if not entities:
            self._no_entity.add(task.id, task_shingles(task, self.ngram))
            return
        self._shingles[task.id] = task_shingles(task, self.ngram)
        for entity in entities:
            self._by_entity.setdefault(entity, []).append(task.id)


class HeldOutFilter:
    """Rejects tasks whose writes touch the same entities with the same tools as a held-out task."""

    def __init__(self, domain: Domain, held_out: Iterable[Task]) -> None:
        self.domain = domain
        self._index: dict[tuple[str, str], str] = {}
        for task in held_out:
            for pair in write_signature(task, domain):
                self._index.setdefault(pair, task.id)

    def __len__(self) -> int:
        return len(self._index)

    def check(self, task: Task) -> FilterDecision:
        for pair in sorted(write_signature(task, self.domain)):
            if pair in self._index:
                return FilterDecision(rejected=True, reason=(
                    f"overlaps held-out task {self._index[pair]}: {pair[0]} on {pair[1]!r}"))
        return FilterDecision(rejected=False)
