"""The reflector: a stream's plan pair, revised from the failures it produced, for the next round."""

from __future__ import annotations

import re
from collections.abc import Sequence

import dspy

from eigendspy.agents.synthesis_inputs import render_failures
from eigendspy.core.plans import PlanPair
from eigendspy.core.records import Verdict
from eigendspy.core.similarity import PLAN_OVERLAP_JACCARD, plans_overlap
from eigendspy.signatures.reflector import ReflectPlan

_PLAN_ID = re.compile(r"^p(\d+)_(\d+)$")


def child_plan_id(parent: PlanPair) -> str:
    """``p{round+1}_{i}`` for a planner-made parent ``p{round}_{i}`` (the stream keeps its index),
    else ``"{parent_id}.r{round+1}"``."""
    match = _PLAN_ID.match(parent.plan_id)
    if match:
        return f"p{parent.round + 1}_{match.group(2)}"
    return f"{parent.plan_id}.r{parent.round + 1}"


class Reflector(dspy.Module):
    """Rewrites a plan pair from its failures (with blame) into the next round's plan.

    The child keeps the lineage: ``parent_id`` is the parent's id and ``round`` is one more. When
    ``others`` (the other streams' current plans) are given, ``overlaps`` lists those the revised
    plan now overlaps — the same cell, or a reworded one (`eigendspy.core.similarity.plans_overlap`,
    as the meta-planner decides it) — so the engine can keep streams apart.

    Args:
        lm: The LM for this role; ``None`` uses the caller's context.
        overlap_threshold: Text similarity at which plans of the same complexity and edge case overlap.

    Example:
        ```python
        reflector = Reflector(lm=dspy.LM("openai/gpt-4o"))
        pred = reflector(plan=plan, failures=[verdict_1, "task p0_1_t3: gold write errors"])
        pred.plan.parent_id == plan.plan_id and pred.plan.round == plan.round + 1
        ```
    """

    def __init__(self, lm: dspy.LM | None = None, overlap_threshold: float = PLAN_OVERLAP_JACCARD) -> None:
        super().__init__()
        self.reflect = dspy.Predict(ReflectPlan)
        self.overlap_threshold = overlap_threshold
        if lm is not None:
            self.reflect.set_lm(lm)

    @staticmethod
    def _inputs(plan: PlanPair, failures: Sequence[Verdict | str]) -> dict[str, str]:
        return {"plan": plan.render(), "failures": render_failures(failures)}

    def _result(self, raw: dspy.Prediction, plan: PlanPair, plan_id: str | None,
                others: Sequence[PlanPair]) -> dspy.Prediction:
        draft = raw.revised
        child = PlanPair(plan_id=plan_id or child_plan_id(plan), synthesis=draft.synthesis,
                         evaluation=draft.evaluation, round=plan.round + 1, parent_id=plan.plan_id)
        overlaps = [o.plan_id for o in others if o.plan_id != plan.plan_id
                    and plans_overlap(child.synthesis, o.synthesis, self.overlap_threshold)]
        return dspy.Prediction(plan=child, rationale=str(raw.rationale or ""), overlaps=overlaps)

    def forward(
        self,
        plan: PlanPair,
        failures: Sequence[Verdict | str],
        others: Sequence[PlanPair] = (),
        plan_id: str | None = None,
    ) -> dspy.Prediction:
        """Returns ``Prediction(plan: PlanPair, rationale: str, overlaps: list[str])``."""
        return self._result(self.reflect(**self._inputs(plan, failures)), plan, plan_id, others)

    async def aforward(
        self,
        plan: PlanPair,
        failures: Sequence[Verdict | str],
        others: Sequence[PlanPair] = (),
        plan_id: str | None = None,
    ) -> dspy.Prediction:
        return self._result(await self.reflect.acall(**self._inputs(plan, failures)), plan, plan_id, others)
