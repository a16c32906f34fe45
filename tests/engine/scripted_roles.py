"""Re-export of `eigendspy.scripted_roles` (kept so tests and benchmarks can import either path)."""

from eigendspy.scripted_roles import *  # noqa: F403
from eigendspy.scripted_roles import (  # noqa: F401
    Faulty,
    assistant,
    generator,
    planner,
    reflector,
    scripted_roles,
    task_judge,
    trajectory_judge,
    user,
)
