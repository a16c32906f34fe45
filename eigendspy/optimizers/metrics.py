"""Metrics built from checkers and validators, in the GEPA feedback protocol.

Why feedback and not just a score: GEPA's reflection LM rewrites a role's instruction from the
*reasons* its outputs failed, so every metric here returns ``dspy.Prediction(score=float,
feedback=str)`` whose feedback is the checker's or validator's human-readable failure reasons —
the same sentences the data engine logs and feeds back to its repair loops.

A metric scores a prediction of a *program under test* (`eigendspy.optimizers.programs`, whose names
are re-exported here): for the dialogue roles that prediction is a whole episode.

Metrics must be pure functions of (gold, pred): optimizers evaluate the same example many times,
in parallel threads, so nothing here is stateful across calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import dspy

from eigendspy.agents.trajectory_prechecks import user_findings
from eigendspy.core.environment import Environment
from eigendspy.core.oracle import build_trajectory
from eigendspy.core.orchestrator import Episode
from eigendspy.core.task import Task
from eigendspy.engine.filters import DuplicateFilter
from eigendspy.optimizers.programs import (  # noqa: F401 (re-export)
    EPISODE_CONFIG,
    AssistantEpisode,
    FrozenContext,
    TaskGeneration,
    UserEpisode,
    play_episode,
)
from eigendspy.scoring.checker import Checker
from eigendspy.scoring.execution import execution_check

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

Metric = Callable[..., Any]
"""``metric(gold, pred, trace=None, pred_name=None, pred_trace=None) -> dspy.Prediction | float``."""


# --- the protocol ---------------------------------------------------------------------------------------


def validate_metric(metric: Metric) -> Metric:
    """Check once, at the boundary, that ``metric`` speaks GEPA's five-argument protocol.

    Raises:
        TypeError: With the expected signature and a one-line wrapper to fix a two-argument metric.
    """
    if not callable(metric):
        raise TypeError(f"metric must be callable, got {type(metric).__name__}")
    try:
        inspect.signature(metric).bind(None, None, None, None, None)
    except TypeError as exc:
        raise TypeError(
            "metric must accept (gold, pred, trace=None, pred_name=None, pred_trace=None) and return "
            f"dspy.Prediction(score=float, feedback=str); {getattr(metric, '__name__', metric)!r} does not ({exc}). "
            "Wrap a simpler metric: lambda gold, pred, trace=None, pred_name=None, pred_trace=None: "
            "my_metric(gold, pred)"
        ) from exc
    except ValueError:  # builtins without an introspectable signature: trust the caller
        pass
    return metric


def score_of(result: Any) -> float:
    """The float score of a metric result (a feedback ``Prediction``, a number or a bool)."""
    if isinstance(result, dspy.Prediction):
        return float(result.score)
    if isinstance(result, bool | int | float):
        return float(result)
    raise TypeError(f"a metric returns dspy.Prediction(score=..., feedback=...) or a number, not {type(result)}")


def feedback_of(result: Any) -> str:
    """The feedback text of a metric result ('' for plain numbers)."""
    return str(result.get("feedback", "") or "") if isinstance(result, dspy.Prediction) else ""


def as_bool_metric(metric: Metric, threshold: float = 1.0) -> Callable[..., bool]:
    """A pass/fail view for BootstrapFewShot and MIPROv2's demo bootstrapping.

    Needed because ``bool(dspy.Prediction(score=0.0))`` is True: passed as-is, a feedback metric
    would accept every trace as a good demonstration.
    """
    validate_metric(metric)

    def passed(gold: Any, pred: Any, trace: Any = None) -> bool:
        return score_of(metric(gold, pred, trace)) >= threshold

    passed.__name__ = f"{getattr(metric, '__name__', 'metric')}_passed"
    return passed


def verdict(passed: bool, reasons: Sequence[str], *, subject: str, pred_name: str | None = None,
            score: float | None = None, notes: Sequence[str] = ()) -> dspy.Prediction:
    """A feedback prediction: score 1/0 (or ``score``) and the reasons, addressed to ``subject``."""
    who = f"{subject} (predictor {pred_name})" if pred_name else subject
    if passed:
        text = f"The {who} output passed every check."
    else:
        text = f"The {who} output failed these checks:\n" + "\n".join(f"- {r}" for r in reasons)
    if notes:
        text += "\nNotes:\n" + "\n".join(f"- {n}" for n in notes)
    return dspy.Prediction(score=float(score if score is not None else passed), feedback=text)


# --- role metrics -----------------------------------------------------------------------------------------


def _role_of(pred_name: str | None) -> str | None:
    """Which role a predictor name belongs to (``"user.turn"`` -> "user"), for per-role feedback."""
    if not pred_name:
        return None
    head = pred_name.split(".")[0].lower()
    return "user" if "user" in head else "assistant" if "assistant" in head else head


def _check_of(pred: Any, domain: Domain, gold: Any) -> Any:
    """The prediction's CheckResult, scoring its episode when only the episode is given."""
    check = getattr(pred, "check", None)
    if check is None and getattr(pred, "episode", None) is not None:
        ep: Episode = pred.episode
        check = Checker.for_reward(domain, gold.task).score(ep.messages, ep.termination_reason)
    return check


