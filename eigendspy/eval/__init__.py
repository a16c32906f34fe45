"""Evaluation with tau2-bench semantics: episodes over repeated trials, pass^k with bootstrap CIs, the
agent under test built from a spec, and tau2 results files written and re-graded.
"""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "EvalReport": "eigendspy.eval.pass_k",
    "TrialOutcome": "eigendspy.eval.pass_k",
    "evaluate_outcomes": "eigendspy.eval.pass_k",
    "pass_hat_k": "eigendspy.eval.pass_k",
    "run_episodes": "eigendspy.eval.runner",
    "write_run": "eigendspy.eval.runner",
    "build_assistant": "eigendspy.eval.agents",
    "read_results": "eigendspy.eval.tau2_results",
    "write_results": "eigendspy.eval.tau2_results",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
