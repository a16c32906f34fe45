"""Build the participant a spec names, for either side of an episode: ``eval``'s agent and user, GRPO's user.

Why the factory lives in ``train`` and serves both sides: GRPO rollouts build the user and ``eval``
builds both, and a spec (`ParticipantSpec`) must build the same kind of participant on either side.
The side only chooses the rendering — `render.agent_chat` for the assistant, `render.user_chat` for
the user — while the spec chooses what generates the turns:

========================  ============================================================================
``oracle``                `OracleAssistant` / `OracleUser` (gold actions; the upper bound)
``model:<dir>``           `ChatModelParticipant` over `HFBackend`, the model from `load_model`
``vllm:<url>#<name>``     `ChatModelParticipant` over `VLLMServerBackend`; the tokenizer from `load_tokenizer`
``lm:<LiteLLM id>``       `ChatAPIParticipant` (native tool calls; ``lm:vllm-server/<model>`` + ``api_base``)
``dspy:<role LM id>``     the DSPy `Assistant` / `UserSimulator` module over that role LM
========================  ============================================================================

Model-backed participants (``model``, ``vllm``, ``lm``) are the agent-facing contract of DESIGN.md,
so an ``eval`` number and a GRPO reward see the same prompt. Heavy imports (torch, DSPy, LiteLLM)
happen inside the builder of the kind that needs them: building an oracle needs neither.

Example::

    agent = build_assistant("model:runs/grpo/adapter", temperature=0.0, max_new_tokens=512, seed=0)
    user = build_user("lm:openai/gpt-4.1-mini")
    episodes = run_episodes(domain, tasks, agent, user, trials=4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eigendspy.core.participants import Participant
from eigendspy.train.backends.base import SamplingParams
from eigendspy.train.participant_spec import ParticipantSpec, Side

#: LiteLLM's provider prefix for a vLLM server's chat endpoint: what ``lm:vllm-server/<model>`` is sent as.
LITELLM_VLLM = "hosted_vllm/"


def build_participant(
    spec: str | ParticipantSpec,
    side: Side,
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    instructions: str | None = None,
    tokenizer: str | Path | None = None,
    api_base: str | None = None,
    device: str | None = None,
) -> Participant:
    """The participant ``spec`` names, playing ``side``.

    Args:
        spec: A spec string (see `eigendspy.train.participant_spec`) or a parsed `ParticipantSpec`.
        side: ``"assistant"`` or ``"user"``.
        temperature: Sampling temperature of a model or API participant (0 is greedy decoding).
        max_new_tokens: Most tokens a model or API participant may generate per turn.
        seed: Base sampling seed of a model participant (each turn adds the episode seed and step).
        instructions: An evolved assistant instruction artifact, replacing the default
            ``<instructions>`` of the system prompt. Assistants shown `render.agent_chat` only.
        tokenizer: The served model's tokenizer folder. ``vllm:`` participants only.
        api_base: Endpoint of an ``lm:`` or ``dspy:`` participant's server.
        device: Where a ``model:`` participant's weights live (``"cuda"``, ``"cuda:1"``, ``"cpu"``);
            ``None`` puts them on this process's GPU when there is one (under ``accelerate`` each rank's
            current device), else on the CPU. Other kinds ignore it.

    Raises:
        ValueError: for an unknown or malformed spec, or an option the participant cannot use.
        FileNotFoundError: when a model or tokenizer folder does not exist.
    """
    parsed = spec if isinstance(spec, ParticipantSpec) else ParticipantSpec.parse(spec)
    parsed.check_options(side, tokenizer=tokenizer, instructions=instructions, api_base=api_base)
    if parsed.kind == "oracle":
        return _oracle(side)
    if parsed.kind == "dspy":
        return _dspy_module(parsed, side, api_base)
    if parsed.kind == "lm":
        from eigendspy.lm.chat_api import ChatAPIParticipant

        return ChatAPIParticipant(_litellm_id(parsed, side, api_base), side=side, temperature=temperature,
                                  max_tokens=max_new_tokens, api_base=api_base, instructions=instructions)
    from eigendspy.train.policy import ChatModelParticipant

    backend, tok = _model_backend(parsed, side, tokenizer, device)
    sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    return ChatModelParticipant(backend, tok, side=side, sampling=sampling, instructions=instructions)


def build_assistant(
    spec: str | ParticipantSpec,
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    instructions: str | None = None,
    tokenizer: str | Path | None = None,
    api_base: str | None = None,
) -> Participant:
    """The assistant ``spec`` names (``eigendspy eval --agent``); see `build_participant` for the arguments."""
    return build_participant(spec, "assistant", temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                             instructions=instructions, tokenizer=tokenizer, api_base=api_base)


def build_user(
    spec: str | ParticipantSpec,
    *,
    api_base: str | None = None,
    seed: int = 0,
    temperature: float = 0.7,
    max_new_tokens: int = 256,
    tokenizer: str | Path | None = None,
    device: str | None = None,
) -> Participant:
    """The user ``spec`` names (``eigendspy eval --user``, GRPO's ``user``); see `build_participant`.

    The defaults sample (temperature 0.7) so the episodes of one GRPO group meet differently worded
    users, and cap a user turn at 256 tokens: a customer's message is short.
    """
    return build_participant(spec, "user", temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                             tokenizer=tokenizer, api_base=api_base, device=device)


def _oracle(side: Side) -> Participant:
    from eigendspy.core.oracle import OracleAssistant, OracleUser

    return OracleAssistant() if side == "assistant" else OracleUser()


def _model_backend(spec: ParticipantSpec, side: Side, tokenizer: str | Path | None,
                   device: str | None = None) -> tuple[Any, Any]:
    """The rollout backend and tokenizer of a ``model:`` or ``vllm:`` participant."""
    from eigendspy.train.models import load_model, load_tokenizer

    if spec.kind == "model":
        from eigendspy.train.backends.hf import HFBackend

        model, tok = load_model(_local_dir(spec.path, side, spec, "a saved transformers model or a PEFT adapter "
                                           "directory, e.g. runs/sft/adapter"))
        model.to(placement(device))
        return HFBackend(model, tok), tok
    from eigendspy.train.backends.vllm import VLLMServerBackend

    tok = load_tokenizer(_local_dir(tokenizer, side, spec, "the tokenizer of the model the vLLM server serves, "
                                    "e.g. its Hugging Face cache snapshot"))
    return VLLMServerBackend(spec.url, spec.name), tok


def placement(device: str | None) -> str:
    """The device a ``model:`` participant runs on: ``device`` as given, else this process's GPU, else CPU.

    Why a default GPU: the fine-tuned user model is the paper's largest RL effect, and on CPU it would
    dominate every rollout of a GPU run.
    """
    if device:
        return device
    import torch

    return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"


def _local_dir(path: str | Path, side: Side, spec: ParticipantSpec, what: str) -> Path:
    """A hand-typed folder must exist locally: a hub id would make a typo wait out the hub client's retries."""
    root = Path(path).expanduser()
    if not str(path) or not root.is_dir():
        raise FileNotFoundError(f"{side} {str(spec)!r}: directory {str(path)!r} does not exist ({what})")
    return root


def _litellm_id(spec: ParticipantSpec, side: Side, api_base: str | None) -> str:
    """``vllm-server/<model>`` (the role-LM spelling of a vLLM chat server) as LiteLLM names it."""
    from eigendspy.lm.config import VLLM_PREFIX

    if not spec.model_id.startswith(VLLM_PREFIX):
        return spec.model_id
    if not api_base:
        raise ValueError(f"{side} {str(spec)!r} is a vLLM chat server: pass its api_base (e.g. http://host:8000/v1)")
    return LITELLM_VLLM + spec.model_id.removeprefix(VLLM_PREFIX)


def _dspy_module(spec: ParticipantSpec, side: Side, api_base: str | None) -> Participant:
    """The DSPy role module over the role LM ``spec`` names, with that LM's own sampling settings."""
    from eigendspy.lm.config import LMSpec, RoleLMConfig, build_role_lms

    lm = build_role_lms(RoleLMConfig(default=LMSpec(model=spec.model_id, api_base=api_base)))[side]
    if side == "assistant":
        from eigendspy.agents.assistant import Assistant

        return Assistant(lm=lm)
    from eigendspy.agents.user_simulator import UserSimulator

    return UserSimulator(lm=lm)


__all__ = ["build_assistant", "build_participant", "build_user", "placement"]
