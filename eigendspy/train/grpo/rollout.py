"""Whole episodes as GRPO samples: prompt ids, completion ids, logprobs and the policy-token mask.

A multi-turn episode becomes one training sequence. The *prompt* is everything the policy saw
before its first sampled token (system prompt with tools, the greeting, the first user message);
the *completion* is everything after it up to the policy's last sampled token. Inside the
completion, ``env_mask`` is 1 exactly on tokens the policy sampled and 0 on the tool results, user
replies and chat-template glue between them, so the loss (and the token count that normalises it)
covers the policy's own tokens only. Tokens after the last assistant turn are dropped: they carry
no loss and cannot change any policy token's logprob (the model is causal).

An episode that ends on an infrastructure error (server down, adapter not loaded, a request error)
is never a sample: its reward says nothing about the policy. `EpisodeRunner` reruns it as a fresh
trial (bounded), `InfraErrorTally` counts every failed attempt, and the trainer drops and refills a
group that still lost an episode, or stops the run when too many attempts fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from eigendspy.core.domain import Domain
from eigendspy.core.messages import TerminationReason
from eigendspy.core.orchestrator import Episode, EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.participants import Participant
from eigendspy.core.task import Task
from eigendspy.scoring.checker import Checker
from eigendspy.train.policy import ChatModelParticipant


class RolloutSample(BaseModel):
    """One episode, ready for the GRPO loss."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    trial: int
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    env_mask: list[int]
    reward: float
    termination_reason: str
    policy_turns: int = 0
    duration_s: float = 0.0

    @property
    def policy_tokens(self) -> int:
        return sum(self.env_mask)


class EmptyEpisode(ValueError):
    """The policy never sampled a token in this episode (it ended before the assistant's first turn)."""


def episode_to_sample(episode: Episode) -> RolloutSample:
    """Assemble the training sequence from the per-turn token traces of the assistant side.

    Each assistant trace's ``prompt_token_ids`` extends the previous trace's prompt + sampled ids
    (that is how `ChatTokens` builds them); this is checked, so a broken trace fails loudly here
    instead of training on misaligned tokens.
    """
    turns = sorted((i, t) for i, t in episode.traces.items() if episode.messages[i].role == "assistant")
    if not turns:
        raise EmptyEpisode(f"task {episode.task_id} trial {episode.trial}: no policy turn "
                           f"({episode.termination_reason.value}: {episode.error})")
    prompt = list(turns[0][1].prompt_token_ids or [])
    seq: list[int] = list(prompt)
    mask: list[int] = [0] * len(prompt)
    logps: list[float] = [0.0] * len(prompt)
    for _, trace in turns:
        ctx = trace.prompt_token_ids or []
        if ctx[: len(seq)] != seq:
            raise ValueError(f"task {episode.task_id}: a turn's prompt does not extend the sequence so far")
        glue = ctx[len(seq):]
        seq += glue
        mask += [0] * len(glue)
        logps += [0.0] * len(glue)
        seq += trace.token_ids
        mask += list(trace.loss_mask or [1] * len(trace.token_ids))
        logps += list(trace.logprobs or [0.0] * len(trace.token_ids))
    n = len(prompt)
    reward = episode.reward if episode.reward is not None else 0.0
    return RolloutSample(task_id=episode.task_id, trial=episode.trial, prompt_ids=prompt, completion_ids=seq[n:],
                         logprobs=logps[n:], env_mask=mask[n:], reward=float(reward),
                         termination_reason=episode.termination_reason.value, policy_turns=len(turns),
                         duration_s=episode.duration_s)


class EpisodeRunner:
    """Runs G episodes per task with a policy participant and scores them with the RL checker.

    Args:
        domain: The domain the tasks live in.
        policy: The assistant participant (a `ChatModelParticipant`, for token traces).
        user: Any participant for the user side: a DSPy `UserSimulator`, a scripted user, or a
            `ChatModelParticipant(side="user")` over the fine-tuned user model.
        config: Episode limits (``max_steps`` bounds a rollout's length).
        concurrency: Episodes in flight at once (the backend batches their generations).
        checker_factory: Defaults to tau2's reward minus NL assertions (``Checker.for_reward``).
    """

    def __init__(
        self,
        domain: Domain,
        policy: ChatModelParticipant,
        user: Participant,
        *,
        config: EpisodeConfig | None = None,
        concurrency: int = 32,
        checker_factory: Callable[[Task], Checker] | None = None,
    ) -> None:
        self.domain = domain
        self.policy = policy
        self.concurrency = concurrency
        factory = checker_factory or Checker.reward_factory(domain)
        self.orchestrator = Orchestrator(domain, policy, user, config=config, checker_factory=factory)

    async def arun(
        self,
        jobs: Sequence[tuple[Task, int]],
        *,
        retries: int = 0,
        next_trial: Callable[[], int] | None = None,
        on_attempt: Callable[[Episode], None] | None = None,
    ) -> list[Episode]:
        """Run (task, trial) jobs concurrently; episodes come back in job order.

        Args:
            jobs: (task, trial) pairs.
            retries: How often an episode that ends on an infrastructure error is rerun (as a fresh
                trial from ``next_trial``) before its last attempt is returned as it is.
            next_trial: Trial numbers for reruns; required when ``retries > 0``.
            on_attempt: Called with every finished attempt, failed ones included (for counting).
        """
        if retries and next_trial is None:
            raise ValueError("retries need next_trial to number the reruns")
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(task: Task, trial: int) -> Episode:
            left = retries
            while True:
                async with semaphore:
                    episode = await self.orchestrator.run(task, trial)
                self.policy.forget(task.id, trial, episode.seed)
                if on_attempt is not None:
                    on_attempt(episode)
                if not is_infra_error(episode) or left == 0:
                    return episode
                left -= 1
                trial = next_trial()

        return list(await asyncio.gather(*(one(t, k) for t, k in jobs)))

    def run(self, jobs: Sequence[tuple[Task, int]], **kwargs: Any) -> list[Episode]:
        """`arun` from sync code (same keyword arguments)."""
        return run_sync(self.arun(jobs, **kwargs))


def is_infra_error(episode: Episode) -> bool:
    """The episode ended because the harness failed (server, network), not the policy or the user."""
    return episode.termination_reason is TerminationReason.INFRASTRUCTURE_ERROR


class TooManyInfraErrors(RuntimeError):
    """A rollout batch lost too many episodes to infrastructure errors: training on it would be noise."""


class InfraErrorTally:
    """Counts one rollout batch's episode attempts and those that ended on an infrastructure error.

    Args:
        max_share: The largest tolerated share of failed attempts; `check` raises above it.
    """

    def __init__(self, max_share: float) -> None:
        self.max_share = max_share
        self.attempts = 0
        self.errors = 0
        self.first_error: str | None = None

    def record(self, episode: Episode) -> None:
        self.attempts += 1
        if is_infra_error(episode):
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"task {episode.task_id} trial {episode.trial}: {episode.error}"

    @property
    def share(self) -> float:
        return self.errors / self.attempts if self.attempts else 0.0

    def check(self) -> None:
        """Raise `TooManyInfraErrors` when the share of failed attempts passes ``max_share``."""
        if self.share > self.max_share:
            raise TooManyInfraErrors(self.describe(f"above max_infra_error_share={self.max_share:g}"))

    def describe(self, reason: str) -> str:
        """The stop message: the count and share of failed attempts, ``reason``, and the first error's text."""
        return (f"stopping the run: {self.errors} of {self.attempts} episode attempts in this step "
                f"({self.share:.1%}) ended on infrastructure errors ({reason}); first error: {self.first_error}")
