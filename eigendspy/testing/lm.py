"""A scripted, network-free ``dspy.LM`` driven by a Python policy.

Tests, benchmarks and offline rollouts need an LM whose answers are decided by
code, yet reach DSPy modules through the *real* adapter path: prompt
formatting, native function calling, output parsing, parse-error fallbacks.
DSPy 3.4's extension point for that is the engine pair
(``dspy.clients.engines.base``): a sync object with ``complete(Request) ->
Response`` and an async one with ``async complete``. ``ScriptedLM`` is a
``dspy.LM`` built on such a pair; it does not override ``forward``.

The engines here do not own DSPy's response cache, retries, history, usage
tracking or callbacks; the outer ``dspy.LM`` owns those. ``ScriptedLM`` turns
the cache off and sets ``num_retries=0`` by default so every call reaches the
policy exactly once (pass ``cache=True`` to test caching on purpose).

The request view a policy receives (:class:`ScriptedRequest`, built by
:func:`build_request_view`) lives in :mod:`eigendspy.testing.request` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import dspy
import pydantic
from dspy.adapters.utils import serialize_for_json
from dspy.clients.engines.base import validate_request
from dspy.lm15 import Message, Request, Response, TextPart, ToolCallPart, Usage, response_to_events

from eigendspy.lm.request_slots import SlotLimited
from eigendspy.testing.json_values import is_plain_json
from eigendspy.testing.request import ScriptedRequest, build_request_view, message_text

if TYPE_CHECKING:  # dspy.lm15 does not re-export it; engines/base.py imports it the same way
    from dspy._vendor.lm15.types import StreamEvent


class ScriptedToolCall(pydantic.BaseModel):
    """One function call the scripted model "decides" to make."""

    name: str
    arguments: dict[str, Any] = pydantic.Field(default_factory=dict)
    id: str | None = None


class ScriptedToolCalls(pydantic.BaseModel):
    """A tool-calling answer, returned natively when the request offers tools.

    When the adapter did not send native tools (e.g. ``ChatAdapter`` without
    ``use_native_function_calling``), the calls are written as text into the
    ``dspy.ToolCalls`` output field instead, the way a real model would answer.

    Attributes:
        calls: The calls, in order.
        outputs: Values for the other (text) output fields, e.g. a ``next_thought``.
        field: Output field to write the calls into in text mode; inferred when None.
    """

    calls: list[ScriptedToolCall]
    outputs: dict[str, Any] = pydantic.Field(default_factory=dict)
    field: str | None = None


Answer: TypeAlias = dict[str, Any] | ScriptedToolCalls | list[ScriptedToolCall | dict[str, Any]] | str
Policy: TypeAlias = Callable[[ScriptedRequest], Answer | Awaitable[Answer]]


class ScriptExhaustedError(RuntimeError):
    """Raised when a scripted LM is called more times than its script has answers."""


class CallLog:
    """Thread-safe record of the requests a scripted LM received, in call-index order.

    Indices are handed out under the lock, so concurrent ``acall``s consume a script's
    answers exactly once each and ``requests[i].call_index == i``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[ScriptedRequest] = []

    def record(self, build: Callable[[int], ScriptedRequest]) -> ScriptedRequest:
        """Build the view for the next call index and append it atomically."""
        with self._lock:
            view = build(len(self._requests))
            self._requests.append(view)
            return view

    @property
    def count(self) -> int:
        """Number of calls that reached the engine."""
        with self._lock:
            return len(self._requests)

    @property
    def requests(self) -> list[ScriptedRequest]:
        """A snapshot of the received requests."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget all calls; a script restarts from its first answer."""
        with self._lock:
            self._requests.clear()


# --- answer rendering -------------------------------------------------------------------------------------


def _as_calls(answer: Any) -> ScriptedToolCalls | None:
    """Recognise a tool-calling answer: ScriptedToolCalls, dspy.ToolCalls, or a list of call dicts."""
    if isinstance(answer, ScriptedToolCalls):
        return answer
    if isinstance(answer, dspy.ToolCalls):
        return ScriptedToolCalls(
            calls=[ScriptedToolCall(name=c.name, arguments=c.args, id=c.id) for c in answer.tool_calls]
        )
    if isinstance(answer, list) and all(isinstance(c, ScriptedToolCall | dict) for c in answer):
        return ScriptedToolCalls(calls=[ScriptedToolCall.model_validate(c) for c in answer])
    if isinstance(answer, dict):  # {"next_thought": ..., "tool_calls": ScriptedToolCalls | dspy.ToolCalls}
        found = [k for k, v in answer.items() if isinstance(v, ScriptedToolCalls | dspy.ToolCalls)]
        if len(found) == 1:
            inner = _as_calls(answer[found[0]])
            rest = {k: v for k, v in answer.items() if k != found[0]}
            return inner.model_copy(update={"outputs": {**rest, **inner.outputs}, "field": found[0]})
    return None


