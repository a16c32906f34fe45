"""The three scoring regimes the benchmark times must be the same reward, paid for differently."""

from __future__ import annotations

import pytest

from eigendspy.core.environment import Environment
from eigendspy.core.oracle import build_trajectory
from eigendspy.domains import get_domain
from eigendspy.scoring.regimes import REGIMES, score_fresh_checker, score_fresh_db, score_warm, warm_checkers


@pytest.fixture(scope="module")
def mock_cases(tau2_dir):
    """Gold and no-action trajectories of every tau2 mock task (initialization data, actions,
    message history and env assertions all occur among them)."""
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    tasks = domain.tasks()
    cases, kinds = [], []
    for task in tasks:
        for kind, actions in (("gold", task.gold_actions), ("none", [])):
            env = Environment.for_task(domain, task, tau2_compat=True)
            cases.append((task, build_trajectory(task, env, actions)))
            kinds.append((task.id, kind))
    return domain, tasks, cases, kinds


def test_regimes_give_identical_rewards(mock_cases, tau2_dir):
    domain, tasks, cases, kinds = mock_cases
    warm = score_warm(warm_checkers(domain, tasks), cases)
    fresh = score_fresh_checker(domain, cases)
    loaded = []

    def load():
        loaded.append(get_domain("mock", data_dir=tau2_dir / "mock"))
        return loaded[-1]

    fresh_db = score_fresh_db(load, cases)
    assert warm == fresh == fresh_db
    assert len(warm) == len(cases) == 2 * len(tasks)
    by_case = dict(zip(kinds, warm, strict=True))
    assert by_case[("create_task_1", "gold")] == 1.0  # gold passes
    assert by_case[("create_task_1", "none")] == 0.0  # doing nothing fails
    # fresh_db really loads a new domain (and so parses its DB) for every trajectory
    assert len(loaded) == len(cases) and len({id(d) for d in loaded}) == len(cases)
    assert REGIMES == ("warm_checker", "fresh_checker", "fresh_db")
