"""eigendspy: post-train tool-using agents on DSPy with tau2-exact environments and checkers.

The public API re-exported here is what notebooks and users' DSPy programs import; modules stay
importable on their own (``from eigendspy.checkers import Checker``).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_EXPORTS = {
    "Checker": "eigendspy.checkers",
    "Domain": "eigendspy.domain",
    "ToolError": "eigendspy.domain",
    "ToolKind": "eigendspy.domain",
    "Toolkit": "eigendspy.domain",
    "assertion": "eigendspy.domain",
    "env_function": "eigendspy.domain",
    "tool": "eigendspy.domain",
    "get_domain": "eigendspy.domains",
    "Environment": "eigendspy.environment",
    "EvalReport": "eigendspy.evaluate",
    "TrialOutcome": "eigendspy.evaluate",
    "evaluate_outcomes": "eigendspy.evaluate",
    "pass_hat_k": "eigendspy.evaluate",
    "ScriptedLM": "eigendspy.lm",
    "scripted_lm": "eigendspy.lm",
    "Episode": "eigendspy.orchestrator",
    "EpisodeConfig": "eigendspy.orchestrator",
    "Orchestrator": "eigendspy.orchestrator",
    "FunctionParticipant": "eigendspy.participants",
    "Participant": "eigendspy.participants",
    "Turn": "eigendspy.participants",
    "TurnContext": "eigendspy.participants",
    "CheckResult": "eigendspy.reward",
    "Action": "eigendspy.task",
    "EvaluationCriteria": "eigendspy.task",
    "RewardType": "eigendspy.task",
    "StatePredicate": "eigendspy.task",
    "Task": "eigendspy.task",
    "UserScenario": "eigendspy.task",
    "Message": "eigendspy.trajectory",
    "TerminationReason": "eigendspy.trajectory",
    "ToolCall": "eigendspy.trajectory",
    "VerificationReport": "eigendspy.verify",
    "verify_checker": "eigendspy.verify",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 lazy export
    """Import the public API on first use: importing ``eigendspy.rl`` on a bare GPU box must not pull DSPy."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eigendspy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Action", "CheckResult", "Checker", "Domain", "Environment", "Episode", "EpisodeConfig", "EvalReport",
    "EvaluationCriteria", "FunctionParticipant", "Message", "Orchestrator", "Participant", "RewardType",
    "ScriptedLM", "StatePredicate", "Task", "TerminationReason", "ToolCall", "ToolError", "ToolKind",
    "Toolkit", "TrialOutcome", "Turn", "TurnContext", "UserScenario", "VerificationReport", "assertion",
    "env_function", "evaluate_outcomes", "get_domain", "pass_hat_k", "scripted_lm", "tool", "verify_checker",
]
