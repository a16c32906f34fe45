"""Checker: tau2-bench's reward, exactly, plus eigendspy's state predicates.

The checker is the single source of truth downstream: the data engine keeps only dialogues it
accepts, optimizers use it as their metric, GRPO as its reward and ``eval`` for pass^k. It
therefore reproduces tau2's rules component by component:

- reward 0 unless the episode ended by a user or agent stop;
- DB: replay the trajectory's state-changing tool calls on a fresh environment and compare with
  the gold actions replayed on another (decided from copy-on-write overlays; tau2's hashes are
  computed only when ``with_hashes=True``);
- ENV_ASSERTION on the replayed environment; ACTION by name + ``compare_args`` anywhere in the
  trajectory; COMMUNICATE as a case-insensitive substring of comma-stripped assistant text;
  NL_ASSERTION through a pluggable judge (removed from the basis with ``exclude_nl=True``,
  which is how RL rewards are computed);
- the product over ``reward_basis``.

Deliberate difference from tau2 (``tau2_compat=False``, the default): the domain's sync hook
runs on the gold environment after every gold action, as it does on the replayed one. tau2
skips it there, which makes some dual-control gold states unreachable; ``tau2_compat=True``
reproduces tau2 for parity numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from eigendspy.core.environment import Environment
from eigendspy.core.messages import STOP_REASONS, Message, TerminationReason, ToolCall
from eigendspy.core.state import describe_differences
from eigendspy.core.task import RewardType, Task
from eigendspy.scoring.results import (
    ActionCheck,
    CheckResult,
    CommunicateCheck,
    DBCheck,
    EnvAssertionCheck,
    PredicateCheck,
)

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain
    from eigendspy.scoring.nl_judge import NLJudge

_ENV_BASIS = (RewardType.DB, RewardType.ENV_ASSERTION)


def trajectory_tool_calls(messages: Sequence[Message]) -> list[ToolCall]:
    """Every tool call made by either side, in order."""
    return [c for m in messages if m.role in ("assistant", "user") and m.tool_calls for c in m.tool_calls]


class Checker:
    """Scores trajectories of one task.

    Args:
        domain: The domain the task lives in.
        task: The task whose ``evaluation_criteria`` define success.
        nl_judge: Judge for NL assertions; required only when the basis has NL_ASSERTION and
            the task lists assertions (and ``exclude_nl`` is False).
        exclude_nl: Drop NL_ASSERTION from the basis (the RL reward: LLM judges never enter it).
        tau2_compat: Reproduce tau2 exactly where eigendspy deliberately differs.
        with_hashes: Also report tau2's DB hashes (tens of ms per state on large DBs).

    Example:
        ```python
        checker = Checker.for_reward(domain, task)
        result = checker.score(messages)
        result.reward, result.failures
        ```
    """

    def __init__(
        self,
        domain: Domain,
        task: Task,
        *,
        nl_judge: NLJudge | None = None,
        exclude_nl: bool = False,
        tau2_compat: bool = False,
        with_hashes: bool = False,
    ) -> None:
        self.domain = domain
        self.task = task
        self.exclude_nl = exclude_nl
        self.tau2_compat = tau2_compat
        self.with_hashes = with_hashes
        self.nl_judge = nl_judge
        basis = task.reward_basis
        if exclude_nl:
            basis = [b for b in basis if b is not RewardType.NL_ASSERTION]
        self.reward_basis = basis
        criteria = task.evaluation_criteria
        if (
            RewardType.NL_ASSERTION in basis
            and criteria is not None
            and criteria.nl_assertions
            and nl_judge is None
        ):
            raise ValueError(
                f"task {task.id!r} needs an NL judge (its reward basis has NL_ASSERTION and it lists "
                f"{len(criteria.nl_assertions)} assertions): pass nl_judge=..., or exclude_nl=True"
            )
        self._lock = threading.Lock()
        self._init_env: Environment | None = None
        self._gold_env: Environment | None = None

    # -- cached reference states -------------------------------------------------------
    def initial_env(self) -> Environment:
        """Initialization data + actions, without the message history (the replay's start)."""
        with self._lock:
            if self._init_env is None:
                self._init_env = Environment.for_task(
                    self.domain, self.task, include_history=False, tau2_compat=self.tau2_compat
                )
            return self._init_env

    def gold_env(self) -> Environment:
        """The task's initial state (history included) with the gold actions applied."""
        with self._lock:
            if self._gold_env is None:
                env = Environment.for_task(self.domain, self.task, tau2_compat=self.tau2_compat)
                for i, action in enumerate(self.task.gold_actions):
                    if self.tau2_compat:
                        # tau2 replays gold actions without any sync.
                        env.make_tool_call(action.name, action.requestor, **action.arguments)
                    else:
                        # eigendspy replays them as a live episode runs them: the sync hook after
                        # every successful call, as on the replayed env. One sync at the end is not
                        # enough for dual control: e.g. in telecom the user can only pay once the
                        # sync has turned the agent's payment request into a request on the phone.
                        env.execute(action.as_call(f"gold_{i}"), action.requestor)
                if not self.tau2_compat:
                    env.sync()
                self._gold_env = env
            return self._gold_env

    def replay(self, messages: Sequence[Message]) -> Environment:
        """A fresh environment with the trajectory's state-changing tool calls re-executed."""
        env = self.initial_env().fork()
        env.replay(list(messages))
        env.sync()
        return env

    # -- scoring -----------------------------------------------------------------------
    @classmethod
    def for_reward(cls, domain: Domain, task: Task, *, tau2_compat: bool = False,
                   with_hashes: bool = False) -> Checker:
        """The verifiable reward: tau2's reward with NL assertions removed from the basis.

        What RL, the engine's acceptance, the optimizers' metrics and checker verification use: an
        LLM judge never enters a reward a policy is trained or selected on.
        """
        return cls(domain, task, exclude_nl=True, tau2_compat=tau2_compat, with_hashes=with_hashes)

    @classmethod
    def reward_factory(cls, domain: Domain) -> Callable[[Task], Checker]:
        """``task -> Checker.for_reward(domain, task)``: the orchestrator's ``checker_factory`` for rewards."""
        return lambda task: cls.for_reward(domain, task)

    def score(
        self,
        messages: Sequence[Message],
        termination_reason: TerminationReason | str = TerminationReason.USER_STOP,
    ) -> CheckResult:
        """Score one trajectory (the full message list, message history included). Never raises
        on model behaviour; a broken task or assertion gives reward 0 and ``evaluation_error``."""
        reason = TerminationReason(termination_reason)
        try:
            return self._score(messages, reason)
        except Exception as exc:  # tau2 would crash here; we report instead
            return CheckResult(
                task_id=self.task.id,
                reward=0.0,
                reward_basis=self.reward_basis,
                termination_reason=reason,
                evaluation_error=f"{type(exc).__name__}: {exc}",
                failures=[f"evaluation failed: {type(exc).__name__}: {exc}"],
            )

    def _score(self, messages: Sequence[Message], reason: TerminationReason) -> CheckResult:
        task = self.task
        result = CheckResult(task_id=task.id, reward=1.0, reward_basis=self.reward_basis, termination_reason=reason)
        criteria = task.evaluation_criteria
        if criteria is None:
            result.notes["note"] = "task has no evaluation criteria"
            return self._finish(result, reason)
        predicted = self.replay(messages)
        self._check_env(predicted, result)
        self._check_actions(messages, result)
        self._check_communicate(messages, result)
        self._check_nl(messages, result)
        self._check_predicates(predicted, result)
        basis = set(self.reward_basis)
        reward = 1.0
        for kind in RewardType:
            if kind in basis and kind.value in result.breakdown:
                reward *= result.breakdown[kind.value]
        result.breakdown = {k: v for k, v in result.breakdown.items() if RewardType(k) in basis}
        result.reward = reward
        return self._finish(result, reason)

    @staticmethod
    def _finish(result: CheckResult, reason: TerminationReason) -> CheckResult:
        if reason not in STOP_REASONS:
            result.reward = 0.0
            result.failures.insert(0, f"the episode ended with '{reason.value}' instead of a user or agent stop")
            result.notes["note"] = f"Simulation terminated prematurely. Termination reason: {reason.value}"
        return result

    def _check_env(self, predicted: Environment, result: CheckResult) -> None:
        criteria = self.task.evaluation_criteria
        if criteria.actions is None and criteria.env_assertions is None:
            # tau2: nothing to compare against, so the env component is 1.0 and not itemized.
            result.db_check = DBCheck(db_match=True, db_reward=1.0)
            if self.with_hashes:
                result.db_check.predicted_db_hash = predicted.db_hash()
                result.db_check.predicted_user_db_hash = predicted.user_db_hash()
            result.notes["env"] = "No expected actions or env assertions"
            return
        gold = self.gold_env()
        match = predicted.same_state(gold)
        check = DBCheck(db_match=match, db_reward=1.0 if match else 0.0)
        if self.with_hashes:
            check.predicted_db_hash, check.predicted_user_db_hash = predicted.db_hash(), predicted.user_db_hash()
            check.gold_db_hash, check.gold_user_db_hash = gold.db_hash(), gold.user_db_hash()
        result.db_check = check
        result.breakdown[RewardType.DB.value] = check.db_reward
        if not match and RewardType.DB in self.reward_basis:
            diffs = describe_differences(predicted.agent_state, gold.agent_state)
            if predicted.user_state is not None and gold.user_state is not None:
                diffs += [f"user device: {d}" for d in describe_differences(predicted.user_state, gold.user_state)]
            detail = "; ".join(diffs) if diffs else "states differ"
            result.failures.append(f"the final database does not match the expected one ({detail})")
        assertion_reward = 1.0
        for assertion in self.task.evaluation_criteria.env_assertions or []:
            value = predicted.evaluate_function(assertion)
            met = value == assertion.assert_value
            result.env_assertions.append(EnvAssertionCheck(env_assertion=assertion, met=met, reward=float(met)))
            if not met:
                assertion_reward = 0.0
                if RewardType.ENV_ASSERTION in self.reward_basis:
                    what = assertion.message or f"{assertion.func_name}({assertion.arguments})"
                    result.failures.append(f"state assertion failed: {what} should be {assertion.assert_value}")
        if self.task.evaluation_criteria.env_assertions:
            result.breakdown[RewardType.ENV_ASSERTION.value] = assertion_reward
        else:
            result.breakdown[RewardType.ENV_ASSERTION.value] = 1.0

    def _check_actions(self, messages: Sequence[Message], result: CheckResult) -> None:
        if not self.task.gold_actions:
            result.notes["action"] = "No actions to evaluate"
            result.breakdown[RewardType.ACTION.value] = 1.0
            return
        calls = trajectory_tool_calls(messages)
        reward = 1.0
        for action in self.task.gold_actions:
            match = any(action.matches(c) for c in calls)
            spec = self.domain.toolkit_for(action.requestor).tools.get(action.name)
            result.action_checks.append(ActionCheck(
                action=action, action_match=match, action_reward=float(match),
                tool_type=spec.kind.value if spec else None,
            ))
            if not match:
                reward = 0.0
                if RewardType.ACTION in self.reward_basis:
                    result.failures.append(f"required action not performed: {action.name}({action.arguments})")
        result.breakdown[RewardType.ACTION.value] = reward

    def _check_communicate(self, messages: Sequence[Message], result: CheckResult) -> None:
        infos = self.task.evaluation_criteria.communicate_info or []
        if not infos:
            result.notes["communicate"] = "No communicate_info to evaluate"
            result.breakdown[RewardType.COMMUNICATE.value] = 1.0
            return
        texts = [m.content for m in messages if m.role == "assistant" and m.content]
        checks = []
        for info in infos:
            hit = next((t for t in texts if info.lower() in t.lower().replace(",", "")), None)
            checks.append(CommunicateCheck(
                info=info, met=hit is not None,
                justification=f"found in: {hit!r}" if hit else f"no assistant message contains {info!r}",
            ))
            if hit is None and RewardType.COMMUNICATE in self.reward_basis:
                result.failures.append(f"the agent never told the user {info!r}")
        result.communicate_checks = checks
        result.breakdown[RewardType.COMMUNICATE.value] = 1.0 if all(c.met for c in checks) else 0.0

    def _check_nl(self, messages: Sequence[Message], result: CheckResult) -> None:
        if RewardType.NL_ASSERTION not in self.reward_basis:
            return
        assertions = self.task.evaluation_criteria.nl_assertions or []
        if not assertions:
            result.notes["nl"] = "No nl_assertions to evaluate"
            result.nl_assertions = []
            result.breakdown[RewardType.NL_ASSERTION.value] = 1.0
            return
        checks = self.nl_judge.check(list(messages), assertions)  # type: ignore[union-attr]
        result.nl_assertions = checks
        for c in checks:
            if not c.met:
                result.failures.append(f"judged not satisfied: {c.nl_assertion!r} ({c.justification})")
        result.breakdown[RewardType.NL_ASSERTION.value] = 1.0 if all(c.met for c in checks) else 0.0

    def _check_predicates(self, predicted: Environment, result: CheckResult) -> None:
        predicates = self.task.evaluation_criteria.state_predicates or []
        if not predicates:
            return
        from eigendspy.scoring.sandbox.predicate import evaluate_predicate

        dumps = {}
        for pred in predicates:
            if pred.side not in dumps:
                state = predicted.state_of(pred.side)
                dumps[pred.side] = state.dump() if state is not None else {}
            outcome = evaluate_predicate(pred.expression, {"db": dumps[pred.side]})
            check = PredicateCheck(predicate=pred, met=outcome.passed, error=outcome.error)
            result.state_predicates.append(check)
            if not check.met:
                why = f" ({outcome.error})" if outcome.error else ""
                result.failures.append(f"state predicate failed: {pred.description or pred.expression}{why}")
