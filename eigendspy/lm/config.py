"""Which LM plays which role: a small config (TOML or Python) turned into ``dspy.LM`` objects.

Why per role: the roles differ in what they need (a strong task generator and judge, a cheap
user simulator, the model being trained as the assistant), and the paper's biggest RL effect
came from swapping the user model. A role without an entry uses ``default``; ``"local"`` means
the embedded offline model.

```toml
[lm]
default = "openai/gpt-4o-mini"
[lm.roles]
user = "local"
assistant = { model = "vllm-server/Qwen/Qwen2.5-7B-Instruct", api_base = "http://localhost:8000/v1" }
```

``vllm-server/<model>`` is a vLLM (or any OpenAI-compatible) server with **native tool calls**:
DSPy 3.4.1 treats ``hosted_vllm/`` as having no function calling and refuses to re-register the
``hosted_vllm``/``vllm`` providers, so eigendspy registers its own provider id with the vLLM wire
compatibility and ``function_calling=True`` (see `vllm_lm`). It needs no API key: a key-less
local server gets the placeholder ``EMPTY`` unless the entry sets ``api_key``. Its role calls ask for
structured outputs (`eigendspy.lm.structured_outputs`: the JSON schema of the role's typed output, ``max_tokens``
sized from it) unless ``structured_outputs = false``; ``max_string_chars``/``max_array_items`` bound the schema
as small-model mode does for the embedded model (160 and 3), ``max_tokens`` caps the sized budget.

Every remote role LM is bounded in time (``timeout_s`` for each read/write, 60 s by default, and
``connect_timeout_s``, 10 s): DSPy's own default waits up to 600 s on a hung server. Building the
LMs also makes DSPy's response cache endpoint-keyed (`eigendspy.lm.cache`), so an answer cached
from one server is never replayed for another.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dspy
from pydantic import BaseModel, ConfigDict, Field

from eigendspy.lm.cache import install_endpoint_cache
from eigendspy.lm.request_slots import SlottedLM
from eigendspy.lm.structured_outputs import StructuredOutputs, with_structured_outputs

VLLM_PREFIX = "vllm-server/"
VLLM_PROVIDER = "eigendspy_vllm"
ROLES = ("planner", "generator", "task_validator", "user", "assistant", "trajectory_validator", "reflector")
LOCAL = "local"
#: The key sent to a key-less local server (what vLLM's own examples use).
PLACEHOLDER_KEY = "EMPTY"
#: DSPy's native engine connects within this many seconds unless told otherwise (lm15's default).
NATIVE_CONNECT_TIMEOUT_S = 10.0


class LMSpec(BaseModel):
    """One LM: a LiteLLM model id (or ``local``) and keyword arguments for ``dspy.LM``.

    ``timeout_s`` bounds each wait for the server (the next byte of the reply, the send);
    ``connect_timeout_s`` bounds connecting. Neither applies to ``local``. ``structured_outputs``,
    ``max_string_chars`` and ``max_array_items`` apply to ``vllm-server/`` LMs only (`structured_policy`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    model: str
    temperature: float | None = None
    max_tokens: int | None = None
    api_base: str | None = None
    cache: bool = True
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=NATIVE_CONNECT_TIMEOUT_S, gt=0)
    structured_outputs: bool = True
    max_string_chars: int | None = Field(default=None, ge=1)
    max_array_items: int | None = Field(default=None, ge=1)

    def structured_policy(self) -> StructuredOutputs | None:
        """How a ``vllm-server/`` LM's role calls ask for structured outputs (None: they do not)."""
        if not self.structured_outputs:
            return None
        ceiling = {"max_tokens": self.max_tokens} if self.max_tokens else {}
        return StructuredOutputs(max_string_chars=self.max_string_chars, max_array_items=self.max_array_items,
                                 **ceiling)

    def kwargs(self) -> dict[str, Any]:
        extra = dict(self.model_extra or {})
        for key in ("temperature", "max_tokens", "api_base"):
            value = getattr(self, key)
            if value is not None:
                extra[key] = value
        extra.setdefault("timeout", self.timeout())
        return extra

    def where(self) -> str:
        """The model, its endpoint and read timeout in words, for error messages about this LM."""
        if self.model == LOCAL:
            return "local (the embedded model)"
        endpoint = f" at {self.api_base}" if self.api_base else ""
        return f"{self.model}{endpoint}, timeout_s {self.timeout_s:g}"

    def timeout(self) -> Any:
        """The ``timeout`` for ``dspy.LM``: a plain number while connecting keeps the engine's default.

        A number keeps the LM's saved state JSON (``Module.save``); only a non-default connect
        timeout needs an ``httpx.Timeout``, which every DSPy engine honours part by part but DSPy
        cannot write to JSON: a program saved with such an LM set fails to save (known limit).
        """
        if self.connect_timeout_s == NATIVE_CONNECT_TIMEOUT_S:
            return self.timeout_s
        import httpx

        return httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s)


