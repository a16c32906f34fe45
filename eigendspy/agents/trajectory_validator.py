"""The trajectory validator: deterministic pre-checks of both parties, then an LLM judge that assigns blame."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dspy

from eigendspy.agents.trajectory_prechecks import Finding, dialogue_findings
from eigendspy.agents.transcript import OBSERVER, transcript
from eigendspy.core.messages import Message
from eigendspy.core.plans import PlanPair
from eigendspy.core.records import Verdict
from eigendspy.core.task import Task
from eigendspy.signatures.trajectory_validator import JudgeTrajectory

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

DEFAULT_RUBRIC = "The agent follows the policy, does exactly what the user's request needs, and says what it did."
_BLAMES = ("none", "task", "assistant", "user")


def render_rubric(plan: PlanPair | str | None) -> str:
    """The evaluation plan's rubric and failure types (a default rubric without a plan)."""
    if isinstance(plan, PlanPair):
        ev = plan.evaluation
        return ev.rubric + (f"\nFailure types to watch for: {', '.join(ev.failure_types)}" if ev.failure_types else "")
    return plan or DEFAULT_RUBRIC


class TrajectoryValidator(dspy.Module):
    """Judges one rolled-out dialogue: was it correct, and if not, who is to blame?

    Deterministic pre-checks run first (`trajectory_prechecks.dialogue_findings`): of the simulated
    user (premature ``###STOP###``, leaked instructions, invented values), of both parties' text
    (prompt leakage, format chatter) and of the assistant's tool calls (the domain's ordering rules,
    e.g. identify the user before any write). A decisive finding rejects the dialogue with its
    party's blame and no LM call — with the judge on or off, so the engine never accepts it.
    Otherwise the judge reads the policy, the scenario, the evaluation plan's rubric, the transcript
    and the checker's feedback (non-decisive findings are appended to it). Blame is normalized: ``"none"`` iff passed.

    Args:
        lm: The LM for the judge; ``None`` uses the caller's context.
        leak_ngram: Consecutive words shared with the task instructions that count as a leak.
        check_invented: Run the invented-values pre-check.
        use_judge: Ask the LLM judge when no pre-check is decisive. Off: the pre-checks decide
            (the verdict says so; the engine still requires the checker to pass) — for LMs too
            small to judge.
        assistant_instructions: Prompt texts the assistant runs with beyond its built-in signature
            (an optimized program's instructions), so reciting them is caught too.

    Example:
        ```python
        validator = TrajectoryValidator(lm=dspy.LM("openai/gpt-4o"))
        pred = validator(domain=domain, task=task, messages=episode.messages, plan=plan,
                         checker_feedback="reward 1.0")
        pred.verdict.passed, pred.verdict.blame
        ```
    """

    def __init__(self, lm: dspy.LM | None = None, leak_ngram: int = 10, check_invented: bool = True,
                 use_judge: bool = True, assistant_instructions: Sequence[str] = ()) -> None:
        super().__init__()
        if leak_ngram < 3:
            raise ValueError(f"leak_ngram must be >= 3 (shorter runs are ordinary phrasing), got {leak_ngram}")
        self.leak_ngram = leak_ngram
        self.check_invented = check_invented
        self.use_judge = use_judge
        self.assistant_instructions = tuple(assistant_instructions)
        self.judge = dspy.Predict(JudgeTrajectory)
        if lm is not None:
            self.judge.set_lm(lm)

    def _prepare(
        self, domain: Domain, task: Task, messages: Sequence[Message], plan: PlanPair | str | None,
        checker_feedback: str,
    ) -> tuple[list[Finding], dspy.Prediction | dict[str, str]]:
        """Everything but the judge's call, shared by `forward` and `aforward`: the pre-check findings
        and either the final prediction (a decisive finding, or no judge) or the judge's inputs."""
        findings = dialogue_findings(task, messages, domain, leak_ngram=self.leak_ngram,
                                     check_invented=self.check_invented,
                                     assistant_instructions=self.assistant_instructions)
        if any(f.decisive for f in findings):
            return findings, _rejected(findings)
        if not self.use_judge:
            return findings, _unjudged(findings)
        notes = "\n".join(f"Pre-check note: {f.reason}" for f in findings)
        return findings, {
            "policy": domain.policy,
            "scenario": task.user_scenario.render(),
            "rubric": render_rubric(plan),
            "transcript": transcript(messages, viewer=OBSERVER),
            "checker_feedback": "\n".join(p for p in (checker_feedback, notes) if p) or "(no checker result)",
        }

    def forward(
        self,
        domain: Domain,
        task: Task,
        messages: Sequence[Message],
        plan: PlanPair | str | None = None,
        checker_feedback: str = "",
    ) -> dspy.Prediction:
        """Returns ``Prediction(verdict: Verdict, findings: list[Finding], judged: bool)``."""
        findings, step = self._prepare(domain, task, messages, plan, checker_feedback)
        if isinstance(step, dspy.Prediction):
            return step
        return _judged(self.judge(**step), findings)

    async def aforward(
        self,
        domain: Domain,
        task: Task,
        messages: Sequence[Message],
        plan: PlanPair | str | None = None,
        checker_feedback: str = "",
    ) -> dspy.Prediction:
        findings, step = self._prepare(domain, task, messages, plan, checker_feedback)
        if isinstance(step, dspy.Prediction):
            return step
        return _judged(await self.judge.acall(**step), findings)


def _rejected(findings: list[Finding]) -> dspy.Prediction:
    decisive = [f for f in findings if f.decisive]
    verdict = Verdict(passed=False, reasons=[f.reason for f in decisive], blame=decisive[0].blame)
    return dspy.Prediction(verdict=verdict, findings=findings, judged=False)


def _judged(raw: dspy.Prediction, findings: list[Finding]) -> dspy.Prediction:
    passed = bool(raw.passed)
    blame = raw.blame if raw.blame in _BLAMES else "task"
    if passed:
        blame = "none"
    elif blame == "none":
        blame = "assistant"  # a failed dialogue with nobody to blame: the trajectory is at fault
    reasons = [str(r) for r in (raw.reasons or []) if str(r).strip()]
    return dspy.Prediction(verdict=Verdict(passed=passed, reasons=reasons, blame=blame), findings=findings,
                           judged=True)


def _unjudged(findings: list[Finding]) -> dspy.Prediction:
    notes = [f"pre-check note: {f.reason}" for f in findings]
    verdict = Verdict(passed=True, reasons=["pre-checks only: the LLM judge is off (use_judge=False)", *notes],
                      blame="none")
    return dspy.Prediction(verdict=verdict, findings=findings, judged=False)
