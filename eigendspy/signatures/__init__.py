"""Typed DSPy signatures, one file per role."""

from eigendspy.signatures.assistant import AssistantTurn
from eigendspy.signatures.user import UserTurn

__all__ = ["AssistantTurn", "UserTurn"]