class RoleLMConfig(BaseModel):
    """``default`` plus per-role overrides."""

    model_config = ConfigDict(extra="forbid")

    default: LMSpec | None = None
    roles: dict[str, LMSpec] = Field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RoleLMConfig:
        def spec(value: Any) -> LMSpec:
            return LMSpec(model=value) if isinstance(value, str) else LMSpec.model_validate(value)

        roles = {k: spec(v) for k, v in (data.get("roles") or {}).items()}
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {unknown} in [lm.roles]; known roles: {', '.join(ROLES)}")
        default = spec(data["default"]) if data.get("default") else None
        return cls(default=default, roles=roles)

    @classmethod
    def from_toml(cls, path: str | Path) -> RoleLMConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read LM config {path}: {exc}") from exc
        return cls.from_mapping(data.get("lm", {}))

    def spec_for(self, role: str) -> LMSpec:
        spec = self.roles.get(role) or self.default
        return spec if spec is not None else LMSpec(model=LOCAL)

    def ids(self) -> dict[str, str]:
        return {role: self.spec_for(role).model for role in ROLES}


def vllm_lm(model: str, api_base: str, structured_outputs: StructuredOutputs | None = None, **kwargs: Any) -> dspy.LM:
    """A ``dspy.LM`` for a vLLM server with native function calling and JSON-schema responses (registers the
    provider once); with ``structured_outputs``, role calls ask for them (`eigendspy.lm.structured_outputs`)."""
    from dspy.lm15 import AccessPolicy, ModelSupport, ProviderDefinition, register_provider

    # The provider is declared once with the vLLM preset's default address; each LM's own api_base
    # (honoured by DSPy's native route) points it at the real server.
    definition = ProviderDefinition.chat(
        AccessPolicy(provider=VLLM_PROVIDER, env_keys=(), base_url="http://localhost:8000/v1"), compat="vllm",
        placeholder_key=PLACEHOLDER_KEY)
    registered = register_provider(definition, supports=ModelSupport(function_calling=True, response_schema=True))
    kwargs.setdefault("api_key", PLACEHOLDER_KEY)  # a key-less server; an explicit api_key wins
    lm = SlottedLM(f"{registered.id}/{model}", api_base=api_base, **kwargs)  # a dspy.LM that takes request slots
    return with_structured_outputs(lm, structured_outputs)


def build_role_lms(config: RoleLMConfig, local_factory: Callable[[], dspy.LM] | None = None) -> dict[str, dspy.LM]:
    """One ``dspy.LM`` per role; identical specs share one LM object (and one local model). API and vLLM LMs are
    `SlottedLM`s: the engine's concurrency limit is then held only while their requests are in flight."""
    install_endpoint_cache()
    built: dict[str, dspy.LM] = {}
    out: dict[str, dspy.LM] = {}
    for role in ROLES:
        spec = config.spec_for(role)
        key = spec.model_dump_json()
        if key not in built:
            if spec.model == LOCAL:
                if local_factory is None:
                    from eigendspy.lm.local.engine import local_lm

                    local_factory = local_lm
                built[key] = local_factory()
            elif spec.model.startswith(VLLM_PREFIX):
                if not spec.api_base:
                    raise ValueError(f"role {role!r}: a {VLLM_PREFIX}<model> LM needs api_base")
                kwargs = {k: v for k, v in spec.kwargs().items() if k != "api_base"}
                built[key] = vllm_lm(spec.model[len(VLLM_PREFIX):], spec.api_base, spec.structured_policy(),
                                     cache=spec.cache, **kwargs)
            else:
                built[key] = SlottedLM(spec.model, cache=spec.cache, **spec.kwargs())
        out[role] = built[key]
    return out