def _no_check(pred: Any) -> list[str]:
    error = getattr(getattr(pred, "episode", None), "error", None)
    return [f"the episode produced no checker result{f' ({error})' if error else ''}"]


def assistant_metric(domain: Domain) -> Metric:
    """Checker pass of a full episode (`AssistantEpisode`); feedback = the checker's failure reasons."""

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
               pred_trace: Any = None) -> dspy.Prediction:
        check = _check_of(pred, domain, gold)
        if check is None:
            return verdict(False, _no_check(pred), subject="assistant", pred_name=pred_name)
        reasons = list(check.failures)
        error = getattr(getattr(pred, "episode", None), "error", None)
        if error:
            reasons.append(f"the episode ended with an error: {error}")
        return verdict(check.passed, reasons, subject="assistant", pred_name=pred_name)

    return metric


def user_simulator_metric(domain: Domain, *, leak_ngram: int = 10, check_invented: bool = True) -> Metric:
    """The episode (`UserEpisode`, oracle assistant) passes its checker and the user is not to blame.

    Blame comes from the TrajectoryValidator's deterministic pre-checks (premature stop, leaked
    instructions, invented values). With ``pred_name`` of an assistant predictor (both roles in one
    program) the feedback keeps to the checker's reasons; for the user it leads with the findings.
    """

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
               pred_trace: Any = None) -> dspy.Prediction:
        check = _check_of(pred, domain, gold)
        if check is None:
            return verdict(False, _no_check(pred), subject="simulated user", pred_name=pred_name)
        findings = user_findings(gold.task, pred.episode.messages, domain, leak_ngram=leak_ngram,
                                 check_invented=check_invented)
        blamed = [f"user to blame ({f.kind}): {f.reason}" for f in findings]
        checker = [f"checker: {r}" for r in check.failures]
        passed = check.passed and not findings
        if _role_of(pred_name) == "assistant":
            return verdict(passed, checker or blamed, subject="assistant", pred_name=pred_name)
        return verdict(passed, blamed + checker, subject="simulated user", pred_name=pred_name)

    return metric


