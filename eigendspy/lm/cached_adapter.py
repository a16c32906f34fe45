"""DSPy's Chat/JSON adapters with the call-invariant part of every prompt formatted once.

Why: a role's prompt is mostly the same on every call. The system message (field descriptions, the
field structure with each output's JSON schema, the instructions) depends only on the signature, and
the ``list[dspy.Tool]`` input (the domain's 16 tool schemas, serialized through pydantic) is the same
list object on every turn of every episode. Stock DSPy rebuilds both per call: ~1.7 ms of the ~2.4 ms
it spends formatting one assistant call with the retail policy and tools (most of it pydantic
regenerating the ``ToolCalls`` JSON schema), so the engine's CPU per LM call is mostly re-formatting.

`CachedChatAdapter` / `CachedJSONAdapter` subclass DSPy's own adapters (no fork: the system message,
the tools text, demos, parsing and the JSON fallback are DSPy's own code, only remembered) and keep
bounded LRU caches per adapter instance:

* system messages, keyed by a structural key of the signature (instructions, and per field, in order:
  name, annotation structure, DSPy extras such as desc/prefix/constraints, pydantic metadata). A
  predictor whose instructions an optimizer rewrote (new signature or set in place), or a signature
  with one field retyped, gets a new key; an unhashable part skips the cache for that call.
* formatted tool inputs (a ``dspy.Tool`` or a list/tuple of them), keyed by the value's identity and
  checked against each tool's identity, name, description and args dict identity (a list grown in
  place or a description edited in place is re-formatted); the entry holds the value, so an id is
  never reused while it is cached.

The user message is ChatAdapter's ``format_user_message_content`` loop (JSONAdapter inherits it) with
two shortcuts where the result is known: a plain ``str`` value is its own formatting (DSPy builds a
pydantic ``TypeAdapter`` per field per call to find that out) and tool inputs come from the cache.
If a class between the mixin and DSPy's ChatAdapter reimplements that method, it is called instead.

Demos are formatted per call (their tool inputs hit the value cache), so demos an optimizer swaps in show up at once.
The JSON adapter also remembers the structured-output response format per signature key and LM capabilities (building
it is a pydantic ``create_model`` per call in stock DSPy). An LM carrying a structured-outputs policy (a vLLM server:
`eigendspy.lm.structured_outputs`) is always answered through the JSON adapter, under the signature's (bounded) schema
with ``max_tokens`` sized from it.

Limits: a tool mutated in place in a way the check cannot see (same object, name, description and args
dict object, e.g. its ``arg_types`` or an args entry edited) is served stale: build a new tool instead.
With native function calling, the signature without its tool fields (DSPy's ``delete``, a pydantic
model built per call) is remembered too; the tools DSPy sends natively are still built per call.
Callbacks fire exactly as with the stock adapters (no second callback layer on ``format``/``parse``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Literal, get_args, get_origin

import dspy
from dspy.adapters.types.tool import Tool, ToolCalls
from dspy.adapters.utils import format_field_value
from pydantic import BaseModel

from eigendspy.lm.structured_outputs import StructuredOutputs, structured_format, structured_outputs_of

#: Default bound of each cache (entries); a run has a handful of role signatures and tool lists.
DEFAULT_CACHE_SIZE = 256
_MISSING = object()


class CacheStats(BaseModel):
    """Hits, misses and size of one adapter cache (for tests and benchmarks)."""

    hits: int = 0
    misses: int = 0
    size: int = 0
    maxsize: int = DEFAULT_CACHE_SIZE


class LRU:
    """A small thread-safe LRU map (DSPy's parallel evaluators format from several threads)."""

    def __init__(self, maxsize: int = DEFAULT_CACHE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize, self.hits, self.misses = maxsize, 0, 0
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        """Copies and pickles are empty caches of the same bound (a lock cannot be copied; entries need not)."""
        return (LRU, (self.maxsize,))

    def get(self, key: Hashable, valid: Callable[[Any], bool] | None = None) -> Any:
        """The value under ``key``, or ``_MISSING`` when absent or when ``valid`` rejects it (a stale entry)."""
        with self._lock:
            value = self._data.get(key, _MISSING)
            if value is not _MISSING and valid is not None and not valid(value):
                value = _MISSING
            if value is _MISSING:
                self.misses += 1
            else:
                self.hits += 1
                self._data.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def stats(self) -> CacheStats:
        return CacheStats(hits=self.hits, misses=self.misses, size=len(self._data), maxsize=self.maxsize)


def _structure(annotation: Any) -> Hashable:
    """An order-preserving structural key: ``Literal[1, 2] == Literal[2, 1]`` in Python, but DSPy
    prints them differently, so typing's own equality is not enough."""
    origin = get_origin(annotation)
    if origin is None:
        return annotation
    args = get_args(annotation)
    if origin is Literal:
        return (Literal, tuple((type(a), a) for a in args))
    return (origin, tuple(_structure(a) for a in args))


#: Structural keys by annotation identity (annotations are immutable; the entry pins the object).
_annotation_keys: dict[int, tuple[Any, Hashable]] = {}


def _annotation_key(annotation: Any) -> Hashable:
    hit = _annotation_keys.get(id(annotation))
    if hit is not None and hit[0] is annotation:
        return hit[1]
    key = _structure(annotation)
    hash(key)  # an unhashable annotation raises here, before it is remembered
    if len(_annotation_keys) >= 4 * DEFAULT_CACHE_SIZE:
        _annotation_keys.clear()
    _annotation_keys[id(annotation)] = (annotation, key)
    return key


def signature_key(signature: type[dspy.Signature]) -> Hashable | None:
    """Everything the system message is made of, as a hashable key; ``None`` when a part is unhashable.

    Read afresh on every call (no memo per class): DSPy builds signatures per call (``delete`` for native
    tools, ``with_updated_fields`` in small-model mode) and ``instructions`` can be set in place. The
    instructions enter as ``__doc__``, which DSPy's ``instructions`` property cleans on every read."""
    try:
        key = (getattr(signature, "__doc__", ""), tuple(
            (name, _annotation_key(f.annotation), tuple((f.json_schema_extra or {}).items()), tuple(f.metadata))
            for name, f in signature.model_fields.items()))
        hash(key)
    except TypeError:
        return None
    return key


def _tools_of(value: Any) -> tuple[Tool, ...] | None:
    """The tools of a tool input (one ``dspy.Tool`` or a non-empty list/tuple of them), else ``None``."""
    if isinstance(value, Tool):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, Tool) for t in value):
        return tuple(value)
    return None


