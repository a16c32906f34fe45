"""The task validator: execution first, then an LLM judge for what execution cannot decide."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import dspy

from eigendspy.agents.synthesis_inputs import render_task, tool_summary
from eigendspy.core.plans import PlanPair
from eigendspy.core.records import Verdict
from eigendspy.core.task import Task
from eigendspy.scoring.execution import ExecutionReport, execution_check
from eigendspy.signatures.task_validator import JudgeTask

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

_CRITERIA = (
    ("policy_consistent", "the gold actions do not follow the policy"),
    ("solvable", "a policy-following agent cannot reach the gold outcome"),
    ("scenario_sufficient", "the scenario does not give the user what the agent needs"),
)


class TaskValidator(dspy.Module):
    """Accepts a task only if it executes (`execution_check`) and an LLM judge finds it sound.

    Execution runs first and is final: a task that fails it is rejected without an LM call
    (blame ``"task"``, the execution reasons as feedback). A task that executes goes to the
    judge, which checks policy consistency, solvability and whether the scenario gives the user
    what the agent will ask for; every criterion must hold.

    Args:
        judge_lm: The LM for the judge; ``None`` uses the caller's context.
        strict: Also reject tasks a null policy passes (do nothing / transfer / reads only earn
            the full reward) — use it for RL task sets, where such tasks pay for doing nothing.
        use_judge: Ask the LLM judge after execution passes. Off: execution decides alone (the
            verdict says so) — for LMs too small to judge (docs/embedded_model.md).

    Example:
        ```python
        validator = TaskValidator(judge_lm=dspy.LM("openai/gpt-4o"), strict=True)
        pred = validator(domain=domain, task=task, plan=plan)
        pred.verdict.passed, pred.verdict.reasons, pred.execution.null_pass
        ```
    """

    def __init__(self, judge_lm: dspy.LM | None = None, strict: bool = False, use_judge: bool = True) -> None:
        super().__init__()
        self.strict = strict
        self.use_judge = use_judge
        self.judge = dspy.Predict(JudgeTask)
        if judge_lm is not None:
            self.judge.set_lm(judge_lm)

    def _prepare(
        self, domain: Domain, task: Task, plan: PlanPair | str | None
    ) -> tuple[ExecutionReport, dspy.Prediction | dict[str, str]]:
        """Everything but the judge's call, shared by `forward` and `aforward`: the execution report
        and either the final prediction (execution settles it) or the judge's inputs."""
        report = execution_check(domain, task, reject_null_pass=self.strict)
        if not report.passed:
            return report, _rejected(report)
        if not self.use_judge:
            return report, _unjudged(report)
        return report, {
            "policy": domain.policy,
            "tools": tool_summary(domain),
            "plan": plan.render() if isinstance(plan, PlanPair) else (plan or ""),
            "task": render_task(task),
        }

    def forward(self, domain: Domain, task: Task, plan: PlanPair | str | None = None) -> dspy.Prediction:
        """Returns ``Prediction(verdict: Verdict, execution: ExecutionReport, judged: bool)``."""
        report, step = self._prepare(domain, task, plan)
        if isinstance(step, dspy.Prediction):
            return step
        return _judged(self.judge(**step), report)

    async def aforward(self, domain: Domain, task: Task, plan: PlanPair | str | None = None) -> dspy.Prediction:
        # Execution is CPU work (tens to hundreds of ms on retail): keep the event loop free.
        report, step = await asyncio.to_thread(self._prepare, domain, task, plan)
        if isinstance(step, dspy.Prediction):
            return step
        return _judged(await self.judge.acall(**step), report)


NO_JUDGE = "execution only: the LLM judge is off (use_judge=False)"


def _unjudged(report: ExecutionReport) -> dspy.Prediction:
    return dspy.Prediction(verdict=Verdict(passed=True, reasons=[NO_JUDGE], blame="none"), execution=report,
                           judged=False)


def _rejected(report: ExecutionReport) -> dspy.Prediction:
    verdict = Verdict(passed=False, reasons=list(report.reasons), blame="task")
    return dspy.Prediction(verdict=verdict, execution=report, judged=False)


def _judged(raw: dspy.Prediction, report: ExecutionReport) -> dspy.Prediction:
    failed = [why for field, why in _CRITERIA if not bool(getattr(raw, field, False))]
    passed = not failed
    reasons = [str(r) for r in (raw.reasons or []) if str(r).strip()]
    if not passed and not reasons:
        reasons = failed
    verdict = Verdict(passed=passed, reasons=reasons, blame="none" if passed else "task")
    return dspy.Prediction(verdict=verdict, execution=report, judged=True)
