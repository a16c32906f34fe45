"""The user side of RL rollouts: the oracle user, any DSPy LM, or a fine-tuned user model.

The seed paper's largest RL effect is the user model (Telecom RL with the base user fell to 75.6
pass^1, with the fine-tuned one rose to 95.6), so the user is a first-class, swappable choice.
"""

from __future__ import annotations

from typing import Any

from eigendspy.core.participants import Participant


def build_user(spec: str, *, api_base: str | None = None, seed: int = 0) -> Participant:
    """``oracle`` | ``lm:<model id>`` (a DSPy `UserSimulator`) | ``model:<dir>`` (a user model on HF).

    ``lm:local`` is the embedded model; ``lm:vllm-server/<model>`` needs ``api_base``. A
    ``model:<dir>`` directory may hold a full model or a PEFT adapter (its base is loaded first).
    """
    if spec == "oracle":
        from eigendspy.core.oracle import OracleUser

        return OracleUser()
    if spec.startswith("lm:"):
        from eigendspy.agents.user_simulator import UserSimulator
        from eigendspy.lm.config import LMSpec, RoleLMConfig, build_role_lms

        lm_spec = LMSpec(model=spec[3:], api_base=api_base)
        lm = build_role_lms(RoleLMConfig(default=lm_spec))["user"]
        return UserSimulator(lm=lm)
    if spec.startswith("model:"):
        from eigendspy.train.backends.base import SamplingParams
        from eigendspy.train.backends.hf import HFBackend
        from eigendspy.train.policy import ChatModelParticipant

        model, tokenizer = load_model(spec[6:])
        return ChatModelParticipant(HFBackend(model, tokenizer), tokenizer, side="user",
                                    sampling=SamplingParams(temperature=0.7, seed=seed, max_new_tokens=256))
    raise ValueError(f"unknown user spec {spec!r}: use 'oracle', 'lm:<model>' or 'model:<dir>'")


def load_model(path: str, *, trainable: bool = False) -> tuple[Any, Any]:
    """Load a causal LM and tokenizer from ``path``: a full model, or a PEFT adapter over its base."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no model at {path}")
    if (root / "adapter_config.json").exists():
        from peft import PeftConfig, PeftModel

        base_path = PeftConfig.from_pretrained(str(root)).base_model_name_or_path
        base = AutoModelForCausalLM.from_pretrained(base_path)
        model = PeftModel.from_pretrained(base, str(root), is_trainable=trainable)
        tok_dir = root if (root / "tokenizer_config.json").exists() else Path(base_path)
        return model, AutoTokenizer.from_pretrained(str(tok_dir))
    return AutoModelForCausalLM.from_pretrained(str(root)), AutoTokenizer.from_pretrained(str(root))
