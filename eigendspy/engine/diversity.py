"""Diversity of a synthesized set: plan cells covered, gold-action Jaccard, tool n-grams, yield per plan.

The seed paper's largest SFT effect was plan diversity, so every run reports it: how many
distinct (intent, complexity, edge case) cells the plans covered, how similar the accepted
tasks' gold solutions are (mean pairwise Jaccard of their action sets; lower is more diverse),
how many distinct tool-name n-grams (n = 1, 2) the assistant's gold actions use, and how many
accepted dialogues each plan yielded. Per round as well (`RoundCoverage`): whether a later round
still adds new cells and new tool sequences is what tells a run that explores from one that
repeats itself.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel, Field

from eigendspy.core.plans import PlanPair
from eigendspy.core.task import Task
from eigendspy.engine.filters import action_signature


class RoundCoverage(BaseModel):
    """What one round covered, and how much of it no earlier round had."""

    round: int
    plans: int = 0
    plan_cells_covered: int = Field(0, description="Distinct plan cells among this round's plans")
    new_plan_cells: int = Field(0, description="Of those, cells no earlier round's plans had")
    cumulative_plan_cells: int = Field(0, description="Distinct plan cells over rounds 0..this one")
    accepted_tasks: int = 0
    tool_unigrams: int = Field(0, description="Distinct assistant gold-action tool names in accepted tasks")
    tool_bigrams: int = Field(0, description="Distinct consecutive pairs of them ('a -> b')")
    new_tool_ngrams: int = Field(0, description="Tool n-grams (n=1, 2) no earlier round's accepted tasks had")
    cumulative_tool_ngrams: int = Field(0, description="Distinct tool n-grams (n=1, 2) over rounds 0..this one")
    tool_ngrams: list[str] = Field(default_factory=list, description="This round's tool n-grams, sorted")


class DiversityReport(BaseModel):
    plans: int = 0
    plan_cells_covered: int = 0
    cells: list[str] = Field(default_factory=list)
    accepted_tasks: int = 0
    gold_action_jaccard_mean: float | None = None
    distinct_tool_patterns: int = 0
    tool_unigrams: int = Field(0, description="Distinct assistant gold-action tool names over the run")
    tool_bigrams: int = Field(0, description="Distinct consecutive tool-name pairs over the run")
    yield_per_plan: dict[str, float] = Field(default_factory=dict)
    rounds: list[RoundCoverage] = Field(default_factory=list, description="Coverage per round (plans by their "
                                        "round; tasks by the round that made them, when known)")


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


def tool_ngrams(task: Task, n_max: int = 2) -> set[tuple[str, ...]]:
    """Distinct n-grams (n = 1..``n_max``) of the tool names of the task's assistant gold actions, in order."""
    names = [a.name for a in task.gold_actions if a.requestor == "assistant"]
    return {tuple(names[i:i + n]) for n in range(1, n_max + 1) for i in range(len(names) - n + 1)}


def _render(ngram: tuple[str, ...]) -> str:
    return " -> ".join(ngram)


def round_coverage(plans: Sequence[PlanPair], accepted_tasks: Sequence[Task],
                   task_rounds: Mapping[str, int]) -> list[RoundCoverage]:
    """Coverage per round, rounds in order; a task whose id is not in ``task_rounds`` is left out."""
    plans_by_round: dict[int, list[PlanPair]] = {}
    for plan in plans:
        plans_by_round.setdefault(plan.round, []).append(plan)
    tasks_by_round: dict[int, list[Task]] = {}
    for task in accepted_tasks:
        if task.id in task_rounds:
            tasks_by_round.setdefault(task_rounds[task.id], []).append(task)
    seen_cells: set[tuple[str, str, str]] = set()
    seen_ngrams: set[tuple[str, ...]] = set()
    out = []
    for r in sorted(set(plans_by_round) | set(tasks_by_round)):
        cells = {p.synthesis.cell for p in plans_by_round.get(r, [])}
        tasks = tasks_by_round.get(r, [])
        ngrams = set().union(*(tool_ngrams(t) for t in tasks)) if tasks else set()
        new_cells, new_ngrams = cells - seen_cells, ngrams - seen_ngrams
        seen_cells |= cells
        seen_ngrams |= ngrams
        out.append(RoundCoverage(
            round=r, plans=len(plans_by_round.get(r, [])), plan_cells_covered=len(cells),
            new_plan_cells=len(new_cells), cumulative_plan_cells=len(seen_cells), accepted_tasks=len(tasks),
            tool_unigrams=sum(len(g) == 1 for g in ngrams), tool_bigrams=sum(len(g) == 2 for g in ngrams),
            new_tool_ngrams=len(new_ngrams), cumulative_tool_ngrams=len(seen_ngrams),
            tool_ngrams=sorted(_render(g) for g in ngrams)))
    return out


def diversity_report(
    plans: Iterable[PlanPair],
    accepted_tasks: Sequence[Task],
    dialogues_per_plan: dict[str, tuple[int, int]],
    task_rounds: Mapping[str, int] | None = None,
) -> DiversityReport:
    """Summarize diversity. ``dialogues_per_plan`` maps plan id to (accepted, attempted); ``task_rounds``
    maps an accepted task's id to its round (without it, per-round task coverage is empty)."""
    plans = list(plans)
    cells = sorted({" / ".join(p.synthesis.cell) for p in plans})
    tool_patterns = Counter(tuple(a.name for a in t.gold_actions) for t in accepted_tasks)
    ngrams = set().union(*(tool_ngrams(t) for t in accepted_tasks)) if accepted_tasks else set()
    return DiversityReport(
        plans=len(plans),
        plan_cells_covered=len(cells),
        cells=cells,
        accepted_tasks=len(accepted_tasks),
        gold_action_jaccard_mean=mean_pairwise_jaccard(accepted_tasks),
        distinct_tool_patterns=len(tool_patterns),
        tool_unigrams=sum(len(g) == 1 for g in ngrams),
        tool_bigrams=sum(len(g) == 2 for g in ngrams),
        yield_per_plan={pid: (acc / tried if tried else 0.0)
                        for pid, (acc, tried) in sorted(dialogues_per_plan.items())},
        rounds=round_coverage(plans, accepted_tasks, task_rounds or {}),
    )
