"""Scoring regimes: the same reward, paid for in three different ways.

Why: "how fast is scoring" has three honest answers, depending on what the caller keeps alive
between trajectories, and a number quoted without its regime is misleading by up to three orders
of magnitude:

- ``warm_checker``: one long-lived process keeps a checker per task, with the task's initial and
  gold states already built (the data engine, the optimizers' metric, the RL reward);
- ``fresh_checker``: the parsed domain DB is shared, but every trajectory gets a new checker, so
  the gold actions are replayed each time (a caller that scores each trajectory on its own);
- ``fresh_db``: every trajectory also loads its domain and parses the DB from its file, as a
  process that scores one trajectory and exits would (what tau2's evaluator does on every call).

The three functions here define the regimes once, so the benchmark times exactly them and a test
pins that they give the same rewards. All use the RL reward (``Checker.for_reward``: tau2's reward
without NL assertions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from eigendspy.scoring.checker import Checker

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.core.messages import Message
    from eigendspy.core.task import Task

REGIMES = ("warm_checker", "fresh_checker", "fresh_db")

Case = tuple["Task", Sequence["Message"]]


def warm_checkers(domain: Domain, tasks: Iterable[Task], *, tau2_compat: bool = True,
                  with_hashes: bool = False) -> dict[str, Checker]:
    """One reward checker per task with its initial and gold states built: the cache a warm scorer keeps.

    Building the states is the part ``score_warm`` does not pay; caching them per task (never per
    trajectory) is what a long-lived scorer does.
    """
    checkers = {}
    for task in tasks:
        checker = Checker.for_reward(domain, task, tau2_compat=tau2_compat, with_hashes=with_hashes)
        checker.initial_env()
        checker.gold_env()
        checkers[task.id] = checker
    return checkers


def score_warm(checkers: Mapping[str, Checker], cases: Sequence[Case]) -> list[float]:
    """Rewards from the prepared per-task checkers (regime ``warm_checker``)."""
    return [checkers[task.id].score(messages).reward for task, messages in cases]


def score_fresh_checker(domain: Domain, cases: Sequence[Case], *, tau2_compat: bool = True) -> list[float]:
    """Rewards with a new checker per trajectory over the shared parsed DB (regime ``fresh_checker``)."""
    return [Checker.for_reward(domain, task, tau2_compat=tau2_compat).score(messages).reward
            for task, messages in cases]


def score_fresh_db(load_domain: Callable[[], Domain], cases: Sequence[Case], *,
                   tau2_compat: bool = True) -> list[float]:
    """Rewards with the domain loaded and its DB parsed anew for every trajectory (regime ``fresh_db``).

    Args:
        load_domain: Returns a *new* domain whose DB is parsed from its file on first use, e.g.
            ``lambda: get_domain("retail", data_dir=...)``; a domain cached across calls would make
            this the ``fresh_checker`` regime.
        cases: ``(task, messages)`` pairs; the task objects are plain data and work with any
            domain loaded from the same files.
    """
    return [Checker.for_reward(load_domain(), task, tau2_compat=tau2_compat).score(messages).reward
            for task, messages in cases]
