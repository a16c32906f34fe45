"""Multi-turn GRPO on TRL: whole episodes as rollouts, the checker as the reward, dynamic filtering."""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "GRPORunConfig": "eigendspy.train.grpo.config",
    "EigenGRPOTrainer": "eigendspy.train.grpo.trainer",
    "GRPOResult": "eigendspy.train.grpo.run",
    "build_trainer": "eigendspy.train.grpo.run",
    "train_grpo": "eigendspy.train.grpo.run",
    "EpisodeRunner": "eigendspy.train.grpo.rollout",
    "RolloutSample": "eigendspy.train.grpo.rollout",
    "TaskPool": "eigendspy.train.grpo.filtering",
    "TooManyInfraErrors": "eigendspy.train.grpo.rollout",
    "MemoryBudgetExceeded": "eigendspy.train.grpo.geometry",
    "ModelShape": "eigendspy.train.grpo.geometry",
    "check_memory": "eigendspy.train.grpo.geometry",
    "estimate_memory": "eigendspy.train.grpo.geometry",
    "fill_groups": "eigendspy.train.grpo.filtering",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