def task_generator_metric(domain: Domain, *, earlier_tasks: Iterable[Task] = (),
                          reject_null_pass: bool = False) -> Metric:
    """The generated task passes `execution_check` (mutation-verified) and is no near-duplicate.

    Earlier tasks are ``earlier_tasks`` plus the example's own ``earlier_tasks`` field (tasks
    already accepted for that plan/entities): duplicates are judged against fixed sets, never
    against what the metric saw before, so scores do not depend on evaluation order.
    """
    base = list(earlier_tasks)

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
               pred_trace: Any = None) -> dspy.Prediction:
        task = getattr(pred, "task", None)
        if task is None:
            reasons = list(getattr(pred, "errors", None) or ["the generator produced no task"])
            return verdict(False, reasons, subject="task generator", pred_name=pred_name)
        report = execution_check(domain, task, reject_null_pass=reject_null_pass)
        reasons = list(report.reasons)
        duplicates = DuplicateFilter()
        for earlier in [*base, *(gold.get("earlier_tasks") or [])]:
            duplicates.add(earlier)
        decision = duplicates.check(task)
        if decision.rejected:
            reasons.append(decision.reason)
        notes = [f"a null policy passes this task ({', '.join(report.null_policies_passing)})"] if report.null_pass \
            else []
        return verdict(not reasons, reasons, subject="task generator", pred_name=pred_name, notes=notes)

    return metric


def validator_calibration_metric() -> Metric:
    """Agreement of a validator's verdict with executable ground truth on planted good/bad items.

    The example carries ``expected_passed`` (from the checker), optionally ``expected_blame`` and
    ``truth_reasons``; the prediction carries ``verdict`` (a `Verdict`). Full credit for the right
    decision and blame, half for the right decision with the wrong blame.
    """

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
               pred_trace: Any = None) -> dspy.Prediction:
        said = pred.verdict
        expected = bool(gold.expected_passed)
        truth = "; ".join(gold.get("truth_reasons") or []) or "(no reasons recorded)"
        if said.passed != expected:
            if said.passed:
                reason = f"the validator accepted an item that executable ground truth rejects: {truth}"
            else:
                why = "; ".join(said.reasons) or "no reason given"
                reason = f"the validator rejected an item that passes every executable check (its reasons: {why})"
            return verdict(False, [reason], subject="validator", pred_name=pred_name)
        want = gold.get("expected_blame")
        if not expected and want and said.blame != want:
            reason = f"right decision, wrong blame: it blamed {said.blame!r}, ground truth blames {want!r} ({truth})"
            return verdict(False, [reason], subject="validator", pred_name=pred_name, score=0.5)
        return verdict(True, [], subject="validator", pred_name=pred_name)

    return metric


def planted_trajectory_items(domain: Domain, tasks: Iterable[Task], *,
                             with_checker_feedback: bool = False) -> list[dspy.Example]:
    """Calibration items for a trajectory validator: per task, the gold dialogue and a broken one.

    The broken dialogue drops the task's last assistant write (the assistant is to blame); both are
    labelled by the checker, so the ground truth is executable. Tasks without an assistant write
    give only the good item. Inputs: ``domain, task, messages, checker_feedback``.
    """
    items = []
    for task in tasks:
        checker = Checker.for_reward(domain, task)
        writes = [i for i, a in enumerate(task.gold_actions)
                  if a.requestor == "assistant" and domain.toolkit.mutates_state(a.name)]
        variants = [(list(task.gold_actions), "none")]
        if writes:
            variants.append(([a for i, a in enumerate(task.gold_actions) if i != writes[-1]], "assistant"))
        for actions, blame in variants:
            messages = build_trajectory(task, Environment.for_task(domain, task), actions)
            result = checker.score(messages)
            example = dspy.Example(
                domain=domain, task=task, messages=messages,
                checker_feedback=result.feedback() if with_checker_feedback else "",
                expected_passed=result.passed, expected_blame=None if result.passed else blame,
                truth_reasons=list(result.failures),
            )
            items.append(example.with_inputs("domain", "task", "messages", "checker_feedback"))
    return items


def blank_feedback(metric: Metric) -> Metric:
    """The same scores with empty feedback: the ablation showing reasons, not scores, drive GEPA."""

    def metric_without_reasons(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
                               pred_trace: Any = None) -> dspy.Prediction:
        return dspy.Prediction(score=score_of(metric(gold, pred, trace, pred_name, pred_trace)), feedback="")

    return metric_without_reasons

