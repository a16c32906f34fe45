"""eigendspy: post-train tool-using agents on DSPy with tau2-exact environments and checkers.

The public API re-exported here is what notebooks and users' DSPy programs import; modules stay
importable on their own (``from eigendspy.checkers import Checker``).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from eigendspy.checkers import Checker  # noqa: E402
from eigendspy.domain import Domain, ToolError, ToolKind, Toolkit, assertion, env_function, tool  # noqa: E402
from eigendspy.domains import get_domain  # noqa: E402
from eigendspy.environment import Environment  # noqa: E402
from eigendspy.evaluate import EvalReport, TrialOutcome, evaluate_outcomes, pass_hat_k  # noqa: E402
from eigendspy.lm import ScriptedLM, scripted_lm  # noqa: E402
from eigendspy.orchestrator import Episode, EpisodeConfig, Orchestrator  # noqa: E402
from eigendspy.participants import FunctionParticipant, Participant, Turn, TurnContext  # noqa: E402
from eigendspy.reward import CheckResult  # noqa: E402
from eigendspy.task import Action, EvaluationCriteria, RewardType, StatePredicate, Task, UserScenario  # noqa: E402
from eigendspy.trajectory import Message, TerminationReason, ToolCall  # noqa: E402
from eigendspy.verify import VerificationReport, verify_checker  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Action", "CheckResult", "Checker", "Domain", "Environment", "Episode", "EpisodeConfig", "EvalReport",
    "EvaluationCriteria", "FunctionParticipant", "Message", "Orchestrator", "Participant", "RewardType",
    "ScriptedLM", "StatePredicate", "Task", "TerminationReason", "ToolCall", "ToolError", "ToolKind",
    "Toolkit", "TrialOutcome", "Turn", "TurnContext", "UserScenario", "VerificationReport", "assertion",
    "env_function", "evaluate_outcomes", "get_domain", "pass_hat_k", "scripted_lm", "tool", "verify_checker",
]
