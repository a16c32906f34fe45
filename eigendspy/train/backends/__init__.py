"""Rollout backends: token ids in, token ids and logprobs out (in-process HF generation, a vLLM server, TRL's vLLM)."""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "Generation": "eigendspy.train.backends.base",
    "RolloutBackend": "eigendspy.train.backends.base",
    "SamplingParams": "eigendspy.train.backends.base",
    "HFBackend": "eigendspy.train.backends.hf",
    "VLLMServerBackend": "eigendspy.train.backends.vllm",
    "VLLMRequestError": "eigendspy.train.backends.vllm_errors",
    "VLLMAdapterError": "eigendspy.train.backends.vllm_errors",
    "TRLVLLMBackend": "eigendspy.train.backends.trl_vllm",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
