"""A JSON adapter for small-model mode whose prompts keep every call's changing part at the end.

Why: in small-model mode (`eigendspy.lm.small_model`) each call's output type is built per call — unions of
per-tool call objects, grounded id enums, ``Literal`` utterances — and DSPy's JSON adapter prints that type
(its name and full JSON schema) in the *system* message, ahead of the policy, the tools and the dialogue.
So two calls of one role shared only ~11% of their prompt tokens as a prefix and the embedded engine's
prefix KV cache (`eigendspy.lm.local.prefix_cache`) could skip little of each prefill (docs/embedded_model.md).

`SmallModelJSONAdapter` is DSPy's JSON adapter (through `CachedJSONAdapter`: parsing, demos, the response
format and the JSON fallback are unchanged) with the prompt laid out stable-first:

* the system message names each structured output field's type by a call-invariant label (``str`` for a
  ``Literal`` of strings, ``JSON`` otherwise) and points to the end of the user message for its format;
  it depends only on the role's instructions and field names, so it is the same on every call of a role;
* the user message puts the inputs every call of a role shares first (``leading``: ``domain``, ``policy``,
  ``tools`` and any ``dspy.Tool`` list), then the other inputs in signature order (the dialogue, the task);
* the per-call format comes last: each structured output as a compact JSON sketch of its schema
  (`compact_schema`: the allowed values spelled out, ``|`` between alternatives), a fraction of the tokens
  of the schema DSPy prints.

The response format sent to the LM is DSPy's own, built from the real signature, so a grammar-constrained
engine enforces exactly the same constraints as with `CachedJSONAdapter`; only the prompt text differs.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any, Literal, get_args, get_origin

import dspy
import pydantic
from dspy.adapters.types.tool import Tool
from dspy.adapters.utils import get_annotation_name, translate_field_type

from eigendspy.lm.cached_adapter import CachedJSONAdapter

__all__ = ["DEFAULT_LEADING", "SmallModelJSONAdapter", "compact_schema", "small_model_adapter"]

#: Inputs every call of a role shares, in prompt order (the rest follow in signature order).
DEFAULT_LEADING = ("domain", "policy", "tools")
_PLAIN = (str, int, float, bool)
_SEE_BELOW = "must follow the format given at the end of the user message"


def _label(annotation: Any) -> str:
    """A call-invariant type name: a ``Literal``'s value type, ``JSON`` for any other structured type."""
    if get_origin(annotation) is Literal:
        kinds = {type(a) for a in get_args(annotation)}
        return kinds.pop().__name__ if len(kinds) == 1 else "JSON"
    return "JSON"


