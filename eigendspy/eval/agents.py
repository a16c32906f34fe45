"""The assistant side of ``eigendspy eval``: the oracle, a local model (or LoRA adapter), or a vLLM server.

Why one spec string for every kind of agent: evaluation must put the trained model behind exactly
the agent-facing contract that SFT exports and GRPO rollouts use (`render.agent_chat`, through
`ChatModelParticipant`), whatever generates its tokens. The spec only chooses the rollout backend;
everything downstream of it (rendering, tool-call parsing, the orchestrator, the checker) is the
shared path, so an eval number and a training reward measure the same thing.

Specs:

- ``oracle``: `eigendspy.core.oracle.OracleAssistant` (replays the gold actions; the upper bound).
- ``model:<dir>``: a saved ``transformers`` model, or a PEFT adapter directory over its base, run
  in process with `HFBackend`.
- ``vllm:<base_url>#<served model name>``: a vLLM OpenAI-compatible server (`VLLMServerBackend`).
  The server returns token ids, so the tokenizer (with its chat template) is loaded locally from
  ``tokenizer=<dir>``: the base model or adapter directory that the server was started from.
- ``lm:<LiteLLM id>``: any chat-completions API (`eigendspy.lm.chat_api.ChatAPIParticipant`), shown the
  same `render.agent_chat` messages and tool schemas, with native tool calls (``api_base=`` for a server).

Example::

    agent = build_assistant("model:runs/grpo/adapter", temperature=0.0, max_new_tokens=512, seed=0)
    episodes = run_episodes(domain, tasks, agent, OracleUser(), trials=4)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eigendspy.core.participants import Participant

AGENT_SPECS = "'oracle', 'model:<dir>', 'vllm:<base_url>#<served model name>' or 'lm:<LiteLLM model id>'"


def build_assistant(
    spec: str,
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    instructions: str | None = None,
    tokenizer: str | Path | None = None,
    api_base: str | None = None,
) -> Participant:
    """The assistant participant named by ``spec`` (see the module docstring for the forms).

    Args:
        spec: ``oracle`` | ``model:<dir>`` | ``vllm:<base_url>#<served model name>`` | ``lm:<LiteLLM id>``.
        temperature: Sampling temperature of a model agent (0 is greedy decoding).
        max_new_tokens: Most tokens a model agent may generate per turn.
        seed: Base sampling seed (each turn adds the episode seed and step, so trials differ).
        instructions: An evolved assistant instruction artifact; replaces the default
            ``<instructions>`` text of the system prompt. Model agents only.
        tokenizer: The served model's tokenizer directory. ``vllm:`` agents only (a ``model:``
            directory carries its own).
        api_base: Endpoint of an ``lm:`` agent's OpenAI-compatible server.

    Raises:
        ValueError: for an unknown or malformed spec, or an option the agent kind cannot use.
        FileNotFoundError: when a model or tokenizer directory does not exist.
    """
    if instructions is not None and not instructions.strip():
        raise ValueError("the instructions artifact is empty; omit it to use the default agent instructions")
    if spec == "oracle":
        if instructions is not None:
            raise ValueError("instructions apply to model agents; the oracle replays gold actions and reads no prompt")
        _no_tokenizer(spec, tokenizer)
        from eigendspy.core.oracle import OracleAssistant

        return OracleAssistant()

    from eigendspy.train.backends.base import SamplingParams

    sampling = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    if spec.startswith("model:"):
        _no_tokenizer(spec, tokenizer)
        from eigendspy.train.backends.hf import HFBackend
        from eigendspy.train.users import load_model

        model, tok = load_model(str(_model_dir(spec[len("model:"):], spec)))
        return _participant(HFBackend(model, tok), tok, sampling, instructions)
    if spec.startswith("vllm:"):
        from eigendspy.train.backends.vllm import VLLMServerBackend

        base_url, served = parse_vllm_spec(spec)
        if tokenizer is None:
            raise ValueError(f"agent {spec!r} needs a tokenizer: pass the directory the server's model was loaded "
                             "from (base model or adapter dir), e.g. `--tokenizer path/to/model`")
        tok = load_tokenizer(tokenizer)
        return _participant(VLLMServerBackend(base_url, served), tok, sampling, instructions)
    if spec.startswith("lm:"):
        _no_tokenizer(spec, tokenizer)
        from eigendspy.lm.chat_api import ChatAPIParticipant

        return ChatAPIParticipant(spec[len("lm:"):], temperature=temperature, max_tokens=max_new_tokens,
                                  api_base=api_base, instructions=instructions)
    raise ValueError(f"unknown agent {spec!r}: use {AGENT_SPECS}")


def parse_vllm_spec(spec: str) -> tuple[str, str]:
    """``vllm:<base_url>#<served model name>`` -> (base_url, served model name), validated."""
    base_url, sep, served = spec[len("vllm:"):].partition("#")
    if not sep or not served or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"malformed agent {spec!r}: expected 'vllm:<http(s) base_url>#<served model name>', "
                         "e.g. 'vllm:http://localhost:8000#Qwen/Qwen2.5-7B-Instruct'")
    return base_url, served


def load_tokenizer(path: str | Path) -> Any:
    """A tokenizer from a model directory, or from an adapter directory's base when it holds none.

    Local directories only: a hub id would make a typo wait out the hub client's network retries.
    """
    from transformers import AutoTokenizer

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"tokenizer directory {str(path)!r} does not exist (pass the local directory "
                                "of the model the vLLM server serves, e.g. its Hugging Face cache snapshot)")
    if not (root / "tokenizer_config.json").exists() and (root / "adapter_config.json").exists():
        from peft import PeftConfig

        root = Path(PeftConfig.from_pretrained(str(root)).base_model_name_or_path)
    return AutoTokenizer.from_pretrained(str(root))


def _model_dir(path: str, spec: str) -> Path:
    root = Path(path)
    if not path or not root.is_dir():
        raise FileNotFoundError(f"agent {spec!r}: no directory {path!r} (a saved transformers model or a PEFT "
                                "adapter directory, e.g. runs/sft/adapter)")
    if not ((root / "config.json").exists() or (root / "adapter_config.json").exists()):
        raise FileNotFoundError(f"agent {spec!r}: {root} holds neither config.json (a model) nor "
                                "adapter_config.json (a PEFT adapter)")
    return root


def _no_tokenizer(spec: str, tokenizer: str | Path | None) -> None:
    if tokenizer is not None:
        raise ValueError(f"a tokenizer is only needed by 'vllm:' agents; agent {spec!r} brings its own")


def _participant(backend: Any, tokenizer: Any, sampling: Any, instructions: str | None) -> Participant:
    from eigendspy.train.policy import ChatModelParticipant

    return ChatModelParticipant(backend, tokenizer, side="assistant", sampling=sampling, instructions=instructions)