def _tools_fingerprint(tools: tuple[Tool, ...]) -> tuple[Any, ...]:
    return tuple((id(t), t.name, t.desc, id(t.args)) for t in tools)


class PromptCacheMixin:
    """Caches the system message, tool inputs (and JSON response formats) of a DSPy chat adapter.

    Args:
        cache_size: Bound of each LRU cache (system messages, tool inputs, response formats).
        *args, **kwargs: The wrapped DSPy adapter's own arguments.
    """

    def __init__(self, *args: Any, cache_size: int = DEFAULT_CACHE_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache_size = cache_size
        self._system_cache = LRU(cache_size)
        self._value_cache = LRU(cache_size)
        self._format_cache = LRU(cache_size)
        self._fallback: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # dspy's Adapter wraps ``format``/``parse`` with callbacks in every subclass; undo that one layer
        # so a callback fires as often as with the stock adapter this class extends.
        super().__init_subclass__(**kwargs)
        for name in ("format", "parse"):
            if name not in cls.__dict__ or not hasattr(cls.__dict__[name], "__wrapped__"):
                continue
            inherited = getattr(super(cls, cls), name)
            if cls.__dict__[name].__wrapped__ is inherited:
                setattr(cls, name, inherited)

    def cache_stats(self) -> dict[str, CacheStats]:
        """Hits, misses and sizes of the ``system`` (system messages and native-tools signatures), ``tools``
        and ``response_format`` caches."""
        return {"system": self._system_cache.stats(), "tools": self._value_cache.stats(),
                "response_format": self._format_cache.stats()}

    def clear_cache(self) -> None:
        for cache in (self._system_cache, self._value_cache, self._format_cache):
            cache.clear()

    def _call_preprocess(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature],
                         inputs: dict[str, Any]) -> type[dspy.Signature]:
        """DSPy's, with the native-tools signature (tool fields deleted: two pydantic ``create_model``s per
        call in DSPy) remembered per signature key. Only the plain native-tools case is served from the
        cache; every other case (no native calling, an LM without it, native response types) is DSPy's."""
        if not self.use_native_function_calling or any(
                f.annotation in self.native_response_types for f in signature.output_fields.values()):
            return super()._call_preprocess(lm, lm_kwargs, signature, inputs)
        names = (self._get_tool_call_input_field_name(signature), self._get_tool_call_output_field_name(signature))
        key = signature_key(signature) if None not in names and lm.supports_function_calling else None
        if key is None:
            return super()._call_preprocess(lm, lm_kwargs, signature, inputs)
        processed = self._system_cache.get(("native_tools", key, names))
        if processed is _MISSING:
            processed = super()._call_preprocess(lm, lm_kwargs, signature, inputs)
            self._system_cache.put(("native_tools", key, names), processed)
            return processed
        # what DSPy's native-tools branch does besides deleting the two fields
        tools = inputs[names[0]]
        lm_kwargs["tools"] = [tool.format_as_litellm_function_call() for tool in
                              (tools if isinstance(tools, list) else [tools])]
        if self.parallel_tool_calls is not None and lm_kwargs.get("parallel_tool_calls") is None:
            lm_kwargs["parallel_tool_calls"] = self.parallel_tool_calls
        return processed

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: Any, inputs: Any) -> Any:
        if (json_adapter := self._structured_route(lm)) is not None:
            return json_adapter(lm, lm_kwargs, signature, demos, inputs)
        return super().__call__(lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: Any, inputs: Any) -> Any:
        if (json_adapter := self._structured_route(lm)) is not None:
            return await json_adapter.acall(lm, lm_kwargs, signature, demos, inputs)
        return await super().acall(lm, lm_kwargs, signature, demos, inputs)

    def _structured_route(self, lm: Any) -> Any:  # the JSON adapter for an LM asking for structured outputs, or None
        ask = structured_outputs_of(lm) is not None and not isinstance(self, dspy.JSONAdapter)
        return self._make_json_adapter_fallback() if ask else None

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        key = signature_key(signature)
        if key is None:
            return super().format_system_message(signature)
        message = self._system_cache.get(key)
        if message is _MISSING:
            message = super().format_system_message(signature)
            self._system_cache.put(key, message)
        return message

    def format_user_message_content(self, signature: type[dspy.Signature], inputs: dict[str, Any],
                                    prefix: str = "", suffix: str = "", main_request: bool = False) -> str:
        if not self._stock_user_format():
            # a class between this mixin and DSPy's reimplements it: let it format, tool inputs pre-formatted
            return super().format_user_message_content(signature, self._preformatted(signature, inputs),
                                                       prefix=prefix, suffix=suffix, main_request=main_request)
        # ChatAdapter.format_user_message_content (also JSONAdapter's), with each value from `_field_text`
        messages = [prefix]
        for name, field in signature.input_fields.items():
            if name in inputs:
                messages.append(f"[[ ## {name} ## ]]\n{self._field_text(field, inputs.get(name))}")
        if main_request:
            output_requirements = self.user_message_output_requirements(signature)
            if output_requirements is not None:
                messages.append(output_requirements)
        messages.append(suffix)
        return "\n\n".join(messages).strip()

    def _stock_user_format(self) -> bool:
        """Whether the method this mixin overrides is DSPy's ChatAdapter's own (checked once per class)."""
        cls = type(self)
        own = cls.__dict__.get("_stock_user_format_cached")
        if own is None:
            inherited = getattr(super().format_user_message_content, "__func__", None)
            own = inherited is dspy.ChatAdapter.format_user_message_content
            cls._stock_user_format_cached = own
        return own

    def _field_text(self, field: Any, value: Any) -> str:
        """DSPy's ``format_field_value``, minus its work where the answer is known: a plain ``str`` formats
        to itself (DSPy round-trips it through a fresh pydantic ``TypeAdapter``), tool inputs are cached."""
        if type(value) is str:
            return value
        tools = _tools_of(value)
        if tools is not None:
            return self._tool_text(field, value, tools)
        return format_field_value(field_info=field, value=value)

    def _preformatted(self, signature: type[dspy.Signature], inputs: Any) -> Any:
        """``inputs`` with each tool input replaced by its formatted text (formatting a string returns it
        unchanged, so DSPy's own formatting then yields the same bytes); ``inputs`` itself if none."""
        swapped: dict[str, Any] | None = None
        for name, field in signature.input_fields.items():
            if name not in inputs:
                continue
            value = inputs[name]
            tools = _tools_of(value)
            if tools is None:
                continue
            if swapped is None:
                swapped = {k: inputs[k] for k in signature.input_fields if k in inputs}
            swapped[name] = self._tool_text(field, value, tools)
        return inputs if swapped is None else swapped

    def _tool_text(self, field: Any, value: Any, tools: tuple[Tool, ...]) -> str:
        key = (id(value), field.annotation is str)
        fingerprint = _tools_fingerprint(tools)
        hit = self._value_cache.get(key, valid=lambda entry: entry[0] is value and entry[1] == fingerprint)
        if hit is not _MISSING:
            return hit[2]
        text = format_field_value(field_info=field, value=value)
        self._value_cache.put(key, (value, fingerprint, text))
        return text

    def _make_json_adapter_fallback(self) -> Any:
        """ChatAdapter's JSON retry, as a cached JSON adapter kept across calls (same settings as DSPy's)."""
        settings = (self.use_native_function_calling, self.parallel_tool_calls)
        if self._fallback is None or self._fallback[0] != settings:
            adapter = CachedJSONAdapter(use_native_function_calling=settings[0], parallel_tool_calls=settings[1],
                                        cache_size=self.cache_size)
            self._fallback = (settings, adapter)
        return self._fallback[1]


