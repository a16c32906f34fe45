"""Tests for eigendspy.eval.pass_k: tau2 pass^k semantics, infra-error handling, CIs and reports."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eigendspy.eval.pass_k import (
    EvalReport,
    TrialOutcome,
    evaluate_outcomes,
    pass_hat_k,
    plot_pass_hat_k,
)


def _outcomes(task_id: str, rewards: list[float], start: int = 0) -> list[TrialOutcome]:
    return [TrialOutcome(task_id=task_id, trial=start + i, reward=r) for i, r in enumerate(rewards)]


def _three_tasks() -> list[TrialOutcome]:
    # a: 3/4 successes, b: 4/4, c: 1/4 (0.5 is partial credit, not a success).
    return _outcomes("a", [1, 1, 0, 1]) + _outcomes("b", [1, 1, 1, 1]) + _outcomes("c", [0, 0.5, 1, 0])


# ---------------------------------------------------------------- pass_hat_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (4, 2, 2, 1 / 6),  # C(2,2)/C(4,2) = 1/6
        (4, 3, 2, 1 / 2),  # 3/6
        (5, 3, 3, 1 / 10),  # 1/10
        (4, 4, 4, 1.0),
        (7, 7, 3, 1.0),
        (4, 1, 2, 0.0),  # c < k
        (4, 0, 1, 0.0),
        (10, 7, 1, 0.7),
    ],
)
def test_pass_hat_k_hand_computed(n: int, c: int, k: int, expected: float) -> None:
    assert pass_hat_k(n, c, k) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 2, 0), (3, 2, 4)])
def test_pass_hat_k_rejects_undefined_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


@given(n=st.integers(1, 40), data=st.data())
def test_pass_hat_k_properties(n: int, data: st.DataObject) -> None:
    c = data.draw(st.integers(0, n))
    values = [pass_hat_k(n, c, k) for k in range(1, n + 1)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[0] == c / n


# ---------------------------------------------------------------- TrialOutcome


def test_success_uses_tau2_tolerance_and_infra_never_succeeds() -> None:
    assert TrialOutcome(task_id="t", trial=0, reward=1 - 5e-7).success
    assert not TrialOutcome(task_id="t", trial=0, reward=1 - 1e-5).success
    assert not TrialOutcome(task_id="t", trial=0, reward=None).success
    infra = TrialOutcome(task_id="t", trial=0, reward=1.0, termination_reason="infrastructure_error")
    assert infra.is_infra_error and not infra.success
    assert TrialOutcome(task_id="t", trial=0, reward=None, infra_error="LLM API 503").is_infra_error


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.5, 1.5])
def test_invalid_reward_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        TrialOutcome(task_id="t", trial=0, reward=bad)


# ---------------------------------------------------------------- evaluate_outcomes


def test_three_task_example_by_hand() -> None:
    report = evaluate_outcomes(_three_tasks(), n_boot=0)
    # Per task: a (n=4,c=3): 3/4, 3/6, 1/4, 0; b: 1,1,1,1; c (n=4,c=1): 1/4, 0, 0, 0.
    # Means: pass^1 = (3/4+1+1/4)/3 = 2/3; pass^2 = (1/2+1+0)/3 = 1/2;
    #        pass^3 = (1/4+1+0)/3 = 5/12; pass^4 = (0+1+0)/3 = 1/3.
    assert report.ks == [1, 2, 3, 4]
    expected = {1: 2 / 3, 2: 1 / 2, 3: 5 / 12, 4: 1 / 3}
    for k, v in expected.items():
        assert report.pass_hat_k[k] == pytest.approx(v, abs=1e-12)
    # Reward sum = 3 + 4 + 1.5 = 8.5 over 12 trials.
    assert report.avg_reward == pytest.approx(8.5 / 12, abs=1e-12)
    assert report.num_tasks == 3 and report.num_trials == 12
    rows = {r.task_id: r for r in report.per_task}
    assert (rows["a"].num_trials, rows["a"].num_successes) == (4, 3)
    assert rows["a"].pass_hat_k[2] == pytest.approx(0.5)
    assert rows["c"].mean_reward == pytest.approx(1.5 / 4)
    assert rows["c"].num_successes == 1
    assert report.pass_hat_k_ci == {} and report.avg_reward_ci is None
    assert report.warnings == [] and report.infra_errors == []


def _with_infra() -> list[TrialOutcome]:
    return _three_tasks() + [
        TrialOutcome(task_id="a", trial=4, reward=None, termination_reason="infrastructure_error"),
        TrialOutcome(task_id="b", trial=4, reward=None, infra_error="simulation raised TimeoutError"),
    ]


def test_infra_errors_excluded_by_default() -> None:
    report = evaluate_outcomes(_with_infra(), n_boot=0)
    baseline = evaluate_outcomes(_three_tasks(), n_boot=0)
    assert report.pass_hat_k == baseline.pass_hat_k
    assert report.avg_reward == baseline.avg_reward
    assert report.num_trials == 12
    assert {(o.task_id, o.trial) for o in report.infra_errors} == {("a", 4), ("b", 4)}
    assert not report.counted_infra_errors_as_failures


def test_infra_errors_counted_as_failures() -> None:
    report = evaluate_outcomes(_with_infra(), count_infra_errors_as_failures=True, n_boot=0)
    # a: n=5,c=3; b: n=5,c=4; c: n=4,c=1. Default ks stay 1..4 (min n = 4).
    # pass^1 = (3/5 + 4/5 + 1/4)/3 = 0.55; pass^4 = (0 + C(4,4)/C(5,4) + 0)/3 = 1/15.
    assert report.ks == [1, 2, 3, 4]
    assert report.pass_hat_k[1] == pytest.approx(0.55, abs=1e-12)
    assert report.pass_hat_k[4] == pytest.approx(1 / 15, abs=1e-12)
    assert report.avg_reward == pytest.approx(8.5 / 14, abs=1e-12)
    assert report.num_trials == 14 and len(report.infra_errors) == 2
    assert report.counted_infra_errors_as_failures


def test_task_with_only_infra_errors_is_dropped_with_warning() -> None:
    outcomes = _three_tasks() + [TrialOutcome(task_id="z", trial=0, reward=None, infra_error="boom")]
    report = evaluate_outcomes(outcomes, n_boot=0)
    assert report.num_tasks == 3
    assert any("z" in w for w in report.warnings)


def test_tasks_with_too_few_trials_excluded_from_that_k() -> None:
    outcomes = _three_tasks() + _outcomes("d", [1, 0])
    assert evaluate_outcomes(outcomes, n_boot=0).ks == [1, 2]  # default stops at min trials
    report = evaluate_outcomes(outcomes, ks=[3, 1], n_boot=0)
    assert report.ks == [1, 3]
    # pass^1 over 4 tasks: (3/4 + 1 + 1/4 + 1/2)/4 = 5/8; pass^3 over a, b, c only = 5/12.
    assert report.pass_hat_k[1] == pytest.approx(5 / 8)
    assert report.pass_hat_k[3] == pytest.approx(5 / 12)
    assert len(report.warnings) == 1 and "pass^3" in report.warnings[0] and "d" in report.warnings[0]
    assert 3 not in {r.task_id: r for r in report.per_task}["d"].pass_hat_k


def test_errors_for_bad_input() -> None:
    with pytest.raises(ValueError, match="no outcomes"):
        evaluate_outcomes([])
    dup = _three_tasks() + [TrialOutcome(task_id="b", trial=2, reward=0.0)]
    with pytest.raises(ValueError, match=r"task_id='b', trial=2"):
        evaluate_outcomes(dup)
    with pytest.raises(ValueError, match="infrastructure errors"):
        evaluate_outcomes([TrialOutcome(task_id="a", trial=0, reward=None, infra_error="x")])
    with pytest.raises(ValueError, match="no task has 9"):
        evaluate_outcomes(_three_tasks(), ks=[9])
    with pytest.raises(ValueError):
        evaluate_outcomes(_three_tasks(), ks=[0])
    with pytest.raises(ValueError):
        evaluate_outcomes(_three_tasks(), alpha=1.5)


# ---------------------------------------------------------------- bootstrap CIs


def _population(copies: int) -> list[TrialOutcome]:
    """`copies` replicas of a fixed 4-task pattern with mixed successes and partial rewards."""
    patterns = [[1, 1, 0, 1], [1, 1, 1, 1], [0, 0.5, 1, 0], [0, 0, 0.25, 1]]
    out: list[TrialOutcome] = []
    for c in range(copies):
        for j, rewards in enumerate(patterns):
            out += _outcomes(f"t{c}_{j}", rewards)
    return out


def test_ci_contains_point_estimate_and_shrinks_with_more_tasks() -> None:
    small = evaluate_outcomes(_population(3), n_boot=2000, seed=1)
    large = evaluate_outcomes(_population(30), n_boot=2000, seed=1)
    for report in (small, large):
        lo, hi = report.avg_reward_ci
        assert lo - 1e-12 <= report.avg_reward <= hi + 1e-12
        for k in report.ks:
            lo, hi = report.pass_hat_k_ci[k]
            assert 0.0 <= lo - 1e-12 <= report.pass_hat_k[k] <= hi + 1e-12 <= 1.0 + 2e-12
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(large.avg_reward_ci) < width(small.avg_reward_ci)
    for k in (1, 2, 3):
        assert width(large.pass_hat_k_ci[k]) < width(small.pass_hat_k_ci[k])


def test_bootstrap_is_deterministic_with_seed() -> None:
    outcomes = _population(5)
    a = evaluate_outcomes(outcomes, n_boot=500, seed=123)
    b = evaluate_outcomes(list(reversed(outcomes)), n_boot=500, seed=123)
    assert a.pass_hat_k_ci == b.pass_hat_k_ci
    assert a.avg_reward_ci == b.avg_reward_ci


# ---------------------------------------------------------------- serialisation and rendering


def test_json_round_trip(tmp_path) -> None:
    report = evaluate_outcomes(_with_infra(), n_boot=200, domain="airline", name="baseline")
    path = report.to_json(tmp_path / "out" / "report.json")
    loaded = EvalReport.from_json(path)
    assert loaded == report
    assert loaded.pass_hat_k_ci[2] == report.pass_hat_k_ci[2]
    assert isinstance(next(iter(loaded.pass_hat_k)), int)


def test_markdown_lists_every_task() -> None:
    report = evaluate_outcomes(_with_infra() + _outcomes("d", [1, 0]), ks=[1, 3], n_boot=100, name="run")
    md = report.to_markdown()
    for task_id in ("a", "b", "c", "d"):
        assert f"| {task_id} |" in md
    assert "pass^3" in md and "Infrastructure errors" in md and "Warnings" in md


def test_plot_writes_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    report = evaluate_outcomes(_population(3), n_boot=200)
    path = plot_pass_hat_k(report, tmp_path / "plot.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


# ---------------------------------------------------------------- property test on the aggregate


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_report_pass_hat_k_properties(tasks: list[list[float]]) -> None:
    outcomes = [o for i, rewards in enumerate(tasks) for o in _outcomes(f"task{i}", rewards)]
    report = evaluate_outcomes(outcomes, n_boot=0)
    values = [report.pass_hat_k[k] for k in report.ks]
    assert report.ks == list(range(1, min(len(t) for t in tasks) + 1))
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:], strict=False))
    # At k=1 pass^k is the per-task success rate averaged over tasks.
    rate = math.fsum(sum(r == 1.0 for r in t) / len(t) for t in tasks) / len(tasks)
    assert report.pass_hat_k[1] == pytest.approx(rate, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_pass_hat_1_is_plain_success_rate_with_equal_trials(n: int, data: st.DataObject) -> None:
    tasks = data.draw(st.lists(st.lists(st.booleans(), min_size=n, max_size=n), min_size=1, max_size=10))
    outcomes = [o for i, wins in enumerate(tasks) for o in _outcomes(f"task{i}", [float(w) for w in wins])]
    report = evaluate_outcomes(outcomes, n_boot=0)
    successes = sum(sum(t) for t in tasks)
    assert report.pass_hat_k[1] == pytest.approx(successes / (n * len(tasks)), abs=1e-12)
    assert report.avg_reward == pytest.approx(successes / (n * len(tasks)), abs=1e-12)
