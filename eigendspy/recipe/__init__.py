"""The paper's recipe as a resumable pipeline: synthesize (data engine + gold teacher) -> split by plan cell ->
LoRA SFT of agent and user model -> GRPO columns (with ablations) -> pass^k with bootstrap CIs -> report.

Ranked between ``eval`` and ``testing``: it composes the engine, training and evaluation layers and adds no
mechanism of its own beyond the stage bookkeeping, the split, the evaluation user and the report.
"""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "COLUMNS": "eigendspy.recipe.config",
    "PRESETS": "eigendspy.recipe.config",
    "RecipeConfig": "eigendspy.recipe.config",
    "RecipeResult": "eigendspy.recipe.results",
    "ScenarioUser": "eigendspy.recipe.scenario_user",
    "GridPlanner": "eigendspy.recipe.grid_planner",
    "SplitReport": "eigendspy.recipe.split",
    "split_by_cell": "eigendspy.recipe.split",
    "StageStore": "eigendspy.recipe.stages",
    "plot_recipe": "eigendspy.recipe.plot",
    "run_recipe": "eigendspy.recipe.pipeline",
    "demo_config": "eigendspy.recipe.demo",
    "run_demo": "eigendspy.recipe.demo",
    "StageBoard": "eigendspy.recipe.progress",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