def _render_fields(view: ScriptedRequest, values: dict[str, Any]) -> str:
    """Write output values in the adapter's format; requested fields first, then any extras."""
    order = [n for n in view.output_fields if n in values] + [n for n in values if n not in view.output_fields]
    plain = {name: values[name] if is_plain_json(values[name]) else serialize_for_json(values[name]) for name in order}
    if view.adapter_format == "json":
        return json.dumps(plain, indent=2, ensure_ascii=False)
    sections = [
        f"[[ ## {n} ## ]]\n{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}" for n, v in plain.items()
    ]
    return "\n\n".join([*sections, "[[ ## completed ## ]]"])


def render_answer(view: ScriptedRequest, answer: Answer) -> Response:
    """Turn a policy answer into an lm15 ``Response`` (text and/or native tool calls).

    Tool calls go out as native ``ToolCallPart``s only when the request offered tools;
    otherwise they are written as ``{"tool_calls": [{"name", "args"}]}`` into the
    ``dspy.ToolCalls`` output field, so one policy serves both adapter modes.
    """
    calls = None if isinstance(answer, str) else _as_calls(answer)
    if isinstance(answer, str):
        text = answer
    elif calls is not None and view.tools:
        text = _render_fields(view, calls.outputs) if calls.outputs else None
    elif calls is not None:
        field = calls.field or view.tool_call_field or "tool_calls"
        wire = {"tool_calls": [{"name": c.name, "args": c.arguments} for c in calls.calls]}
        text, calls = _render_fields(view, {**calls.outputs, field: wire}), None
    elif isinstance(answer, dict):
        text = _render_fields(view, answer)
    else:
        raise TypeError(f"A scripted policy returns a dict, ScriptedToolCalls or str, not {type(answer).__name__}")
    parts: list[Any] = [TextPart(text)] if text else []
    for i, call in enumerate(calls.calls if calls else []):
        parts.append(ToolCallPart(id=call.id or f"call_{view.call_index}_{i}", name=call.name, input=call.arguments))
    prompt_chars = sum(len(message_text(m)) for m in view.messages)
    return Response(
        id=f"scripted-{view.call_index}",
        model=view.model,
        message=Message.assistant(parts or [TextPart("")]),
        finish_reason="tool_call" if calls and calls.calls else "stop",
        usage=Usage(input_tokens=prompt_chars // 4, output_tokens=len(text or "") // 4),
    )


# --- saving -----------------------------------------------------------------------------------------------


def policy_path(source: Any) -> str | None:
    """``"module:qualname"`` of a module-level policy (a function or class), else None (a lambda, a closure,
    an instance or a list of answers cannot be named, so it cannot be saved)."""
    module, qualname = getattr(source, "__module__", None), getattr(source, "__qualname__", None)
    if not callable(source) or not module or not qualname or "<" in qualname or module == "__main__":
        return None
    path = f"{module}:{qualname}"
    try:
        return path if _import_policy(path) is source else None
    except (ImportError, AttributeError):
        return None


def _import_policy(path: str) -> Policy:
    module, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


class UnsavedPolicy:
    """The policy of a scripted LM loaded from a saved program whose policy had no import path."""

    def __call__(self, request: ScriptedRequest) -> Answer:
        raise ScriptExhaustedError("this scripted LM was loaded from a saved program, but its policy (a lambda, "
                                   "closure, instance or list of answers) could not be saved; set the LM again")


# --- engines ----------------------------------------------------------------------------------------------


class ScriptedEngine:
    """Sync engine answering each request from a policy or a script of answers.

    It owns the call log and the answer source only. It does not own DSPy's cache,
    retries, candidate fan-out (``n``), history or callbacks, and performs no I/O.

    Capability flags are read by DSPy's adapters: ``supports_function_calling`` lets
    adapters with native function calling send tools; ``supports_response_schema`` and
    ``response_format`` in ``supported_params`` let ``JSONAdapter`` send a JSON schema.
    """

    def __init__(
        self,
        source: Policy | Sequence[Answer | Policy],
        *,
        latency_s: float = 0.0,
        native_tools: bool = True,
        structured_outputs: bool = True,
    ) -> None:
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if isinstance(source, str | dict | pydantic.BaseModel):
            raise TypeError("pass a policy callable or a list of answers, e.g. [answer]")
        self.source = source if callable(source) else list(source)
        self.latency_s = latency_s
        self.log = CallLog()
        self.supports_function_calling = native_tools
        self.supports_response_schema = structured_outputs
        self.supported_params = frozenset(
            {"temperature", "max_tokens", "stop", "tools", "tool_choice"}
            | ({"response_format"} if structured_outputs else set())
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> ScriptedEngine:
        return self  # engines are borrowed: LM copies share the policy and the call log

    def dump_state(self) -> dict[str, Any]:
        """What ``ScriptedLM.dump_state`` (so ``module.save``) records: the policy's import path (None when it
        has none: the reloaded LM then raises when called) and the engine's settings."""
        return {"policy": policy_path(self.source), "latency_s": self.latency_s,
                "native_tools": self.supports_function_calling, "structured_outputs": self.supports_response_schema}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> ScriptedEngine:
        """Rebuild from `dump_state` (DSPy calls it only with ``allow_unsafe_lm_state=True``: it imports code)."""
        policy = _import_policy(state["policy"]) if state.get("policy") else UnsavedPolicy()
        return cls(policy, latency_s=state.get("latency_s", 0.0), native_tools=state.get("native_tools", True),
                   structured_outputs=state.get("structured_outputs", True))

    def _begin(self, request: Request) -> tuple[ScriptedRequest, Any]:
        validate_request(request)
        view = self.log.record(lambda index: build_request_view(request, index))
        if callable(self.source):
            return view, self.source(view)
        if view.call_index >= len(self.source):
            raise ScriptExhaustedError(f"script has {len(self.source)} answers; call {view.call_index + 1} has none")
        step = self.source[view.call_index]
        return view, step(view) if callable(step) else step

    def complete(self, request: Request) -> Response:
        view, answer = self._begin(request)
        if inspect.isawaitable(answer):
            if inspect.iscoroutine(answer):
                answer.close()
            raise TypeError("An async policy needs the async path (acall/aforward)")
        if self.latency_s:
            time.sleep(self.latency_s)
        return render_answer(view, answer)

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncScriptedEngine:
    """Async counterpart sharing the sync engine's policy and log; latency is ``asyncio.sleep``."""

    def __init__(self, sync: ScriptedEngine) -> None:
        self.sync = sync

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncScriptedEngine:
        return self

    def dump_state(self) -> dict[str, Any]:
        return self.sync.dump_state()

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> AsyncScriptedEngine:
        return cls(ScriptedEngine.load_state(state))

    async def complete(self, request: Request) -> Response:
        view, answer = self.sync._begin(request)
        if inspect.isawaitable(answer):
            answer = await answer
        if self.sync.latency_s:
            await asyncio.sleep(self.sync.latency_s)
        return render_answer(view, answer)

    async def stream(self, request: Request):
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        pass


class ScriptedLM(SlotLimited, dspy.LM):
    """A real ``dspy.LM`` whose answers come from a Python policy or a script.

    Example:
        >>> lm = ScriptedLM(lambda req: {"answer": req.inputs["question"].upper()})
        >>> with dspy.context(lm=lm):
        ...     dspy.Predict("question -> answer")(question="hi").answer
        'HI'

    Args:
        source: A policy ``(ScriptedRequest) -> Answer`` (may be async on the async path), or a
            list of answers consumed in call order (items may themselves be policies).
        latency_s: Simulated latency per call (``time.sleep`` sync, ``asyncio.sleep`` async).
        model: Model string, recorded in history.
        native_tools: Declare native function calling support to adapters.
        structured_outputs: Declare ``response_format`` / JSON-schema support to ``JSONAdapter``.
        cache: DSPy response cache; off so identical requests still reach the policy.
        num_retries: DSPy retries; 0 so a failing call never consumes extra script answers.
        engine: A ready engine instead of ``source`` (how ``dspy.LM.load_state`` rebuilds a saved LM).
        async_engine: Ignored: the async engine always wraps ``engine``, so both paths share one log.
        **kwargs: Forwarded to ``dspy.LM`` (e.g. ``temperature``, ``callbacks``).

    Saving: ``module.save`` works with a ScriptedLM attached (`ScriptedEngine.dump_state` records the
    policy's import path); ``module.load(path, allow_unsafe_lm_state=True)`` rebuilds it (DSPy's rule for
    any custom LM class). A policy without an import path reloads as `UnsavedPolicy`, which raises.
    """

    def __init__(
        self,
        source: Policy | Sequence[Answer | Policy] | None = None,
        *,
        latency_s: float = 0.0,
        model: str = "scripted/policy",
        native_tools: bool = True,
        structured_outputs: bool = True,
        cache: bool = False,
        num_retries: int = 0,
        engine: ScriptedEngine | None = None,
        async_engine: Any = None,
        **kwargs: Any,
    ) -> None:
        if engine is None:
            if source is None:
                raise TypeError("ScriptedLM needs a policy or a list of answers")
            engine = ScriptedEngine(
                source, latency_s=latency_s, native_tools=native_tools, structured_outputs=structured_outputs
            )
        super().__init__(
            model,
            engine=engine,
            async_engine=AsyncScriptedEngine(engine),
            cache=cache,
            num_retries=num_retries,
            **kwargs,
        )

    @property
    def log(self) -> CallLog:
        """The shared call log (copies of this LM share it)."""
        return self.engine.log

    @property
    def call_count(self) -> int:
        """Number of calls that reached the policy."""
        return self.engine.log.count


def scripted_lm(
    policy_or_script: Policy | Sequence[Answer | Policy],
    *,
    latency_s: float = 0.0,
    model: str = "scripted/policy",
    **kwargs: Any,
) -> ScriptedLM:
    """Build a :class:`ScriptedLM`; the short spelling tests and benchmarks use."""
    return ScriptedLM(policy_or_script, latency_s=latency_s, model=model, **kwargs)
