"""Typed DSPy signatures, one file per role."""

from eigendspy.signatures.assistant import AssistantTurn
from eigendspy.signatures.meta_planner import MetaPlan, PlanDraft
from eigendspy.signatures.nl_judge import JudgeNLAssertion
from eigendspy.signatures.reflector import ReflectPlan
from eigendspy.signatures.task_generator import ActionDraft, GenerateTask, TaskDraft
from eigendspy.signatures.task_validator import JudgeTask
from eigendspy.signatures.trajectory_validator import JudgeTrajectory
from eigendspy.signatures.user import UserTurn
from eigendspy.signatures.user_tools import UserToolTurn

__all__ = [
    "ActionDraft",
    "AssistantTurn",
    "GenerateTask",
    "JudgeNLAssertion",
    "JudgeTask",
    "JudgeTrajectory",
    "MetaPlan",
    "PlanDraft",
    "ReflectPlan",
    "TaskDraft",
    "UserToolTurn",
    "UserTurn",
]
