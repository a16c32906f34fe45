"""The data engine's LM roles compiled as ONE DSPy program, with a per-role metric.

`EngineProgram` chains the task generator and the two rollout roles on one example (a plan and
the entities sampled for it): generate a task, verify it by execution, play it out between the
user simulator and the assistant, and score it with the task's checker. `per_role_metric`
returns the whole-pipeline score, but when GEPA asks about one predictor (``pred_name``) it
answers with that role's own reasons — execution faults for the generator, the checker's
reasons for the assistant, the user pre-check findings for the user simulator — so each role's
instructions are rewritten from failures that are actually its own. Plan-level roles (planner,
reflector) evolve through `eigendspy.optimizers.plan_evolution`.
"""

from __future__ import annotations

from typing import Any

import dspy

from eigendspy.agents import Assistant, UserSimulator
from eigendspy.agents.task_generator import DraftError, TaskGenerator
from eigendspy.core.domain import Domain
from eigendspy.core.orchestrator import EpisodeConfig
from eigendspy.optimizers.metrics import Metric, assistant_metric, user_simulator_metric
from eigendspy.optimizers.programs import EPISODE_CONFIG, FrozenContext, play_episode
from eigendspy.scoring.execution import execution_check

ROLE_PREFIXES = {"generator": "generator.", "assistant": "assistant.", "user": "user."}


class EngineProgram(dspy.Module):
    """generator -> execution check -> (user simulator <-> assistant) episode -> checker.

    Args:
        domain: The domain.
        generator, assistant, user: The role modules (fresh ones when None); all three are optimizable.
        config: Episode limits.
    """

    def __init__(self, domain: Domain, generator: TaskGenerator | None = None, assistant: Assistant | None = None,
                 user: UserSimulator | None = None, config: EpisodeConfig | None = None) -> None:
        super().__init__()
        self.generator = generator or TaskGenerator()
        self.assistant = assistant or Assistant()
        self.user = user or UserSimulator()
        self._frozen = FrozenContext(domain, None, config or EPISODE_CONFIG)  # type: ignore[arg-type]

    def forward(self, plan: Any, entities: str, task_id: str) -> dspy.Prediction:
        """Returns ``Prediction(task, errors, episode, check)``; an invalid task stops before the rollout."""
        domain = self._frozen.domain
        try:
            task = self.generator(domain=domain, plan=plan, entities=entities, task_id=task_id).task
        except DraftError as exc:
            return dspy.Prediction(task=None, errors=list(exc.reasons), episode=None, check=None)
        report = execution_check(domain, task)
        if not report.passed:
            return dspy.Prediction(task=task, errors=list(report.reasons), episode=None, check=None)
        episode = play_episode(self._frozen, self.assistant, self.user, task)
        return dspy.Prediction(task=task, errors=[], episode=episode.episode, check=episode.check)


def per_role_metric(domain: Domain) -> Metric:
    """Whole-pipeline score; per-predictor feedback for GEPA (see the module docstring)."""
    assistant, user = assistant_metric(domain), user_simulator_metric(domain)

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None,
               pred_trace: Any = None) -> dspy.Prediction:
        if pred.task is None or pred.errors:
            reasons = "; ".join(pred.errors) or "no task was produced"
            if pred_name and not pred_name.startswith(ROLE_PREFIXES["generator"]):
                return dspy.Prediction(score=0.0, feedback="No dialogue was played: the generated task was invalid.")
            return dspy.Prediction(score=0.0, feedback=f"The generated task failed verification: {reasons}")
        gold_with_task = gold.copy(task=pred.task) if hasattr(gold, "copy") else gold
        by_assistant = assistant(gold_with_task, pred, trace, pred_name, pred_trace)
        by_user = user(gold_with_task, pred, trace, pred_name, pred_trace)
        score = min(float(by_assistant.score), float(by_user.score))
        if pred_name and pred_name.startswith(ROLE_PREFIXES["user"]):
            return dspy.Prediction(score=score, feedback=by_user.feedback)
        if pred_name and pred_name.startswith(ROLE_PREFIXES["assistant"]):
            return dspy.Prediction(score=score, feedback=by_assistant.feedback)
        if pred_name and pred_name.startswith(ROLE_PREFIXES["generator"]):
            return dspy.Prediction(score=score, feedback="The task verified; its dialogue scored "
                                   f"{score:.1f}: {by_assistant.feedback}")
        return dspy.Prediction(score=score, feedback="\n".join(f for f in (by_assistant.feedback, by_user.feedback)
                                                                if f))

    return metric
