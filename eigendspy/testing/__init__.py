"""Test doubles, importable by users, notebooks, benchmarks and tests (like ``dspy.utils.dummies``).

A scripted DSPy LM whose answers come from Python, scripted engine roles (also with planted, learnable
failures for the closed loop: `eigendspy.testing.planted`), a scripted NL judge, a scripted
rollout backend, a local server speaking the vLLM protocol, a hung LM endpoint, doubles of TRL's vLLM client
and engine, a tiny random chat model built offline, and a plain ChatML chat template (no tools, no
generation markers) like small models' own.
Each implements the same protocol as the production part it stands in for. No library layer imports this package.
"""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "ScriptedLM": "eigendspy.testing.lm",
    "ScriptedToolCall": "eigendspy.testing.lm",
    "ScriptedToolCalls": "eigendspy.testing.lm",
    "scripted_lm": "eigendspy.testing.lm",
    "ScriptedRequest": "eigendspy.testing.request",
    "scripted_roles": "eigendspy.testing.roles",
    "planted_roles": "eigendspy.testing.planted",
    "run_planted_loop": "eigendspy.testing.planted",
    "ScriptedBackend": "eigendspy.testing.backend",
    "ScriptedJudge": "eigendspy.testing.judge",
    "LocalServer": "eigendspy.testing.vllm_server",
    "hung_server": "eigendspy.testing.hung_server",
    "FakeVLLMClient": "eigendspy.testing.trl_vllm",
    "FakeVLLMGeneration": "eigendspy.testing.trl_vllm",
    "scripted_responder": "eigendspy.testing.trl_vllm",
    "build_tiny_model": "eigendspy.testing.tiny_model",
    "plain_chatml_template": "eigendspy.testing.chat_templates",
    "with_chat_template": "eigendspy.testing.chat_templates",
    "qwen2_5_template": "eigendspy.testing.tiny_model",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
