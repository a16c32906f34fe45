"""Deciding whether a trajectory succeeded: the checker (tau2's reward, exactly), its result types,
checker verification (mutants, null policies), execution checks of synthesized tasks and the sandbox
that evaluates model-written state predicates.
"""

from eigendspy.scoring.checker import Checker
from eigendspy.scoring.execution import ExecutionReport, execution_check
from eigendspy.scoring.nl_judge import NLJudge
from eigendspy.scoring.results import CheckResult, is_success
from eigendspy.scoring.verify import VerificationReport, VerificationSummary, verify_checker, verify_tasks

__all__ = [
    "CheckResult", "Checker", "ExecutionReport", "NLJudge", "VerificationReport", "VerificationSummary",
    "execution_check", "is_success", "verify_checker", "verify_tasks",
]
