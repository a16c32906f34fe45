"""Checker behaviour beyond the tau2 oracle: predicates, judges, termination, sync semantics."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from eigendspy.agents.nl_judge import DSPyNLJudge
from eigendspy.core.domain import Domain, tool
from eigendspy.core.environment import Environment
from eigendspy.core.oracle import build_trajectory
from eigendspy.core.task import Action, EvaluationCriteria, RewardType, StatePredicate, Task, UserScenario
from eigendspy.domains import get_domain
from eigendspy.scoring.checker import Checker
from eigendspy.testing.judge import ScriptedJudge
from eigendspy.testing.lm import scripted_lm


@pytest.fixture(scope="module")
def mock(tau2_dir):
    return get_domain("mock", data_dir=tau2_dir / "mock")


def _task(predicates=None, nl=None, basis=(RewardType.DB,)):
    return Task(
        id="t",
        user_scenario=UserScenario(instructions="Mark task_1 completed."),
        evaluation_criteria=EvaluationCriteria(
            actions=[Action(action_id="a", name="update_task_status",
                            arguments={"task_id": "task_1", "status": "completed"})],
            nl_assertions=nl, reward_basis=list(basis), state_predicates=predicates,
        ),
    )


def _gold(domain, task, actions=None):
    env = Environment.for_task(domain, task)
    return build_trajectory(task, env, task.gold_actions if actions is None else actions)


def test_state_predicates_pass_fail_and_refuse(mock):
    task = _task([
        StatePredicate(expression="db['tasks']['task_1']['status'] == 'completed'", description="task done"),
        StatePredicate(expression="len(db['users']['user_1']['tasks']) == 1"),
    ])
    checker = Checker(mock, task)
    good = checker.score(_gold(mock, task))
    assert good.reward == 1.0 and good.passed and all(p.met for p in good.state_predicates)
    bad = checker.score(_gold(mock, task, actions=[]))
    assert not bad.passed and "task done" in bad.feedback()
    evil = Task(**{**task.model_dump(), "evaluation_criteria": {
        **task.evaluation_criteria.model_dump(),
        "state_predicates": [{"expression": "__import__('os').system('true')"}]}})
    result = Checker(mock, evil).score(_gold(mock, evil))
    assert result.reward == 1.0 and not result.passed  # tau2 reward unaffected, predicate fails
    assert "not allowed" in result.state_predicates[0].error


def test_nl_judge_required_unless_excluded(mock):
    task = _task(nl=["The agent confirmed"], basis=(RewardType.DB, RewardType.NL_ASSERTION))
    with pytest.raises(ValueError, match="needs an NL judge"):
        Checker(mock, task)
    assert Checker.for_reward(mock, task).score(_gold(mock, task)).reward == 1.0
    assert Checker(mock, task, nl_judge=ScriptedJudge(False)).score(_gold(mock, task)).reward == 0.0


def test_reward_checker_drops_nl_assertions_from_the_basis(mock):
    task = _task(nl=["The agent confirmed"], basis=(RewardType.DB, RewardType.NL_ASSERTION))
    reward = Checker.for_reward(mock, task)
    assert reward.exclude_nl and reward.reward_basis == [RewardType.DB]
    made = Checker.reward_factory(mock)(task)
    assert made.reward_basis == [RewardType.DB] and made.task is task and made.domain is mock


def test_dspy_judge_through_scripted_lm(mock):
    task = _task(nl=["The agent confirmed the update"], basis=(RewardType.NL_ASSERTION,))
    seen = []

    def policy(req):
        seen.append(req.inputs.get("assertion", ""))
        return {"reasoning": "checked", "justification": "the agent said so", "met": "summary" in
                req.inputs.get("conversation", "").lower() or "handled" in req.inputs.get("conversation", "")}

    judge = DSPyNLJudge(lm=scripted_lm(policy))
    result = Checker(mock, task, nl_judge=judge).score(_gold(mock, task))
    assert result.reward == 1.0 and result.nl_assertions[0].met
    assert "The agent confirmed the update" in seen[0]


def test_premature_termination_scores_zero_with_reason(mock):
    task = _task()
    result = Checker(mock, task).score(_gold(mock, task), "max_steps")
    assert result.reward == 0.0 and "max_steps" in result.failures[0]
    assert Checker(mock, task).score(_gold(mock, task), "agent_stop").reward == 1.0


class Counter(BaseModel):
    value: int = 0
    mirrored: int = 0


class CounterDB(BaseModel):
    counter: Counter = Counter()


@tool(kind="write")
def bump(db: CounterDB) -> str:
    """Increment the counter."""
    db.counter.value += 1
    return "ok"


def _sync(env: Environment) -> None:
    with env.edit() as view:
        if view.counter.mirrored != view.counter.value:
            view.counter.mirrored = view.counter.value


def test_sync_runs_on_gold_unless_tau2_compat():
    domain = Domain("counter", CounterDB, [bump], "policy", lambda: CounterDB(), sync=_sync)
    task = Task(id="c", user_scenario=UserScenario(instructions="bump"), evaluation_criteria=EvaluationCriteria(
        actions=[Action(action_id="a", name="bump")], reward_basis=[RewardType.DB]))
    messages = build_trajectory(task, Environment.for_task(domain, task), task.gold_actions)
    assert Checker(domain, task).score(messages).reward == 1.0
    # tau2 does not sync the gold env after the gold actions: the mirrored field lags behind
    compat = Checker(domain, task, tau2_compat=True).score(messages)
    assert compat.reward == 0.0 and "mirrored" in compat.feedback()