class CachedChatAdapter(PromptCacheMixin, dspy.ChatAdapter):
    """`dspy.ChatAdapter` with its call-invariant prompt parts cached (same messages, byte for byte)."""


class CachedJSONAdapter(PromptCacheMixin, dspy.JSONAdapter):
    """`dspy.JSONAdapter` with its call-invariant prompt parts and response formats cached."""

    def _prepare_response_format(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[dspy.Signature]) -> None:
        policy = structured_outputs_of(lm)
        if policy is not None:
            return self._prepare_structured_outputs(policy, lm, lm_kwargs, signature)
        sig = signature_key(signature)
        if sig is None or "response_format" not in lm.supported_params:
            return super()._prepare_response_format(lm, lm_kwargs, signature)
        key = (sig, self.use_native_function_calling, bool(lm.supports_response_schema))
        cached = self._format_cache.get(key)
        if cached is _MISSING:
            super()._prepare_response_format(lm, lm_kwargs, signature)
            cached = lm_kwargs.get("response_format", _MISSING)
            self._format_cache.put(key, cached)
        if cached is not _MISSING:
            # a JSON-mode dict is copied (the LM may edit its kwargs); a schema model class is shared
            lm_kwargs["response_format"] = copy.deepcopy(cached) if isinstance(cached, dict) else cached
        return None

    def _prepare_structured_outputs(self, policy: StructuredOutputs, lm: Any, lm_kwargs: dict[str, Any],
                                    signature: type[dspy.Signature]) -> None:
        """`eigendspy.lm.structured_outputs`: DSPy's format as a (bounded) schema, ``max_tokens`` sized from it."""
        if self.use_native_function_calling and lm.supports_function_calling and any(
                f.annotation == ToolCalls for f in signature.output_fields.values()):
            return None
        sig = signature_key(signature)
        key = ("structured", sig, policy, self.use_native_function_calling, bool(lm.supports_response_schema))
        found = self._format_cache.get(key) if sig is not None else _MISSING
        if found is _MISSING:
            chosen: dict[str, Any] = {}
            super()._prepare_response_format(lm, chosen, signature)
            found = structured_format(policy, chosen.get("response_format"))
            if sig is not None:
                self._format_cache.put(key, found)
        if found is not None:
            lm_kwargs["response_format"] = copy.deepcopy(found.response_format)
            lm_kwargs.setdefault("max_tokens", found.max_tokens)
        return None


