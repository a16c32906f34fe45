"""Diversity of a synthesized set: plan cells covered, gold-action Jaccard, yield per plan.

The seed paper's largest SFT effect was plan diversity, so every run reports it: how many
distinct (intent, complexity, edge case) cells the plans covered, how similar the accepted
tasks' gold solutions are (mean pairwise Jaccard of their action sets; lower is more diverse),
and how many accepted dialogues each plan yielded.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from eigendspy.core.plans import PlanPair
from eigendspy.core.task import Task
from eigendspy.engine.filters import action_signature


class DiversityReport(BaseModel):
    plans: int = 0
    plan_cells_covered: int = 0
    cells: list[str] = Field(default_factory=list)
    accepted_tasks: int = 0
    gold_action_jaccard_mean: float | None = None
    distinct_tool_patterns: int = 0
    yield_per_plan: dict[str, float] = Field(default_factory=dict)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def mean_pairwise_jaccard(tasks: Sequence[Task], max_pairs: int = 20_000) -> float | None:
    """Mean Jaccard similarity of gold-action sets over task pairs (capped for large sets)."""
    sigs = [action_signature(t) for t in tasks]
    pairs = list(itertools.islice(itertools.combinations(range(len(sigs)), 2), max_pairs))
    if not pairs:
        return None
    return sum(jaccard(sigs[i], sigs[j]) for i, j in pairs) / len(pairs)


def diversity_report(
    plans: Iterable[PlanPair],
    accepted_tasks: Sequence[Task],
    dialogues_per_plan: dict[str, tuple[int, int]],
) -> DiversityReport:
    """Summarize diversity. ``dialogues_per_plan`` maps plan id to (accepted, attempted)."""
    plans = list(plans)
    cells = sorted({" / ".join(p.synthesis.cell) for p in plans})
    tool_patterns = Counter(tuple(a.name for a in t.gold_actions) for t in accepted_tasks)
    return DiversityReport(
        plans=len(plans),
        plan_cells_covered=len(cells),
        cells=cells,
        accepted_tasks=len(accepted_tasks),
        gold_action_jaccard_mean=mean_pairwise_jaccard(accepted_tasks),
        distinct_tool_patterns=len(tool_patterns),
        yield_per_plan={pid: (acc / tried if tried else 0.0)
                        for pid, (acc, tried) in sorted(dialogues_per_plan.items())},
    )