def _schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of an output type with its properties in declaration order (the order the response
    format, hence the grammar, asks for them; DSPy's printed schema sorts them)."""
    return pydantic.TypeAdapter(annotation).json_schema()


def _tool_list(annotation: Any) -> bool:
    """Whether an input is a ``dspy.Tool`` or a list of them (the same tools on every call of a role)."""
    if annotation is Tool:
        return True
    return get_origin(annotation) in (list, tuple) and Tool in get_args(annotation)


def compact_schema(schema: Any, defs: dict[str, Any] | None = None, depth: int = 0) -> str:
    """A short JSON-like sketch of a JSON schema: constants and enum values spelled out, ``|`` between
    alternatives, ``string``/``integer``/... for free values (``$ref``s into ``$defs`` resolved).

    Example: ``{"name": "create_task", "arguments": {"user_id": "user_4" | "user_2", "title": string}} | null``.
    """
    if not isinstance(schema, dict):
        return "any"
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if depth > 12:
        return "any"
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref.split("/")[-1] in defs:
        return compact_schema(defs[ref.split("/")[-1]], defs, depth + 1)
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    if "enum" in schema:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(compact_schema(s, defs, depth + 1) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(compact_schema({**schema, "type": k}, defs, depth + 1) for k in kind)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return "{" + ", ".join(f"{json.dumps(k)}: {compact_schema(v, defs, depth + 1)}" for k, v in props.items()) + "}"
    if kind == "array":
        item = compact_schema(schema.get("items", {}), defs, depth + 1)
        return f"[{item}]" if schema.get("maxItems") == 1 else f"[{item}, ...]"
    return kind if isinstance(kind, str) else "any"


class SmallModelJSONAdapter(CachedJSONAdapter):
    """`CachedJSONAdapter` with a stable-first prompt layout (see the module doc); same response format.

    Args:
        leading: Input names put first in the user message, in this order (the inputs a role's calls share);
            ``dspy.Tool`` list inputs follow them; other inputs keep their signature order after those.
        *args, **kwargs: `CachedJSONAdapter`'s own arguments.
    """

    def __init__(self, *args: Any, leading: Sequence[str] = DEFAULT_LEADING, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leading = tuple(leading)

    # --- which parts change per call ------------------------------------------------------------------

    @staticmethod
    def _structured(field: Any) -> bool:
        """Whether an output field's type is printed at the end (anything but a plain str/int/float/bool)."""
        return field.annotation not in _PLAIN

    def _input_order(self, signature: type[dspy.Signature]) -> list[str]:
        fields = signature.input_fields
        first = [n for n in self.leading if n in fields]
        first += [n for n, f in fields.items() if n not in first and _tool_list(f.annotation)]
        return first + [n for n in fields if n not in first]

    # --- system message: call-invariant ---------------------------------------------------------------

    def _stable_key(self, signature: type[dspy.Signature]) -> Hashable | None:
        try:
            key = ("small", self.leading, getattr(signature, "__doc__", ""),
                   tuple((n, repr(f.annotation), tuple((f.json_schema_extra or {}).items()))
                         for n, f in signature.input_fields.items()),
                   tuple((n, _label(f.annotation) if self._structured(f) else f.annotation,
                          tuple((f.json_schema_extra or {}).items())) for n, f in signature.output_fields.items()))
            hash(key)
        except TypeError:
            return None
        return key

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        key = self._stable_key(signature)
        message = self._system_cache.get(key) if key is not None else None
        if not isinstance(message, str):  # a miss (the cache's own sentinel) or an unhashable signature
            message = (f"{self.format_field_description(signature)}\n{self.format_field_structure(signature)}\n"
                       f"{self.format_task_description(signature)}")
            if key is not None:
                self._system_cache.put(key, message)
        return message

    def format_field_description(self, signature: type[dspy.Signature]) -> str:
        def lines(fields: dict[str, Any], names: list[str], label: bool) -> str:
            out = []
            for i, name in enumerate(names):
                f = fields[name]
                kind = _label(f.annotation) if label and self._structured(f) else get_annotation_name(f.annotation)
                desc = f.json_schema_extra["desc"] if f.json_schema_extra["desc"] != f"${{{name}}}" else ""
                out.append(f"{i + 1}. `{name}` ({kind}): {desc}")
            return "\n".join(out)

        return (f"Your input fields are:\n{lines(signature.input_fields, self._input_order(signature), False)}\n"
                f"Your output fields are:\n{lines(signature.output_fields, list(signature.output_fields), True)}")

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        inputs = "\n\n".join(f"[[ ## {n} ## ]]\n{{{n}}}" for n in self._input_order(signature))
        outputs = {name: f"{{{name}}}        # note: the value you produce {_SEE_BELOW}" if self._structured(field)
                   else translate_field_type(name, field) for name, field in signature.output_fields.items()}
        return "\n\n".join([
            "All interactions will be structured in the following way, with the appropriate values filled in.",
            "Inputs will have the following structure:", inputs,
            "Outputs will be a JSON object with the following fields.",
            json.dumps(outputs, indent=2, ensure_ascii=False)])

    # --- user message: shared inputs, then the rest, then this call's formats --------------------------

    def format_user_message_content(self, signature: type[dspy.Signature], inputs: dict[str, Any],
                                    prefix: str = "", suffix: str = "", main_request: bool = False) -> str:
        messages = [prefix]
        for name in self._input_order(signature):
            if name in inputs:
                messages.append(f"[[ ## {name} ## ]]\n{self._field_text(signature.input_fields[name], inputs[name])}")
        if main_request:
            messages.append(self.user_message_output_requirements(signature))
        messages.append(suffix)
        return "\n\n".join(messages).strip()

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        parts = []
        for name, field in signature.output_fields.items():
            if self._structured(field):
                parts.append(f"`{name}` (exactly one of: {compact_schema(_schema(field.annotation))})")
            elif field.annotation is not str:
                parts.append(f"`{name}` (a {field.annotation.__name__})")
            else:
                parts.append(f"`{name}`")
        return "Respond with a JSON object in the following order of fields: " + ", then ".join(parts) + "."


def small_model_adapter(**kwargs: Any) -> SmallModelJSONAdapter:
    """The adapter small-model roles on a grammar-constrained local LM use (``demo-synth``)."""
    return SmallModelJSONAdapter(**kwargs)
