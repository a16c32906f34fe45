"""Task-level filters that keep the synthesized set honest: near-duplicates and held-out overlap.

Why: a generator that keeps emitting the same task (same gold actions on the same entities)
inflates yield without adding signal, and a task that touches the same entities with the same
writes as a held-out evaluation task leaks the test set into training. Both are decided from
the gold actions alone, so they are cheap and deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pydantic import BaseModel

from eigendspy.core.domain import Domain
from eigendspy.core.task import Task

_ID_KEYS = ("id", "_id", "ids")


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
    """Remembers accepted tasks and rejects a task whose gold actions equal an earlier one's."""

    def __init__(self) -> None:
        self._seen: dict[frozenset[str], str] = {}

    def check(self, task: Task) -> FilterDecision:
        sig = action_signature(task)
        if sig and sig in self._seen:
            return FilterDecision(rejected=True, reason=f"near-duplicate of task {self._seen[sig]} (same gold actions "
                                                        "on the same entities)")
        return FilterDecision(rejected=False)

    def add(self, task: Task) -> None:
        sig = action_signature(task)
        if sig:
            self._seen.setdefault(sig, task.id)


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