@functools.cache
def shared_chat_adapter() -> dspy.ChatAdapter:
    """One process-wide `CachedChatAdapter` for the role modules' turns: every episode formats the same few
    signatures, so one bounded, locked cache serves them all (Ray workers each build their own). Built once:
    it is looked up on every turn."""
    return CachedChatAdapter()


def chat_adapter(cached: bool = True) -> dspy.ChatAdapter:
    """The default chat adapter: `CachedChatAdapter`, or DSPy's own with ``cached=False`` (the off knob)."""
    return CachedChatAdapter() if cached else dspy.ChatAdapter()


def json_adapter(cached: bool = True) -> dspy.JSONAdapter:
    """The JSON adapter (small models, grammar-constrained outputs): cached unless ``cached=False``."""
    return CachedJSONAdapter() if cached else dspy.JSONAdapter()


def default_adapter_scope(adapter: Any) -> contextlib.AbstractContextManager[Any]:
    """Run DSPy calls in this block with ``adapter`` where DSPy would use its default ``ChatAdapter()``:
    an adapter the caller set (``dspy.configure``/``dspy.context``) wins, and ``None`` changes nothing."""
    if adapter is None or dspy.settings.adapter is not None:
        return contextlib.nullcontext()
    return dspy.context(adapter=adapter)
