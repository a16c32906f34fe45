"""Evaluation of agent episodes with tau2-bench semantics: pass^k, average reward and bootstrap CIs.

tau2-bench judges reliability, not just average skill: pass^k is the probability that *all* of k
independent trials of a task succeed, estimated without bias from n trials with c successes as
C(c, k) / C(n, k) and then averaged over tasks. This module reproduces that metric exactly so
numbers produced here are comparable with published tau2 results, and adds task-level bootstrap
confidence intervals because benchmark suites are small enough that point estimates mislead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from eigendspy.scoring.results import SUCCESS_TOLERANCE, is_success

INFRA_TERMINATION_REASON = "infrastructure_error"


class TrialOutcome(BaseModel):
    """One (task, trial) episode as it comes out of a simulation run.

    Attributes:
        task_id: Identifier of the benchmark task.
        trial: Trial index; unique per task so that accidental double-logging is caught.
        reward: Episode reward in [0, 1]; ``None`` when no reward was computed (counted as 0 unless
            the episode is an infrastructure error, which is excluded by default).
        termination_reason: tau2 termination reason, e.g. ``"user_stop"`` or ``"infrastructure_error"``.
        infra_error: Error message when the simulation itself failed (not the agent's fault).
        seed: Seed used for the episode, kept for reproducibility.
    """

    model_config = ConfigDict(frozen=True)

    task_id: str
    trial: int
    reward: float | None
    termination_reason: str | None = None
    infra_error: str | None = None
    seed: int | None = None

    @field_validator("reward")
    @classmethod
    def _check_reward(cls, value: float | None) -> float | None:
        # NaN or out-of-range rewards would silently corrupt every aggregate, so reject them early.
        if value is not None and not (
            math.isfinite(value) and -SUCCESS_TOLERANCE <= value <= 1 + SUCCESS_TOLERANCE
        ):
            raise ValueError(f"reward must be a finite number in [0, 1], got {value!r}")
        return value

    @property
    def is_infra_error(self) -> bool:
        """Whether the episode failed for infrastructure reasons and says nothing about the agent."""
        return self.infra_error is not None or self.termination_reason == INFRA_TERMINATION_REASON

    @property
    def success(self) -> bool:
        """tau2's success criterion: reward within 1e-6 of 1 (infra errors never succeed)."""
        if self.is_infra_error or self.reward is None:
            return False
        return is_success(self.reward)


def pass_hat_k(num_trials: int, num_successes: int, k: int) -> float:
    """Unbiased estimate of P(k i.i.d. trials all succeed) from ``num_trials`` observed trials.

    Exact integer binomials are used (rather than a product of ratios) so the result is the
    correctly rounded value of C(c, k) / C(n, k) and matches tau2-bench bit for bit.

    Args:
        num_trials: Number of observed trials n (>= 1).
        num_successes: Number of successful trials c, 0 <= c <= n.
        k: Number of trials that must all succeed, 1 <= k <= n.

    Returns:
        C(c, k) / C(n, k), which is 0 when c < k.

    Raises:
        ValueError: If the arguments are outside the range where the estimator is defined.
    """
    if num_trials < 1:
        raise ValueError(f"num_trials must be >= 1, got {num_trials}")
    if not 0 <= num_successes <= num_trials:
        raise ValueError(f"num_successes must be in [0, {num_trials}], got {num_successes}")
    if not 1 <= k <= num_trials:
        raise ValueError(f"k must be in [1, num_trials={num_trials}], got {k}")
    return math.comb(num_successes, k) / math.comb(num_trials, k)


class TaskStats(BaseModel):
    """Per-task row of the report; only trials that count toward the metrics are included."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    num_trials: int
    num_successes: int
    mean_reward: float
    pass_hat_k: dict[int, float] = Field(default_factory=dict)
    """pass^k for every requested k this task has enough trials for."""


class EvalReport(BaseModel):
    """Aggregate evaluation result; serialisable so runs can be compared and archived."""

    model_config = ConfigDict(frozen=True)

    domain: str | None = None
    name: str | None = None
    num_tasks: int
    num_trials: int
    ks: list[int]
    pass_hat_k: dict[int, float]
    pass_hat_k_ci: dict[int, tuple[float, float]] = Field(default_factory=dict)
    avg_reward: float
    avg_reward_ci: tuple[float, float] | None = None
    per_task: list[TaskStats]
    infra_errors: list[TrialOutcome] = Field(default_factory=list)
    counted_infra_errors_as_failures: bool = False
    warnings: list[str] = Field(default_factory=list)
    n_boot: int = 0
    alpha: float = 0.05
    seed: int | None = None

    def to_json(self, path: str | Path) -> Path:
        """Write the report as indented JSON and return the path (parent folders are created)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return out

    @classmethod
    def from_json(cls, path: str | Path) -> EvalReport:
        """Load a report written by :meth:`to_json` (JSON object keys are coerced back to ints)."""
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))

    def to_markdown(self) -> str:
        """Render a human-readable summary, per-task table, warnings and infra errors."""
        title = " / ".join(part for part in (self.name, self.domain) if part) or "Evaluation"
        conf = f"{100 * (1 - self.alpha):g}% CI"
        infra_mode = "counted as failures" if self.counted_infra_errors_as_failures else "excluded"
        lines = [
            f"# {_md(title)}",
            "",
            f"Tasks: {self.num_tasks} · counted trials: {self.num_trials} · infra errors: "
            f"{len(self.infra_errors)} ({infra_mode})",
            "",
            f"| metric | value | {conf} |",
            "|---|---|---|",
            f"| avg reward | {self.avg_reward:.4f} | {_fmt_ci(self.avg_reward_ci)} |",
        ]
        lines += [
            f"| pass^{k} | {v:.4f} | {_fmt_ci(self.pass_hat_k_ci.get(k))} |"
            for k, v in self.pass_hat_k.items()
        ]
        lines += ["", "## Per task", ""]
        lines.append(
            "| task_id | n | successes | mean reward | " + " | ".join(f"pass^{k}" for k in self.ks) + " |"
        )
        lines.append("|---" * (4 + len(self.ks)) + "|")
        for row in self.per_task:
            cells = [f"{row.pass_hat_k[k]:.3f}" if k in row.pass_hat_k else "–" for k in self.ks]
            lines.append(
                f"| {_md(row.task_id)} | {row.num_trials} | {row.num_successes} | {row.mean_reward:.3f} | "
                + " | ".join(cells)
                + " |"
            )
        if self.warnings:
            lines += ["", "## Warnings", ""] + [f"- {_md(w)}" for w in self.warnings]
        if self.infra_errors:
            lines += ["", "## Infrastructure errors", "", "| task_id | trial | reason |", "|---|---|---|"]
            for o in self.infra_errors:
                lines.append(
                    f"| {_md(o.task_id)} | {o.trial} | {_md(o.infra_error or o.termination_reason or '')} |"
                )
        return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """Escape characters that would break a markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _percentile_ci(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def evaluate_outcomes(
    outcomes: Iterable[TrialOutcome],
    ks: Sequence[int] | None = None,
    *,
    count_infra_errors_as_failures: bool = False,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
    domain: str | None = None,
    name: str | None = None,
) -> EvalReport:
    """Aggregate episode outcomes into tau2-style metrics with task-level bootstrap CIs.

    Infrastructure errors are excluded by default because they measure the harness, not the
    agent (tau2's own scoring); ``count_infra_errors_as_failures=True`` follows the leaderboard
    convention instead, scoring them as failed trials with reward 0. Either way they are listed in
    ``report.infra_errors``. The average reward is the mean over all counted trials, as tau2 does.

    CIs resample *tasks* with replacement, because tasks (not trials) are the independent units:
    trials of one task are strongly correlated, so resampling trials would understate uncertainty.

    Args:
        outcomes: Episodes; each (task_id, trial) pair must be unique.
        ks: Values of k to report. Defaults to 1..min(counted trials per task), like tau2.
            Tasks with fewer than k counted trials are left out of pass^k (see ``report.warnings``).
        count_infra_errors_as_failures: Score infra errors as failed trials instead of dropping them.
        n_boot: Number of bootstrap resamples; 0 disables confidence intervals.
        alpha: Two-sided miscoverage level; the CI is the [alpha/2, 1 - alpha/2] percentile range.
        seed: Seed for ``numpy.random.default_rng`` so reports are reproducible.
        domain: Optional metadata copied into the report.
        name: Optional metadata copied into the report.

    Returns:
        The aggregated :class:`EvalReport`.

    Raises:
        ValueError: On empty input, duplicate (task_id, trial) pairs, no countable trials, invalid
            ``ks``/``n_boot``/``alpha``, or a k that no task has enough trials for.
    """
    items = list(outcomes)
    if not items:
        raise ValueError("evaluate_outcomes got no outcomes; nothing to evaluate")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    seen: set[tuple[str, int]] = set()
    duplicates: list[tuple[str, int]] = []
    for o in items:
        key = (o.task_id, o.trial)
        if key in seen:
            duplicates.append(key)
        seen.add(key)
    if duplicates:
        shown = ", ".join(f"(task_id={t!r}, trial={i})" for t, i in sorted(set(duplicates)))
        raise ValueError(f"duplicate (task_id, trial) pairs: {shown}")

    infra = [o for o in items if o.is_infra_error]
    # Rewards and successes of the trials that count, grouped by task.
    by_task: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for o in items:
        if o.is_infra_error:
            if count_infra_errors_as_failures:
                by_task[o.task_id].append((0.0, False))
            continue
        # A missing reward without an infra error means the run finished unscored: that is a failure.
        by_task[o.task_id].append((o.reward if o.reward is not None else 0.0, o.success))
    if not by_task:
        raise ValueError(
            f"no countable trials: all {len(items)} outcomes are infrastructure errors "
            "(pass count_infra_errors_as_failures=True to score them as failures)"
        )

    warnings: list[str] = []
    dropped = sorted({o.task_id for o in infra} - by_task.keys())
    if dropped:
        warnings.append(
            f"{len(dropped)} task(s) had only infrastructure errors and are excluded: {', '.join(dropped)}"
        )

    task_ids = sorted(by_task)  # sorted so CIs do not depend on the order outcomes arrived in
    counts = np.array([len(by_task[t]) for t in task_ids])
    succ = np.array([sum(s for _, s in by_task[t]) for t in task_ids])
    reward_sums = np.array([math.fsum(r for r, _ in by_task[t]) for t in task_ids])

    if ks is None:
        ks_list = list(range(1, int(counts.min()) + 1))
    else:
        if any(k < 1 for k in ks):
            raise ValueError(f"every k must be >= 1, got {list(ks)}")
        ks_list = sorted(set(ks))
        if not ks_list:
            raise ValueError("ks must not be empty")
        if ks_list[-1] > counts.max():
            raise ValueError(
                f"no task has {ks_list[-1]} counted trials (max is {int(counts.max())}); lower k"
            )

    rng = np.random.default_rng(seed)
    avg_reward = math.fsum(reward_sums) / int(counts.sum())
    avg_reward_ci = None
    if n_boot:
        idx = rng.integers(0, len(task_ids), size=(n_boot, len(task_ids)))
        avg_reward_ci = _percentile_ci(reward_sums[idx].sum(axis=1) / counts[idx].sum(axis=1), alpha)

    per_task_pk: dict[str, dict[int, float]] = {t: {} for t in task_ids}
    overall: dict[int, float] = {}
    overall_ci: dict[int, tuple[float, float]] = {}
    for k in ks_list:
        eligible = [i for i, n in enumerate(counts) if n >= k]
        short = [task_ids[i] for i, n in enumerate(counts) if n < k]
        if short:
            warnings.append(
                f"pass^{k}: excluded {len(short)} task(s) with fewer than {k} counted trials: "
                + ", ".join(short)
            )
        values = np.array([pass_hat_k(int(counts[i]), int(succ[i]), k) for i in eligible])
        for i, v in zip(eligible, values, strict=True):
            per_task_pk[task_ids[i]][k] = float(v)
        overall[k] = math.fsum(values) / len(values)
        if n_boot:
            draws = rng.integers(0, len(values), size=(n_boot, len(values)))
            overall_ci[k] = _percentile_ci(values[draws].mean(axis=1), alpha)

    per_task = [
        TaskStats(
            task_id=t,
            num_trials=int(counts[i]),
            num_successes=int(succ[i]),
            mean_reward=float(reward_sums[i] / counts[i]),
            pass_hat_k=per_task_pk[t],
        )
        for i, t in enumerate(task_ids)
    ]
    return EvalReport(
        domain=domain,
        name=name,
        num_tasks=len(task_ids),
        num_trials=int(counts.sum()),
        ks=ks_list,
        pass_hat_k=overall,
        pass_hat_k_ci=overall_ci,
        avg_reward=avg_reward,
        avg_reward_ci=avg_reward_ci,
        per_task=per_task,
        infra_errors=infra,
        counted_infra_errors_as_failures=count_infra_errors_as_failures,
        warnings=warnings,
        n_boot=n_boot,
        alpha=alpha,
        seed=seed,
    )


def plot_pass_hat_k(report: EvalReport, path: str | Path) -> Path:
    """Save a PNG of pass^k against k with bootstrap CI error bars.

    matplotlib is imported lazily so the evaluation core stays importable without it, and the Agg
    canvas is used directly (no pyplot) so plotting works headless and leaves global state alone.

    Args:
        report: Report to plot.
        path: Destination PNG file; parent folders are created.

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ks = sorted(report.pass_hat_k)
    ys = [report.pass_hat_k[k] for k in ks]
    fig = Figure(figsize=(5, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if all(k in report.pass_hat_k_ci for k in ks):
        # max(0, ...) guards against tiny negative lengths from float noise when the CI is degenerate.
        yerr = [
            [max(0.0, y - report.pass_hat_k_ci[k][0]) for k, y in zip(ks, ys, strict=True)],
            [max(0.0, report.pass_hat_k_ci[k][1] - y) for k, y in zip(ks, ys, strict=True)],
        ]
        ax.errorbar(ks, ys, yerr=yerr, marker="o", capsize=4)
    else:
        ax.plot(ks, ys, marker="o")
    ax.set_xticks(ks)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("k")
    ax.set_ylabel("pass^k")
    ax.set_title(" / ".join(p for p in (report.name, report.domain) if p) or "pass^k")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
