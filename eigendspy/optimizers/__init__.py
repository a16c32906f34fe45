"""Self-evolution: DSPy optimizers compile every role against checker-pass metrics.

- `evolve` compiles one role (GEPA, MIPROv2 or bootstrapped few-shot) and reports before/after
  scores on a held-out set, the score curve and LM usage; `save_compiled`/`load_compiled` version
  the compiled programs in a run directory.
- `metrics` builds role metrics from checkers and validators that return
  ``dspy.Prediction(score, feedback)`` so GEPA reflects on the checker's failure reasons.
- `plan_evolution` measures the Reflector's plan rewrites round by round (yield, diversity).
- `workflow` adjusts engine settings from a run's failure statistics within declared bounds.
- `loop` closes the loop: synthesize a round -> per-role sets from its rejections -> recompile the weakest
  roles -> next round (`eigendspy.optimizers.loop.evolve_loop`).
- `role_lms` keeps each role's own LM through stock DSPy optimizers; `role_programs` builds each role's
  program, metric and examples for `eigendspy evolve --role`.
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
from eigendspy.optimizers.role_lms import compile_keeping_lms, keep_role_lms, keeping_role_lms

__all__ = [
    "AssistantEpisode", "EngineProgram", "EvolveReport", "TaskGeneration", "UserEpisode", "as_bool_metric",
    "assistant_metric", "compile_keeping_lms", "evaluate_program", "evolve", "keep_role_lms", "keeping_role_lms",
    "load_compiled", "per_role_metric", "planted_trajectory_items", "save_compiled", "task_generator_metric",
    "user_simulator_metric", "validate_metric", "validator_calibration_metric",
]
