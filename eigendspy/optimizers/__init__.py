"""Self-evolution: DSPy optimizers compile every role against checker-pass metrics.

- `evolve` compiles one role (GEPA, MIPROv2 or bootstrapped few-shot) and reports before/after
  scores on a held-out set, the score curve and LM usage; `save_compiled`/`load_compiled` version
  the compiled programs in a run directory.
- `metrics` builds role metrics from checkers and validators that return
  ``dspy.Prediction(score, feedback)`` so GEPA reflects on the checker's failure reasons.
- `plan_evolution` measures the Reflector's plan rewrites round by round (yield, diversity).
- `workflow` adjusts engine settings from a run's failure statistics within declared bounds.
"""

from eigendspy.optimizers.engine_program import EngineProgram, per_role_metric
from eigendspy.optimizers.evolve import evaluate_program, evolve
from eigendspy.optimizers.metrics import (
    AssistantEpisode,
    TaskGeneration,
    UserEpisode,
    as_bool_metric,
    assistant_metric,
    planted_trajectory_items,
    task_generator_metric,
    user_simulator_metric,
    validate_metric,
    validator_calibration_metric,
)
from eigendspy.optimizers.report import EvolveReport, load_compiled, save_compiled

__all__ = [
    "AssistantEpisode", "EngineProgram", "EvolveReport", "TaskGeneration", "UserEpisode", "as_bool_metric",
    "assistant_metric", "evaluate_program", "evolve", "load_compiled", "per_role_metric", "planted_trajectory_items",
    "save_compiled", "task_generator_metric", "user_simulator_metric", "validate_metric",
    "validator_calibration_metric",
]
