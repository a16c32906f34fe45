"""Role modules (dspy.Module subclasses), one file per role, and the gold-action teacher (a plain participant)."""

from eigendspy.agents.assistant import Assistant
from eigendspy.agents.gold_teacher import GoldTeacher
from eigendspy.agents.meta_planner import MetaPlanner
from eigendspy.agents.reflector import Reflector
from eigendspy.agents.task_generator import DraftError, TaskGenerator
from eigendspy.agents.task_validator import TaskValidator
from eigendspy.agents.trajectory_validator import TrajectoryValidator
from eigendspy.agents.user_simulator import UserSimulator

__all__ = [
    "Assistant",
    "DraftError",
    "GoldTeacher",
    "MetaPlanner",
    "Reflector",
    "TaskGenerator",
    "TaskValidator",
    "TrajectoryValidator",
    "UserSimulator",
]
