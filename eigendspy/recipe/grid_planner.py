"""A meta-planner that hands out distinct plan cells from a fixed grid, without an LM call.

Why: the recipe splits tasks into train and held-out *by plan cell*, so it needs several distinct cells.
SmolLM2-135M as the meta-planner (measured on the mock domain, 4 streams) wrote one plan whose intent
family and tool pattern were the word "SynthesisPlan"; the engine then reused it for every stream, leaving
one cell and nothing to split. The grid gives each stream its own cell — an intent family made from one of
the domain's write tools, a complexity and an edge case — and keeps the engine's contract (`PlanPair`s
with ids ``p0_i``). With a capable LM use the real `MetaPlanner` (``synthesis.planner = "lm"``).

In small-model mode the generator picks its write from the sampled rows whatever the plan says, so with
the embedded model a cell is mostly a label of its stream; the near-duplicate check of the split
(`eigendspy.recipe.split`) is what keeps train and held-out content apart there.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any

import dspy

from eigendspy.agents.meta_planner import MetaPlanner, assign_plans
from eigendspy.core.plans import EvaluationPlan, PlanPair, SynthesisPlan
from eigendspy.signatures.meta_planner import PlanDraft

COMPLEXITIES = ("single_action", "multi_step")
EDGE_CASES = ("none", "missing_information", "user_changes_mind")
STYLES = ("polite, brief", "terse, impatient", "chatty, friendly", "formal")


def grid_drafts(domain: Any, n: int, seed: int = 0) -> list[PlanDraft]:
    """``n`` drafts with distinct cells (fewer when the grid is smaller), in a seeded order."""
    writes = [spec for spec in domain.toolkit if spec.mutates_state and not spec.name.startswith("transfer")]
    intents = [((spec.description or spec.name).split("\n")[0].strip().rstrip("."), spec.name) for spec in writes]
    cells = list(itertools.product(intents, COMPLEXITIES, EDGE_CASES))
    random.Random(seed).shuffle(cells)
    drafts = []
    for i, ((intent, tool), complexity, edge) in enumerate(cells[:n]):
        drafts.append(PlanDraft(
            synthesis=SynthesisPlan(intent_family=intent, complexity=complexity, tool_pattern=f"look up -> {tool}",
                                    user_style=STYLES[i % len(STYLES)], edge_case=edge),
            evaluation=EvaluationPlan(rubric=f"The agent performs {tool} with the values the user gave and says "
                                             "what it did.", failure_types=["wrong id", "acting before asked"]),
        ))
    return drafts


class GridPlanner(MetaPlanner):
    """`MetaPlanner`'s interface over `grid_drafts` (no LM; the predictor it inherits is never called).

    Args:
        seed: Orders the grid, so two seeds give different cells to the streams.
    """

    def __init__(self, seed: int = 0) -> None:
        super().__init__(lm=None)
        self.seed = seed

    def _plans(self, domain: Any, n: int, previous: Sequence[PlanPair], round: int) -> dspy.Prediction:
        plans, dropped = assign_plans(grid_drafts(domain, n + len(previous), self.seed), previous, n, round)
        return dspy.Prediction(plans=plans, dropped=dropped)

    def forward(self, domain: Any, n: int = 4, previous: Sequence[PlanPair] = (), round: int = 0) -> dspy.Prediction:
        return self._plans(domain, n, previous, round)

    async def aforward(self, domain: Any, n: int = 4, previous: Sequence[PlanPair] = (),
                       round: int = 0) -> dspy.Prediction:
        return self._plans(domain, n, previous, round)
