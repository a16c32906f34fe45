"""Model-written state predicates, evaluated without trusting them: an AST allow-list interpreter with a
step budget in-process, and a resource-limited subprocess for anything broader.
"""

from eigendspy.scoring.sandbox.predicate import evaluate, evaluate_predicate
from eigendspy.scoring.sandbox.process import evaluate_in_subprocess
from eigendspy.scoring.sandbox.rules import PredicateResult, SandboxError, SandboxLimits, check_expression

__all__ = [
    "PredicateResult", "SandboxError", "SandboxLimits", "check_expression", "evaluate", "evaluate_in_subprocess",
    "evaluate_predicate",
]
