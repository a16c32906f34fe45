"""Run a set of episodes end to end and write machine-readable results.

Shared by ``eigendspy eval`` and ``eigendspy demo``: episodes run on the orchestrator with a
progress bar, every episode is scored by its task's checker, and the run directory receives
the tau2 results file (re-gradable by ``tau2 evaluate-trajs``), the pass^k report (JSON and
markdown) and a plot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from eigendspy.core.domain import Domain
from eigendspy.core.messages import TerminationReason
from eigendspy.core.orchestrator import Episode, EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.participants import Participant
from eigendspy.core.task import Task
from eigendspy.eval.pass_k import EvalReport, TrialOutcome, evaluate_outcomes, plot_pass_hat_k
from eigendspy.eval.tau2_results import RunInfo, write_results
from eigendspy.lm.bounded_state import bounded_lm_state
from eigendspy.scoring.checker import Checker
from eigendspy.scoring.nl_judge import NLJudge


class RunOutputs(BaseModel):
    report: EvalReport
    results_path: Path
    report_path: Path
    markdown_path: Path
    plot_path: Path | None


def episode_outcome(ep: Episode) -> TrialOutcome:
    infra = ep.termination_reason is TerminationReason.INFRASTRUCTURE_ERROR
    return TrialOutcome(task_id=ep.task_id, trial=ep.trial, seed=ep.seed, reward=ep.reward,
                        termination_reason=ep.termination_reason.value, infra_error=ep.error if infra else None)


def run_episodes(
    domain: Domain,
    tasks: Sequence[Task],
    assistant: Participant,
    user: Participant,
    *,
    trials: int = 1,
    concurrency: int = 32,
    nl_judge: NLJudge | None = None,
    exclude_nl: bool = True,
    tau2_compat: bool = False,
    config: EpisodeConfig | None = None,
    progress: bool = True,
    keep_lm_history: bool = False,
) -> list[Episode]:
    """Run and score ``trials`` episodes per task (NL assertions excluded unless a judge is given).

    DSPy roles run with DSPy's trace and LM history off (`eigendspy.lm.bounded_state`) so memory stays
    flat over long evaluations; ``keep_lm_history=True`` keeps both (``dspy.inspect_history``).
    """
    with bounded_lm_state(keep_trace=keep_lm_history, keep_history=keep_lm_history):
        return _run(domain, tasks, assistant, user, trials=trials, concurrency=concurrency, nl_judge=nl_judge,
                    exclude_nl=exclude_nl, tau2_compat=tau2_compat, config=config, progress=progress)


def _run(domain: Domain, tasks: Sequence[Task], assistant: Participant, user: Participant, *, trials: int,
         concurrency: int, nl_judge: NLJudge | None, exclude_nl: bool, tau2_compat: bool,
         config: EpisodeConfig | None, progress: bool) -> list[Episode]:
    orch = Orchestrator(
        domain, assistant, user, config=config, tau2_compat=tau2_compat,
        checker_factory=lambda t: Checker(domain, t, nl_judge=nl_judge, exclude_nl=exclude_nl or nl_judge is None,
                                          tau2_compat=tau2_compat),
    )
    total = len(tasks) * trials
    if not progress:
        return run_sync(orch.run_many(tasks, trials, concurrency=concurrency))
    columns = (TextColumn("[bold]episodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=False) as bar:
        job = bar.add_task("episodes", total=total)
        done: Callable[[Episode], None] = lambda _ep: bar.advance(job)  # noqa: E731
        return run_sync(orch.run_many(tasks, trials, concurrency=concurrency, on_done=done))


def write_run(out_dir: str | Path, domain: Domain, tasks: Sequence[Task], episodes: Sequence[Episode],
              run: RunInfo | None = None) -> RunOutputs:
    """Write results.json (tau2 format), eval.json, eval.md and pass_k.png into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = write_results(out / "results.json", domain, tasks, episodes, run)
    report = evaluate_outcomes([episode_outcome(e) for e in episodes])
    report_path = report.to_json(out / "eval.json")
    markdown = out / "eval.md"
    markdown.write_text(report.to_markdown())
    try:
        plot = plot_pass_hat_k(report, out / "pass_k.png")
    except ImportError:
        plot = None
    return RunOutputs(report=report, results_path=results, report_path=report_path, markdown_path=markdown,
                      plot_path=plot)
