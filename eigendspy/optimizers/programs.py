"""The programs under test of role evolution: what a metric in `eigendspy.optimizers.metrics` scores.

`AssistantEpisode` and `UserEpisode` run one orchestrator episode per task with the role being
evolved against a frozen partner, and `TaskGeneration` wraps the task generator. Each exposes
``evolved_role`` (name, module), so `evolve` saves the role module itself and a bare role
(``Assistant()``, ...) loads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dspy

from eigendspy.agents.assistant import Assistant
from eigendspy.agents.task_generator import DraftError, TaskGenerator
from eigendspy.agents.user_simulator import UserSimulator
from eigendspy.core.oracle import OracleAssistant, OracleUser
from eigendspy.core.orchestrator import Episode, EpisodeConfig, Orchestrator, run_sync
from eigendspy.core.participants import Participant
from eigendspy.core.task import Task
from eigendspy.scoring.checker import Checker

if TYPE_CHECKING:
    from eigendspy.core.domain import Domain

EPISODE_CONFIG = EpisodeConfig(max_steps=40, max_errors=5)
"""Tighter limits than tau2's for optimization: a looping candidate prompt fails fast."""


class FrozenContext:
    """Holds what a program uses but must neither optimize nor deep-copy (domain, partner, limits)."""

    def __init__(self, domain: Domain, partner: Participant, config: EpisodeConfig) -> None:
        self.domain, self.partner, self.config = domain, partner, config

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenContext:
        return self  # optimizers copy programs per candidate; the shared DB and partner stay shared


def play_episode(frozen: FrozenContext, assistant: Participant, user: Participant, task: Task) -> dspy.Prediction:
    domain = frozen.domain
    orchestrator = Orchestrator(domain, assistant, user, config=frozen.config,
                                checker_factory=Checker.reward_factory(domain))
    episode: Episode = run_sync(orchestrator.run(task))
    return dspy.Prediction(episode=episode, check=episode.check)


class AssistantEpisode(dspy.Module):
    """Program under test for the assistant: one full episode per task with the assistant evolving.

    The user is a frozen partner (not a parameter: optimizers never touch it). For a realistic
    signal pass a `UserSimulator` with its own fixed LM; the default `OracleUser` only opens the
    dialogue, which suits tasks whose message history already states the request.

    Args:
        domain: The domain the tasks live in.
        assistant: The role being evolved (a fresh `Assistant` when None).
        user: The frozen user participant.
        config: Episode limits (tighter than tau2's by default).

    Example:
        ```python
        program = AssistantEpisode(domain, Assistant(lm=lm), user=UserSimulator(lm=user_lm))
        evolve(program, trainset, valset, assistant_metric(domain), reflection_lm=big_lm)
        ```
    """

    def __init__(self, domain: Domain, assistant: Assistant | None = None, user: Participant | None = None,
                 config: EpisodeConfig | None = None) -> None:
        super().__init__()
        self.assistant = assistant or Assistant()
        self._frozen = FrozenContext(domain, user or OracleUser(), config or EPISODE_CONFIG)

    @property
    def evolved_role(self) -> tuple[str, dspy.Module]:
        return "assistant", self.assistant

    def forward(self, task: Task) -> dspy.Prediction:
        """Returns ``Prediction(episode: Episode, check: CheckResult)``."""
        return play_episode(self._frozen, self.assistant, self._frozen.partner, task)


class UserEpisode(dspy.Module):
    """Program under test for the user simulator: it plays each task against a frozen assistant.

    The default partner is `OracleAssistant`, which performs the gold actions whatever the user
    says, so a failed episode is the user's doing (a premature stop, a leak, an invented value).
    """

    def __init__(self, domain: Domain, user: UserSimulator | None = None, assistant: Participant | None = None,
                 config: EpisodeConfig | None = None) -> None:
        super().__init__()
        self.user = user or UserSimulator()
        self._frozen = FrozenContext(domain, assistant or OracleAssistant(), config or EPISODE_CONFIG)

    @property
    def evolved_role(self) -> tuple[str, dspy.Module]:
        return "user", self.user

    def forward(self, task: Task) -> dspy.Prediction:
        """Returns ``Prediction(episode: Episode, check: CheckResult)``."""
        return play_episode(self._frozen, self._frozen.partner, self.user, task)


class TaskGeneration(dspy.Module):
    """Program under test for the task generator: a draft that cannot become a task is an output too.

    A `DraftError` (unknown tool, tool outside the plan) becomes ``Prediction(task=None,
    errors=[...])`` so the metric can feed its reasons back instead of the optimizer seeing a crash.
    """

    def __init__(self, domain: Domain, generator: TaskGenerator | None = None) -> None:
        super().__init__()
        self.generator = generator or TaskGenerator()
        self._frozen = FrozenContext(domain, OracleUser(), EPISODE_CONFIG)

    @property
    def evolved_role(self) -> tuple[str, dspy.Module]:
        return "generator", self.generator

    def forward(self, plan: Any, entities: str, task_id: str, feedback: str | Sequence[str] = "",
                allowed_tools: Sequence[str] | None = None) -> dspy.Prediction:
        """Returns ``Prediction(task: Task | None, draft, errors: list[str])``."""
        try:
            pred = self.generator(domain=self._frozen.domain, plan=plan, entities=entities, task_id=task_id,
                                  feedback=feedback, allowed_tools=allowed_tools)
        except DraftError as exc:
            return dspy.Prediction(task=None, draft=None, errors=exc.reasons)
        return dspy.Prediction(task=pred.task, draft=pred.draft, errors=[])
