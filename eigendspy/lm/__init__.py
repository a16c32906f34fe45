"""Language models for the roles: which LM plays which role, fault handling for long runs, a
chat-completions participant for API models, the embedded offline model (``lm.local``) and the typed
small-model output schemas that keep a tiny model's answers valid.
"""

from eigendspy.lm.chat_api import ChatAPIParticipant
from eigendspy.lm.config import LMSpec, RoleLMConfig, build_role_lms, vllm_lm
from eigendspy.lm.preflight import LMConfigError, check_role_lms
from eigendspy.lm.resilience import CallFailedError, CircuitBreaker, LMUnavailableError, call_with_retries

__all__ = [
    "CallFailedError", "ChatAPIParticipant", "CircuitBreaker", "LMConfigError", "LMSpec", "LMUnavailableError",
    "RoleLMConfig", "build_role_lms", "call_with_retries", "check_role_lms", "vllm_lm",
]
