"""The meta-planner: N non-overlapping (synthesis plan, evaluation plan) pairs for a domain."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dspy

from eigendspy.agents.synthesis_inputs import render_plans, tool_summary
from eigendspy.core.plans import PlanPair, SynthesisPlan
from eigendspy.core.similarity import PLAN_OVERLAP_JACCARD, plans_overlap
from eigendspy.signatures.meta_planner import MetaPlan, PlanDraft

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

logger = logging.getLogger(__name__)


def assign_plans(
    drafts: Sequence[PlanDraft], previous: Sequence[PlanPair], n: int, round: int,
    threshold: float = PLAN_OVERLAP_JACCARD,
) -> tuple[list[PlanPair], list[PlanDraft]]:
    """Give drafts ids ``p{round}_{i}`` and keep at most ``n`` that overlap no other plan.

    Non-overlap is enforced here, in code, not left to the prompt: a draft that overlaps a previous
    plan or an earlier kept draft is dropped — the same `SynthesisPlan.cell`, or a reworded one (same
    complexity and edge case, text Jaccard >= ``threshold``; see `PLAN_OVERLAP_JACCARD`). Ids skip any
    already used by ``previous`` (a planner called twice in one round never collides).

    Returns:
        (kept plan pairs, dropped drafts).
    """
    taken: list[SynthesisPlan] = [p.synthesis for p in previous]
    used_ids = {p.plan_id for p in previous}
    kept: list[PlanPair] = []
    dropped: list[PlanDraft] = []
    index = 0
    for draft in drafts:
        if len(kept) >= n or any(plans_overlap(draft.synthesis, other, threshold) for other in taken):
            dropped.append(draft)
            continue
        while f"p{round}_{index}" in used_ids:
            index += 1
        plan_id = f"p{round}_{index}"
        used_ids.add(plan_id)
        taken.append(draft.synthesis)
        kept.append(PlanPair(plan_id=plan_id, synthesis=draft.synthesis, evaluation=draft.evaluation, round=round))
    return kept, dropped


class MetaPlanner(dspy.Module):
    """Proposes diverse plan pairs for a domain; the engine gives each stream one.

    Plan diversity was the seed paper's largest SFT effect, so overlap is decided in code
    (`assign_plans`): the LM is asked for ``n`` plans and drafts that repeat an existing cell, or
    reword one, are dropped, so a prediction may hold fewer than ``n`` plans (``dropped`` says why).

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.
        overlap_threshold: Text similarity at which two plans of the same complexity and edge case
            overlap (`PLAN_OVERLAP_JACCARD`); ``1.0``: equal cells and the very same content words only.

    Example:
        ```python
        planner = MetaPlanner(lm=dspy.LM("openai/gpt-4o-mini"))
        pred = planner(domain=get_domain("retail"), n=4)
        pred.plans  # list[PlanPair], ids "p0_0", "p0_1", ...
        ```
    """

    def __init__(self, lm: dspy.LM | None = None, overlap_threshold: float = PLAN_OVERLAP_JACCARD) -> None:
        super().__init__()
        self.plan = dspy.Predict(MetaPlan)
        self.overlap_threshold = overlap_threshold
        if lm is not None:
            self.plan.set_lm(lm)

    @staticmethod
    def _inputs(domain: Domain, previous: Sequence[PlanPair], n: int) -> dict[str, object]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        return {
            "policy": domain.policy,
            "tools": tool_summary(domain),
            "previous_plans": render_plans(previous),
            "n": n,
        }

    def _result(self, raw: dspy.Prediction, previous: Sequence[PlanPair], n: int, round: int) -> dspy.Prediction:
        plans, dropped = assign_plans(list(raw.plans or []), previous, n, round, self.overlap_threshold)
        if dropped:
            logger.info("meta-planner: dropped %d duplicate or surplus plan(s)", len(dropped))
        return dspy.Prediction(plans=plans, dropped=dropped)

    def forward(
        self, domain: Domain, n: int = 4, previous: Sequence[PlanPair] = (), round: int = 0
    ) -> dspy.Prediction:
        """Returns ``Prediction(plans: list[PlanPair], dropped: list[PlanDraft])``."""
        raw = self.plan(**self._inputs(domain, previous, n))
        return self._result(raw, previous, n, round)

    async def aforward(
        self, domain: Domain, n: int = 4, previous: Sequence[PlanPair] = (), round: int = 0
    ) -> dspy.Prediction:
        raw = await self.plan.acall(**self._inputs(domain, previous, n))
        return self._result(raw, previous, n, round)
