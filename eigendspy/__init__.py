"""eigendspy: post-train tool-using agents on DSPy with tau2-exact environments and checkers.

The public API re-exported here is what notebooks and users' DSPy programs import; modules stay
importable on their own (``from eigendspy.scoring.checker import Checker``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_EXPORTS = {
    "Checker": "eigendspy.scoring.checker",
    "Domain": "eigendspy.core.domain",
    "ToolError": "eigendspy.core.domain",
    "ToolKind": "eigendspy.core.domain",
    "Toolkit": "eigendspy.core.domain",
    "assertion": "eigendspy.core.domain",
    "env_function": "eigendspy.core.domain",
    "tool": "eigendspy.core.domain",
    "get_domain": "eigendspy.domains",
    "Environment": "eigendspy.core.environment",
    "EvalReport": "eigendspy.eval.pass_k",
    "TrialOutcome": "eigendspy.eval.pass_k",
    "evaluate_outcomes": "eigendspy.eval.pass_k",
    "pass_hat_k": "eigendspy.eval.pass_k",
    "ScriptedLM": "eigendspy.testing.lm",
    "scripted_lm": "eigendspy.testing.lm",
    "Episode": "eigendspy.core.orchestrator",
    "EpisodeConfig": "eigendspy.core.orchestrator",
    "Orchestrator": "eigendspy.core.orchestrator",
    "FunctionParticipant": "eigendspy.core.participants",
    "Participant": "eigendspy.core.participants",
    "Turn": "eigendspy.core.participants",
    "TurnContext": "eigendspy.core.participants",
    "CheckResult": "eigendspy.scoring.results",
    "Action": "eigendspy.core.task",
    "EvaluationCriteria": "eigendspy.core.task",
    "RewardType": "eigendspy.core.task",
    "StatePredicate": "eigendspy.core.task",
    "Task": "eigendspy.core.task",
    "UserScenario": "eigendspy.core.task",
    "Message": "eigendspy.core.messages",
    "TerminationReason": "eigendspy.core.messages",
    "ToolCall": "eigendspy.core.messages",
    "VerificationReport": "eigendspy.scoring.verify",
    "verify_checker": "eigendspy.scoring.verify",
}


def __getattr__(name: str):  # PEP 562 lazy export
    """Import the public API on first use: importing ``eigendspy.train`` on a bare GPU box must not pull DSPy."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eigendspy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

