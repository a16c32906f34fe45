"""`evolve`: compile one role with GEPA, MIPROv2 or bootstrapped few-shot, and report honestly.

Why a wrapper around DSPy's optimizers: each reports progress differently (GEPA's detailed
results and callbacks, MIPROv2's trial logs, BootstrapFewShot nothing), and GEPA returns the
program it was given, without complaint, when every reflection failed — e.g. a reflection LM
that does not answer the JSON its proposer asks for. `evolve` scores the program before and
after on a held-out ``valset`` the optimizer never sees, counts proposals (attempted, failed,
accepted), collects LM usage from DSPy's history, and sets ``status`` to ``"improved"``,
``"unchanged"`` or ``"all_proposals_failed"`` with a message saying why.

The optimizer learns and selects on ``trainset`` only (GEPA's Pareto set and MIPROv2's trial set
are the trainset), so ``after`` is a held-out number, not a selection-biased one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import dspy

from eigendspy.lm.bounded_state import keep_lm_state
from eigendspy.optimizers.metrics import Metric, as_bool_metric, score_of, validate_metric
from eigendspy.optimizers.report import (
    CurvePoint,
    EvalScores,
    EvolveReport,
    InstructionChange,
    LMUsage,
    ModelUsage,
    load_compiled,
    role_name,
    write_run,
)
from eigendspy.optimizers.role_lms import keep_role_lms, record_role_lms

logger = logging.getLogger(__name__)

OptimizerName = Literal["gepa", "miprov2", "bootstrap"]
Budget = Literal["light", "medium", "heavy"] | int
_BUDGETS = ("light", "medium", "heavy")
_BOOTSTRAP_DEMOS = {"light": 2, "medium": 4, "heavy": 8}
_GEPA_LOGGER = "dspy.teleprompt.gepa.gepa"

__all__ = ["Budget", "OptimizerName", "evaluate_program", "evolve", "load_compiled"]


# --- evaluation and usage -----------------------------------------------------------------------------------


def evaluate_program(program: dspy.Module, examples: Sequence[dspy.Example], metric: Metric,
                     lm: dspy.LM | None = None, num_threads: int | None = None) -> EvalScores:
    """Mean metric score over ``examples``; an example whose program call raises scores 0 and is counted.

    With ``num_threads > 1`` examples run in threads, each in a copy of the caller's context (so
    ``lm`` and any other ``dspy.context`` settings apply there too); results keep example order.
    """

    def one(example: dspy.Example) -> tuple[float, str | None]:
        try:
            return score_of(metric(example, program(**example.inputs()))), None
        except Exception as exc:  # a crashing item is a score of 0, reported
            return 0.0, f"{type(exc).__name__}: {exc}"

    with dspy.context(lm=lm) if lm is not None else contextlib.nullcontext():
        if num_threads and num_threads > 1 and len(examples) > 1:
            with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
                futures = [pool.submit(contextvars.copy_context().run, one, ex) for ex in examples]
                results = [f.result() for f in futures]
        else:
            results = [one(ex) for ex in examples]
    scores = [score for score, _ in results]
    errors = [error for _, error in results if error]
    return EvalScores(mean=sum(scores) / len(scores) if scores else 0.0, scores=scores, errors=len(errors),
                      first_error=errors[0] if errors else None)


@contextlib.contextmanager
def lm_usage() -> Iterator[LMUsage]:
    """Collect calls, tokens and cost of every LM call made inside the block (DSPy's global history, kept on
    inside for episodes: `keep_lm_state`). It sees copies of LMs too (MIPROv2 copies its prompt model per
    proposal), which per-LM histories would miss; it holds 10,000 entries, beyond that counts are lower bounds."""
    from dspy.clients.base_lm import GLOBAL_HISTORY, MAX_HISTORY_SIZE

    usage = LMUsage()
    seen = {entry.get("uuid") for entry in GLOBAL_HISTORY}
    try:
        with keep_lm_state(trace=False, history=True):
            yield usage
    finally:
        new = [e for e in list(GLOBAL_HISTORY) if e.get("uuid") not in seen]
        if dspy.settings.disable_history:
            usage.complete, usage.note = False, "DSPy history is disabled"
        elif len(new) >= MAX_HISTORY_SIZE:
            usage.complete, usage.note = False, f"DSPy keeps {MAX_HISTORY_SIZE} calls; counts are lower bounds"
        for entry in new:
            tokens = entry.get("usage") or {}
            prompt = int(tokens.get("prompt_tokens") or tokens.get("input_tokens") or 0)
            completion = int(tokens.get("completion_tokens") or tokens.get("output_tokens") or 0)
            cost = float(entry.get("cost") or 0.0)
            model = usage.by_model.setdefault(str(entry.get("model")), ModelUsage())
            for target in (usage, model):
                target.calls += 1
                target.prompt_tokens += prompt
                target.completion_tokens += completion
                target.cost += cost


# --- optimizer runs -----------------------------------------------------------------------------------------


class _Outcome:
    """What an optimizer run tells us besides the compiled program."""

    def __init__(self) -> None:
        self.curve: list[CurvePoint] = []
        self.curve_source = ""
        self.proposals = self.failed = self.accepted = 0
        self.errors: list[str] = []
        self.notes: list[str] = []


class _GEPARecorder(logging.Handler):
    """GEPA callback (proposals started/ended, acceptances) and log handler (why a reflection failed).

    GEPA swallows a failed reflection (it logs it and retries once); a proposal that started but
    never ended is a failed one, and the log line carries the reason.
    """

    def __init__(self, outcome: _Outcome) -> None:
        super().__init__(logging.INFO)
        self.outcome = outcome
        self.started = self.ended = 0

    def on_proposal_start(self, event: dict) -> None:
        self.started += 1

    def on_proposal_end(self, event: dict) -> None:
        self.ended += 1

    def on_candidate_accepted(self, event: dict) -> None:
        self.outcome.accepted += 1

    def on_merge_accepted(self, event: dict) -> None:
        self.outcome.accepted += 1
        self.outcome.notes.append(f"GEPA merged candidates {list(event.get('parent_ids', []))}")

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if text.startswith("Per-task reflection failed") and len(self.outcome.errors) < 5:
            self.outcome.errors.append(" ".join(text.split(":", 1)[-1].split())[:500])


def _best_so_far(points: list[tuple[int, int | None, float, str]]) -> list[CurvePoint]:
    best, out = float("-inf"), []
    for step, calls, score, label in points:
        best = max(best, score)
        out.append(CurvePoint(step=step, metric_calls=calls, score=score, best=best, label=label))
    return out


def _run_gepa(program: dspy.Module, trainset: list, metric: Metric, budget: Budget, reflection_lm: dspy.LM | None,
              seed: int, num_threads: int | None, kwargs: dict[str, Any], outcome: _Outcome) -> dspy.Module:
    if reflection_lm is None:
        raise ValueError("GEPA needs reflection_lm=... (a strong LM that rewrites instructions from feedback)")
    recorder = _GEPARecorder(outcome)
    gepa_kwargs = dict(kwargs.pop("gepa_kwargs", None) or {})
    gepa_kwargs["callbacks"] = [*gepa_kwargs.get("callbacks", []), recorder]
    limit = {"auto": budget} if isinstance(budget, str) else {"max_metric_calls": budget}
    optimizer = dspy.GEPA(metric=metric, reflection_lm=reflection_lm, seed=seed, num_threads=num_threads,
                          track_stats=True, gepa_kwargs=gepa_kwargs, **limit, **kwargs)
    gepa_logger = logging.getLogger(_GEPA_LOGGER)
    level = gepa_logger.level
    gepa_logger.addHandler(recorder)
    if not gepa_logger.isEnabledFor(logging.INFO):
        gepa_logger.setLevel(logging.INFO)
    try:
        compiled = optimizer.compile(program, trainset=trainset, valset=trainset)
    finally:
        gepa_logger.removeHandler(recorder)
        gepa_logger.setLevel(level)
    outcome.proposals, outcome.failed = recorder.started, recorder.started - recorder.ended
    results = getattr(compiled, "detailed_results", None)
    if results is not None:
        order = sorted(range(len(results.candidates)), key=lambda i: (results.discovery_eval_counts[i], i))
        outcome.curve = _best_so_far([(i, results.discovery_eval_counts[i], results.val_aggregate_scores[i],
                                       f"candidate {i}" + (" (seed)" if i == 0 else "")) for i in order])
        outcome.curve_source = "GEPA candidates' mean score on its Pareto set (the trainset), by metric calls"
    return compiled


class _MIPROv2(dspy.MIPROv2):
    """MIPROv2 that remembers its proposed instructions (it keeps only their indices in trial logs)."""

    proposed: dict[int, list[str]] | None = None

    def _propose_instructions(self, *args: Any, **kwargs: Any) -> dict[int, list[str]]:
        self.proposed = super()._propose_instructions(*args, **kwargs)
        return self.proposed


def _run_miprov2(program: dspy.Module, trainset: list, metric: Metric, budget: Budget, prompt_lm: dspy.LM | None,
                 task_lm: dspy.LM | None, seed: int, num_threads: int | None, threshold: float, kwargs: dict[str, Any],
                 outcome: _Outcome) -> dspy.Module:
    if prompt_lm is None and dspy.settings.lm is None:
        raise ValueError("MIPROv2 needs an LM to propose instructions: pass reflection_lm=... or task_lm=...")
    init_names = set(inspect.signature(dspy.MIPROv2.__init__).parameters) - {"self"}
    init = {k: kwargs.pop(k) for k in list(kwargs) if k in init_names}
    init.setdefault("max_bootstrapped_demos", 0)  # instruction-only by default: demos of long dialogues bloat
    init.setdefault("max_labeled_demos", 0)       # prompts; pass them in optimizer_kwargs to enable
    if isinstance(budget, str):
        init["auto"] = budget
    else:
        init["auto"] = None
        init.setdefault("num_candidates", max(2, min(budget, 6)))
        kwargs.setdefault("num_trials", budget)
    kwargs.setdefault("minibatch", len(trainset) > kwargs.get("minibatch_size", 35))

    def float_metric(gold: Any, pred: Any, trace: Any = None) -> float:
        return score_of(metric(gold, pred, trace))

    optimizer = _MIPROv2(metric=float_metric, prompt_model=prompt_lm, task_model=task_lm, seed=seed,
                         num_threads=num_threads, metric_threshold=threshold, **init)
    compiled = optimizer.compile(program, trainset=trainset, valset=trainset, **kwargs)
    if optimizer.proposed is not None:
        outcome.proposals = sum(max(0, len(c) - 1) for c in optimizer.proposed.values())
    logs = getattr(compiled, "trial_logs", None)
    if logs:
        points = []
        for trial in sorted(logs):
            log = logs[trial]
            full = "full_eval_score" in log
            score = log.get("full_eval_score", log.get("mb_score"))
            if score is None:
                continue
            chosen = [f"{k.split('_')[0]}:{v}" for k, v in log.items() if k.endswith("_predictor_instruction")]
            label = ("full" if full else "minibatch") + (f" instr {','.join(chosen)}" if chosen else " (seed)")
            points.append((trial, log.get("total_eval_calls_so_far"), float(score) / 100.0, label))
        outcome.curve = _best_so_far(points)
        outcome.curve_source = "MIPROv2 trial scores on its trial set (the trainset), by trial"
    else:
        outcome.notes.append("MIPROv2 trial logs were not available: before/after only")
    return compiled


def _run_bootstrap(program: dspy.Module, trainset: list, metric: Metric, budget: Budget, threshold: float,
                   kwargs: dict[str, Any], outcome: _Outcome) -> dspy.Module:
    demos = _BOOTSTRAP_DEMOS[budget] if isinstance(budget, str) else budget
    kwargs.setdefault("max_labeled_demos", 0)
    optimizer = dspy.BootstrapFewShot(metric=as_bool_metric(metric, threshold), max_bootstrapped_demos=demos,
                                      **kwargs)
    compiled = optimizer.compile(program, trainset=trainset)
    outcome.proposals = sum(len(p.demos) for _, p in compiled.named_predictors())
    outcome.notes.append("BootstrapFewShot has no iterations: before/after only; proposals = demos kept")
    return compiled


# --- evolve -------------------------------------------------------------------------------------------------


def _snapshot(program: dspy.Module) -> dict[str, tuple[str, int, str]]:
    return {name: (p.signature.instructions, len(p.demos), repr(p.demos)) for name, p in program.named_predictors()}


def _status(outcome: _Outcome, changed: bool, before: float, after: float, optimizer: str) -> tuple[str, str]:
    if changed:
        if after > before + 1e-9:
            return "improved", f"held-out score {before:.3f} -> {after:.3f} ({outcome.accepted} accepted proposals)"
        return "unchanged", (f"{optimizer} changed the program but the held-out score did not improve "
                             f"({before:.3f} -> {after:.3f}); the compiled program is returned anyway")
    if outcome.proposals == 0:
        why = ("no training trace reached the metric threshold, so no demos were kept" if optimizer == "bootstrap"
               else "the budget ran out first, or every training minibatch already scored perfectly")
        return "unchanged", f"{optimizer} made no proposals ({why}); the program is unchanged"
    if outcome.failed >= outcome.proposals:
        why = f": {outcome.errors[0]}" if outcome.errors else ""
        return "all_proposals_failed", (
            f"all {outcome.proposals} proposals failed before evaluation (the reflection LM's answers could not "
            f"be parsed into an instruction — it must answer the JSON the proposer asks for){why}; "
            "the returned program is the unchanged input")
    return "all_proposals_failed", (
        f"{outcome.proposals} proposals ({outcome.failed} could not be parsed, {outcome.proposals - outcome.failed} "
        "evaluated), none beat the program it was derived from; the returned program is the unchanged input — "
        "check that the metric's feedback says why items fail")


def evolve(
    program: dspy.Module,
    trainset: Sequence[dspy.Example],
    valset: Sequence[dspy.Example],
    metric: Metric,
    *,
    optimizer: OptimizerName = "gepa",
    budget: Budget = "light",
    reflection_lm: dspy.LM | None = None,
    task_lm: dspy.LM | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    role: str | None = None,
    threshold: float = 1.0,
    num_threads: int | None = None,
    optimizer_kwargs: dict[str, Any] | None = None,
) -> tuple[dspy.Module, EvolveReport]:
    """Compile ``program`` against ``metric`` and report before/after on the held-out ``valset``.

    Args:
        program: The program to evolve (a role, or a program under test such as `AssistantEpisode`).
        trainset: Examples the optimizer learns from and selects candidates on.
        valset: Held-out examples, used only to score the program before and after.
        metric: A GEPA feedback metric (five parameters; returns ``Prediction(score, feedback)``).
        optimizer: ``"gepa"`` (reflective, uses feedback), ``"miprov2"`` or ``"bootstrap"``.
        budget: ``"light" | "medium" | "heavy"`` (the optimizer's auto mode), or an int: GEPA's
            metric calls, MIPROv2's trials, or BootstrapFewShot's demos.
        reflection_lm: GEPA's reflection LM; MIPROv2's prompt model (default: ``task_lm``).
        task_lm: LM for predictors without their own (context LM during compile and evaluation); a
            predictor's own LM is kept through every optimizer (`eigendspy.optimizers.role_lms`).
        seed: Optimizer seed.
        out_dir: When given, save the compiled role (``compiled/<role>.json`` + a version), the
            report (JSON, markdown) and ``score_curve.png`` there.
        role: Artifact name (default: the program's ``evolved_role`` or snake-cased class name).
        threshold: Score that counts as a pass for BootstrapFewShot/MIPROv2 demo bootstrapping.
        num_threads: Evaluation threads, for the optimizer (DSPy's default when None) and before/after.
        optimizer_kwargs: Extra arguments for the optimizer (e.g. MIPROv2 ``num_candidates``).

    Returns:
        (compiled program, `EvolveReport`). Never silently "optimized": see ``report.status``.

    Example:
        ```python
        compiled, report = evolve(AssistantEpisode(domain, Assistant()), train, val, assistant_metric(domain),
                                  reflection_lm=dspy.LM("openai/gpt-4o"), task_lm=dspy.LM("openai/gpt-4o-mini"),
                                  out_dir="runs/demo")
        print(report.status, report.before.mean, report.after.mean)
        ```
    """
    started = time.perf_counter()
    validate_metric(metric)
    if optimizer not in ("gepa", "miprov2", "bootstrap"):
        raise ValueError(f"optimizer must be 'gepa', 'miprov2' or 'bootstrap', got {optimizer!r}")
    if not (budget in _BUDGETS or (isinstance(budget, int) and not isinstance(budget, bool) and budget > 0)):
        raise ValueError(f"budget must be one of {_BUDGETS} or a positive int, got {budget!r}")
    if not trainset or not valset:
        raise ValueError(f"trainset and valset must be non-empty (got {len(trainset)} and {len(valset)})")
    if not isinstance(program, dspy.Module) or not program.named_predictors():
        raise TypeError("program must be a dspy.Module with at least one predictor to optimize")
    role = role or role_name(program)
    trainset, valset = list(trainset), list(valset)

    with lm_usage() as eval_usage:
        before = evaluate_program(program, valset, metric, task_lm, num_threads)
    snapshot, role_lms = _snapshot(program), record_role_lms(program)
    outcome = _Outcome()
    kwargs = dict(optimizer_kwargs or {})
    t0 = time.perf_counter()
    with lm_usage() as opt_usage, dspy.context(lm=task_lm) if task_lm is not None else contextlib.nullcontext():
        if optimizer == "gepa":
            compiled = _run_gepa(program, trainset, metric, budget, reflection_lm, seed, num_threads, kwargs, outcome)
        elif optimizer == "miprov2":
            compiled = _run_miprov2(program, trainset, metric, budget, reflection_lm or task_lm, task_lm, seed,
                                    num_threads, threshold, kwargs, outcome)
        else:
            compiled = _run_bootstrap(program, trainset, metric, budget, threshold, kwargs, outcome)
    compiled = keep_role_lms(compiled, role_lms)  # stock optimizers drop or copy per-role LMs (role_lms.py)
    optimize_s = time.perf_counter() - t0
    with lm_usage() as more_eval:
        after = evaluate_program(compiled, valset, metric, task_lm, num_threads)
    eval_usage.merge(more_eval)

    final = _snapshot(compiled)
    changes = [InstructionChange(predictor=name, before=snapshot[name][0], after=final[name][0],
                                 demos_before=snapshot[name][1], demos_after=final[name][1])
               for name in final if name in snapshot]
    changed = any(snapshot.get(name) != state for name, state in final.items())
    if optimizer == "miprov2" and changed:
        outcome.accepted = sum(1 for c in changes if c.changed)
    elif optimizer == "bootstrap":
        outcome.accepted = outcome.proposals
    status, message = _status(outcome, changed, before.mean, after.mean, optimizer)
    if status != "improved":
        logger.warning("evolve(%s, %s): %s — %s", role, optimizer, status, message)
    report = EvolveReport(
        role=role, optimizer=optimizer, budget=budget, seed=seed, status=status, message=message,
        before=before, after=after, trainset_size=len(trainset), valset_size=len(valset),
        curve=outcome.curve, curve_source=outcome.curve_source, proposals=outcome.proposals,
        failed_proposals=max(0, outcome.failed), accepted_proposals=outcome.accepted,
        proposal_errors=outcome.errors, program_changed=changed, changes=changes,
        optimizer_usage=opt_usage, evaluation_usage=eval_usage, optimize_s=optimize_s, notes=outcome.notes,
    )
    report.runtime_s = time.perf_counter() - started
    if out_dir is not None:
        write_run(report, compiled, out_dir)
    return compiled, report
