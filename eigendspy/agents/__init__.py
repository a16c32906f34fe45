"""Role modules (dspy.Module subclasses), one file per role."""

from eigendspy.agents.assistant import Assistant
from eigendspy.agents.user_simulator import UserSimulator

__all__ = ["Assistant", "UserSimulator"]
