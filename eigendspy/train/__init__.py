"""Verifiable-reward RL: LoRA SFT (agent and user model), multi-turn GRPO on TRL with the checker as the
reward and dynamic filtering, rollout backends (in-process HF generation, a vLLM server), the token-exact
chat policy, the one model/tokenizer loader, and the participant specs and factory shared by GRPO and ``eval``.

Exports are lazy: ``import eigendspy.train`` needs neither torch nor DSPy until a name is used, so the RL
path imports on a bare GPU box and the data engine works without the ``train`` extra.
"""

from eigendspy.core.lazy import lazy_exports

_EXPORTS = {
    "ChatModelParticipant": "eigendspy.train.policy",
    "ChatTokens": "eigendspy.train.chat_tokens",
    "SFTRunConfig": "eigendspy.train.sft",
    "SFTResult": "eigendspy.train.sft",
    "train_sft": "eigendspy.train.sft",
    "GRPORunConfig": "eigendspy.train.grpo.config",
    "GRPOResult": "eigendspy.train.grpo.run",
    "train_grpo": "eigendspy.train.grpo.run",
    "RolloutBackend": "eigendspy.train.backends.base",
    "SamplingParams": "eigendspy.train.backends.base",
    "HFBackend": "eigendspy.train.backends.hf",
    "VLLMServerBackend": "eigendspy.train.backends.vllm",
    "ParticipantSpec": "eigendspy.train.participant_spec",
    "build_assistant": "eigendspy.train.participants",
    "build_participant": "eigendspy.train.participants",
    "build_user": "eigendspy.train.participants",
    "load_model": "eigendspy.train.models",
    "load_tokenizer": "eigendspy.train.models",
    "load_config": "eigendspy.train.config_io",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