# Module paths before the layered layout (0.1.0). Kept for one release: importing one warns and gives the
# module at its new path (the same module object, so monkeypatching either name patches both).
MOVED_MODULES = {
    "eigendspy.chat_api": "eigendspy.lm.chat_api",
    "eigendspy.checkers": "eigendspy.scoring.checker",
    "eigendspy.cli_evolve": "eigendspy.cli.evolve",
    "eigendspy.cli_synth": "eigendspy.cli.synth",
    "eigendspy.cli_train": "eigendspy.cli.train",
    "eigendspy.dataset_card": "eigendspy.engine.dataset_card",
    "eigendspy.demo": "eigendspy.domains.retail.demo",
    "eigendspy.diversity": "eigendspy.engine.diversity",
    "eigendspy.domain": "eigendspy.core.domain",
    "eigendspy.engine_items": "eigendspy.engine.items",
    "eigendspy.engine_ray": "eigendspy.engine.ray",
    "eigendspy.entities": "eigendspy.engine.entities",
    "eigendspy.environment": "eigendspy.core.environment",
    "eigendspy.evaluate": "eigendspy.eval.pass_k",
    "eigendspy.export": "eigendspy.engine.export",
    "eigendspy.files": "eigendspy.engine.store.files",
    "eigendspy.ids": "eigendspy.core.ids",
    "eigendspy.interop": "eigendspy.eval",
    "eigendspy.interop.tau2_data": "eigendspy.domains.tau2_data",
    "eigendspy.interop.tau2_results": "eigendspy.eval.tau2_results",
    "eigendspy.lm_config": "eigendspy.lm.config",
    "eigendspy.lm_request": "eigendspy.testing.request",
    "eigendspy.local_grammar": "eigendspy.lm.local.grammar",
    "eigendspy.local_lm": "eigendspy.lm.local.engine",
    "eigendspy.local_prompt": "eigendspy.lm.local.prompt",
    "eigendspy.model_fetch": "eigendspy.lm.local.fetch",
    "eigendspy.nl_judge": "eigendspy.agents.nl_judge",
    "eigendspy.optimizers.scripted": "eigendspy.testing.optimizers",
    "eigendspy.oracle": "eigendspy.core.oracle",
    "eigendspy.orchestrator": "eigendspy.core.orchestrator",
    "eigendspy.participants": "eigendspy.core.participants",
    "eigendspy.plans": "eigendspy.core.plans",
    "eigendspy.records": "eigendspy.core.records",
    "eigendspy.render": "eigendspy.core.render",
    "eigendspy.resilience": "eigendspy.lm.resilience",
    "eigendspy.reward": "eigendspy.scoring.results",
    "eigendspy.rl": "eigendspy.train",
    "eigendspy.rl.assistants": "eigendspy.eval.agents",
    "eigendspy.rl.backend": "eigendspy.train.backends.base",
    "eigendspy.rl.chat_tokens": "eigendspy.train.chat_tokens",
    "eigendspy.rl.config_io": "eigendspy.train.config_io",
    "eigendspy.rl.filtering": "eigendspy.train.grpo.filtering",
    "eigendspy.rl.grpo": "eigendspy.train.grpo.trainer",
    "eigendspy.rl.grpo_config": "eigendspy.train.grpo.config",
    "eigendspy.rl.grpo_run": "eigendspy.train.grpo.run",
    "eigendspy.rl.hf_backend": "eigendspy.train.backends.hf",
    "eigendspy.rl.local_server": "eigendspy.testing.vllm_server",
    "eigendspy.rl.policy": "eigendspy.train.policy",
    "eigendspy.rl.rollout": "eigendspy.train.grpo.rollout",
    "eigendspy.rl.scripted_backend": "eigendspy.testing.backend",
    "eigendspy.rl.sft": "eigendspy.train.sft",
    "eigendspy.rl.users": "eigendspy.train.participants",
    "eigendspy.rl.vllm_backend": "eigendspy.train.backends.vllm",
    "eigendspy.runner": "eigendspy.eval.runner",
    "eigendspy.sandbox": "eigendspy.scoring.sandbox",
    "eigendspy.sandbox_interpreter": "eigendspy.scoring.sandbox.interpreter",
    "eigendspy.sandbox_rules": "eigendspy.scoring.sandbox.rules",
    "eigendspy.sandbox_subprocess": "eigendspy.scoring.sandbox.process",
    "eigendspy.scripted_roles": "eigendspy.testing.roles",
    "eigendspy.small_model": "eigendspy.lm.small_model",
    "eigendspy.state": "eigendspy.core.state",
    "eigendspy.store": "eigendspy.engine.store.store",
    "eigendspy.store_summary": "eigendspy.engine.store.summary",
    "eigendspy.task": "eigendspy.core.task",
    "eigendspy.task_checks": "eigendspy.scoring.execution",
    "eigendspy.task_filters": "eigendspy.engine.filters",
    "eigendspy.tool": "eigendspy.core.tool",
    "eigendspy.trajectory": "eigendspy.core.messages",
    "eigendspy.verify": "eigendspy.scoring.verify",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves a pre-0.2 module path (``eigendspy.checkers``) to the module at its new path."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module already executed at its new path."""


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModuleFinder())

__all__ = [
    "Action", "CheckResult", "Checker", "Domain", "Environment", "Episode", "EpisodeConfig", "EvalReport",
    "EvaluationCriteria", "FunctionParticipant", "Message", "Orchestrator", "Participant", "RewardType",
    "ScriptedLM", "StatePredicate", "Task", "TerminationReason", "ToolCall", "ToolError", "ToolKind",
    "Toolkit", "TrialOutcome", "Turn", "TurnContext", "UserScenario", "VerificationReport", "assertion",
    "env_function", "evaluate_outcomes", "get_domain", "pass_hat_k", "scripted_lm", "tool", "verify_checker",
]
