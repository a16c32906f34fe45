"""`ParticipantSpec`: the one parser of the strings that name who plays a side of an episode.

Why one parser for both sides: ``eigendspy eval --agent``/``--user`` and GRPO's ``user`` field take
the same forms, and a form must mean the same thing whichever side it plays — ``lm:<id>`` is an API
model shown tau2's prompt for its side (`render.agent_chat` or `render.user_chat`), ``model:<dir>``
a local checkpoint behind the same rendering — so an eval number and a training reward measure the
same thing. Parsing checks only the string; what a form needs from the machine (a folder, a
tokenizer, a server) is checked when `eigendspy.train.participants` builds it.

Forms (`FORMS`):

- ``oracle``: replays the task's gold actions (assistant) or its scripted user (user).
- ``model:<dir>``: a saved ``transformers`` model or a PEFT adapter folder, generating in process.
- ``vllm:<http(s) base_url>#<served model name>``: a vLLM server; the tokenizer is given apart.
- ``lm:<LiteLLM id>``: a chat-completions API model with native tool calls (``lm:vllm-server/<model>``
  is a vLLM server's chat endpoint, with an ``api_base``).
- ``dspy:<role LM id>``: the DSPy role module (`Assistant` or `UserSimulator`) over a role LM
  (``local``, ``vllm-server/<model>`` or a LiteLLM id), prompted by its DSPy adapter. This is what
  ``lm:`` meant on the user side before both sides shared one parser; ``lm:local`` (the embedded
  model has no chat API) still parses, as ``dspy:local``, with a `DeprecationWarning`.

Example::

    spec = ParticipantSpec.parse("vllm:http://localhost:8000#policy")
    assert (spec.kind, spec.url, spec.name) == ("vllm", "http://localhost:8000", "policy")
    assert str(spec) == "vllm:http://localhost:8000#policy"
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

Kind = Literal["oracle", "model", "vllm", "lm", "dspy"]
Side = Literal["assistant", "user"]

#: The accepted form of each kind, as error messages and help texts show it.
FORMS: dict[str, str] = {
    "oracle": "oracle",
    "model": "model:<dir>",
    "vllm": "vllm:<http(s) base_url>#<served model name>",
    "lm": "lm:<LiteLLM model id>",
    "dspy": "dspy:<role LM id>",
}
SPEC_FORMS = ", ".join(f"'{form}'" for form in FORMS.values())
#: The embedded offline model's role LM id (`eigendspy.lm.config.LOCAL`; spelled here so parsing needs no DSPy).
LOCAL_LM = "local"
_FIELDS = {"oracle": (), "model": ("path",), "vllm": ("url", "name"), "lm": ("model_id",), "dspy": ("model_id",)}
_LABELS = {"path": "model folder", "url": "server URL", "name": "served model name", "model_id": "model id"}
_EXAMPLES = {"vllm": "vllm:http://localhost:8000#Qwen/Qwen2.5-7B-Instruct", "lm": "lm:openai/gpt-4.1-mini",
             "model": "model:runs/sft/adapter", "dspy": "dspy:local"}


class ParticipantSpec(BaseModel):
    """A parsed participant spec: its kind and the fields that kind needs (the others stay ``None``).

    Build one with `parse` (from the string users type) or directly; `str` gives the string back.

    Attributes:
        kind: ``oracle`` | ``model`` | ``vllm`` | ``lm`` | ``dspy``.
        path: The model or adapter folder (``model``).
        url: The server's http(s) base URL (``vllm``).
        name: The served model name (``vllm``).
        model_id: The LiteLLM id (``lm``) or role LM id (``dspy``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    path: str | None = None
    url: str | None = None
    name: str | None = None
    model_id: str | None = None

    @model_validator(mode="after")
    def _fields_fit_the_kind(self) -> ParticipantSpec:
        needed = _FIELDS[self.kind]
        for field, label in _LABELS.items():
            value = getattr(self, field)
            if field in needed and not value:
                raise ValueError(f"'{self.kind}:' needs a {label}")
            if field not in needed and value is not None:
                raise ValueError(f"'{self.kind}:' takes no {label}")
        if self.kind == "vllm" and (not self.url.startswith(("http://", "https://")) or "#" in self.url):
            raise ValueError(f"the server URL must start with http:// or https://; got {self.url!r}")
        if self.kind == "lm" and "/" not in self.model_id:
            raise ValueError(f"{self.model_id!r} is no provider/model id; a DSPy role LM is 'dspy:<id>'")
        return self

    @classmethod
    def parse(cls, spec: str) -> ParticipantSpec:
        """Parse one of the `FORMS`.

        Raises:
            ValueError: naming the spec and the accepted forms, for an unknown kind or a malformed value.
        """
        if spec == "oracle":
            return cls(kind="oracle")
        kind, sep, rest = spec.partition(":")
        if not sep or kind not in FORMS or kind == "oracle":
            raise ValueError(f"unknown participant spec {spec!r}: use {SPEC_FORMS}")
        if kind == "lm" and rest == LOCAL_LM:
            warnings.warn(f"'lm:{LOCAL_LM}' is now spelled 'dspy:{LOCAL_LM}' (the embedded model has no chat API; "
                          "'lm:' means a chat-completions model on both sides)", DeprecationWarning, stacklevel=2)
            kind = "dspy"
        try:
            if kind == "model":
                return cls(kind="model", path=rest)
            if kind == "vllm":
                url, _, name = rest.partition("#")
                return cls(kind="vllm", url=url, name=name)
            return cls(kind=kind, model_id=rest)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"malformed participant spec {spec!r}: expected '{FORMS[kind]}', e.g. "
                             f"'{_EXAMPLES[kind]}' ({reason})") from None

    def __str__(self) -> str:
        if self.kind == "oracle":
            return "oracle"
        if self.kind == "model":
            return f"model:{self.path}"
        if self.kind == "vllm":
            return f"vllm:{self.url}#{self.name}"
        return f"{self.kind}:{self.model_id}"

    def check_options(self, side: Side, *, tokenizer: str | Path | None = None, instructions: str | None = None,
                      api_base: str | None = None) -> None:
        """Refuse options this participant cannot use, before anything is loaded.

        A ``vllm`` participant needs its model's tokenizer folder (the server speaks token ids) and
        no other kind takes one; only ``lm`` and ``dspy`` participants talk to an ``api_base``; an
        instruction artifact replaces the agent's prompt, so only an assistant rendered by
        `render.agent_chat` (``model``, ``vllm``, ``lm``) reads it.

        Raises:
            ValueError: naming the side, the spec and the fix.
        """
        if api_base is not None and self.kind not in ("lm", "dspy"):
            raise ValueError(f"api_base is the endpoint of an 'lm:' or 'dspy:' participant; {side} {str(self)!r} "
                             "does not use one")
        if self.kind == "vllm" and tokenizer is None:
            raise ValueError(f"{side} {str(self)!r} needs a tokenizer: pass the directory the server's model was "
                             "loaded from (base model or adapter dir), e.g. `--tokenizer path/to/model`")
        if self.kind != "vllm" and tokenizer is not None:
            raise ValueError(f"a tokenizer is only needed by 'vllm:' participants; {side} {str(self)!r} brings its own")
        if instructions is None:
            return
        if not instructions.strip():
            raise ValueError("the instructions artifact is empty; omit it to use the default agent instructions")
        if side == "user":
            raise ValueError("instructions are an assistant instruction artifact; the user side reads its scenario")
        if self.kind == "oracle":
            raise ValueError("instructions apply to model agents; the oracle replays gold actions and reads no prompt")
        if self.kind == "dspy":
            raise ValueError(f"instructions apply to agents shown render.agent_chat; {str(self)!r} is prompted by "
                             "its DSPy signature (evolve that instead)")


__all__ = ["FORMS", "LOCAL_LM", "SPEC_FORMS", "Kind", "ParticipantSpec", "Side"]
