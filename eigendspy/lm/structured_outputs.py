"""Structured outputs for role LMs behind a vLLM server: every typed answer is constrained by its JSON schema.

Why: a role's typed output (the meta-planner's plan list, the generator's task, a small-model turn's
one typed tool call) parses only if the model writes exactly that JSON. A capable model mostly does;
a small one (SmolLM2-135M) does not, and locally it works only because the embedded engine decodes under
a grammar compiled from the schema (`eigendspy.lm.local.engine`). A vLLM server can do the same: its
OpenAI route takes ``response_format: {"type": "json_schema", "json_schema": {"name", "schema",
"strict"}}`` on ``/v1/chat/completions`` and turns it into its own structured-outputs request
(``StructuredOutputsParams(json=schema)``, xgrammar by default; vLLM 0.32's
``structured_outputs_from_response_format``), so nothing vLLM-specific goes on the wire: DSPy's
``JSONAdapter`` already sends that field when the LM declares ``response_schema`` support.

What this module adds to DSPy's path (`eigendspy.lm.cached_adapter.CachedJSONAdapter` applies it when an
LM carries a `StructuredOutputs` policy, see `with_structured_outputs`; chat adapters hand such an LM's
calls to their JSON adapter, so every role call is constrained):

* the schema is the one DSPy builds from the signature's output fields (small-model mode's per-call
  signatures included, so their enums of grounded ids and constant tool names reach the server's
  grammar exactly as they reach the local one), optionally bounded with small-model mode's own
  `eigendspy.lm.small_model.bound_schema` (every free string gets ``maxLength``, every list ``maxItems``);
* ``max_tokens`` is sized from the schema: the longest compact JSON text the schema admits
  (`max_json_chars`), as tokens at most one per character, plus a margin, capped by the policy's
  ceiling. A bounded answer therefore always fits (no truncated, unparsable JSON); an unbounded one
  (a free string, a list without ``maxItems``) gets the ceiling. vLLM itself further caps ``max_tokens``
  at the context left after the prompt.

Signatures whose tool calls go natively (a ``dspy.ToolCalls`` output with native function calling) are
left unconstrained: vLLM applies a schema to the whole answer, which would forbid the tool-call tags its
tool parser reads. Those answers rely on the server's ``--tool-call-parser``.

Limits: the token bound assumes ASCII text (a token covers at least one character); numbers count as
24 characters although JSON's number grammar has no length bound.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eigendspy.lm.small_model import bound_schema

#: The attribute under which an LM carries its policy (a plain attribute: ``dspy.LM`` copies keep it).
ATTRIBUTE = "eigendspy_structured_outputs"
#: Characters counted for one JSON number (the grammar itself has no bound).
NUMBER_CHARS = 24


class StructuredOutputs(BaseModel):
    """How role calls to one LM ask for structured outputs.

    Args:
        max_string_chars: With ``max_array_items``: bound every free string of the schema to this many
            characters (small-model mode's bounds; the embedded model's are 160 and 3). None: as DSPy built it.
        max_array_items: Bound every list without ``maxItems`` to this many items.
        max_tokens: Ceiling of the sized ``max_tokens`` (and its value for an unbounded schema).
        margin_tokens: Added to the schema's bound (end-of-sequence and tokenizer slack).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_string_chars: int | None = Field(default=None, ge=1)
    max_array_items: int | None = Field(default=None, ge=1)
    max_tokens: int = Field(default=2048, ge=1)
    margin_tokens: int = Field(default=16, ge=0)

    @model_validator(mode="after")
    def _both_bounds(self) -> StructuredOutputs:
        if (self.max_string_chars is None) != (self.max_array_items is None):
            raise ValueError("set both max_string_chars and max_array_items, or neither")
        return self


class StructuredFormat(BaseModel):
    """What one signature's calls send: the ``response_format`` dict and the sized ``max_tokens``."""

    model_config = ConfigDict(frozen=True)

    response_format: dict[str, Any]
    max_tokens: int


def with_structured_outputs(lm: Any, policy: StructuredOutputs | None) -> Any:
    """Mark ``lm`` so role calls to it ask for structured outputs under ``policy`` (None: unmark); returns ``lm``."""
    setattr(lm, ATTRIBUTE, policy)
    return lm


def structured_outputs_of(lm: Any) -> StructuredOutputs | None:
    """The policy ``lm`` carries, or None (an ordinary LM)."""
    policy = getattr(lm, ATTRIBUTE, None)
    return policy if isinstance(policy, StructuredOutputs) else None


def schema_of(response_format: Any) -> tuple[str, dict[str, Any]] | None:
    """``(name, JSON schema)`` of a response format DSPy's ``JSONAdapter`` chose, or None for JSON mode.

    DSPy hands either a pydantic model (its structured-outputs model, sent strict) or a dict; the model's
    schema is shaped exactly as DSPy's own request builder shapes it for strict mode."""
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        from dspy.clients.legacy_requests import _strict_json_schema

        return response_format.__name__, _strict_json_schema(response_format.model_json_schema())
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema") or response_format
        if isinstance(inner.get("schema"), dict):
            return str(inner.get("name") or "response"), inner["schema"]
    return None


def max_json_chars(schema: Any) -> int | None:
    """The length of the longest compact JSON text ``schema`` admits, or None when it has no bound.

    Unbounded: a string without ``maxLength`` or ``enum``/``const``, an array without ``maxItems``, an
    object open to extra properties, a recursive ``$ref``. Numbers count `NUMBER_CHARS`."""
    if not isinstance(schema, dict):
        return None
    return _chars(schema, schema, ())


def _dumped(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _chars(node: Any, root: dict[str, Any], seen: tuple[str, ...]) -> int | None:
    if node is True or node == {}:
        return None  # any value
    if not isinstance(node, dict):
        return None
    if "const" in node:
        return _dumped(node["const"])
    if "enum" in node:
        return max((_dumped(v) for v in node["enum"]), default=0)
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen or not isinstance(ref, str) or not ref.startswith("#/"):
            return None
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _chars({**target, **rest} if isinstance(target, dict) else None, root, (*seen, ref))
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _most([_chars(option, root, seen) for option in node[key]])
    if "allOf" in node:
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            merged.update(part if isinstance(part, dict) else {})
        return _chars(merged, root, seen)
    kinds = node.get("type")
    if isinstance(kinds, list):
        return _most([_chars({**node, "type": kind}, root, seen) for kind in kinds])
    return _typed_chars(kinds, node, root, seen)


def _typed_chars(kind: Any, node: dict[str, Any], root: dict[str, Any], seen: tuple[str, ...]) -> int | None:
    if kind == "string":
        limit = node.get("maxLength")
        return None if limit is None else int(limit) + 2
    if kind in ("integer", "number"):
        return NUMBER_CHARS
    if kind == "boolean":
        return 5
    if kind == "null":
        return 4
    if kind == "array":
        items, limit = node.get("items"), node.get("maxItems")
        if limit is None:
            return None
        if int(limit) == 0:
            return 2
        item = _chars(items, root, seen) if items is not None else None
        return None if item is None else 2 + int(limit) * item + (int(limit) - 1)
    if kind == "object" or "properties" in node:
        props = node.get("properties") or {}
        if node.get("additionalProperties", True) is not False:
            return None
        total = 2 + max(len(props) - 1, 0)
        for name, sub in props.items():
            value = _chars(sub, root, seen)
            if value is None:
                return None
            total += _dumped(str(name)) + 1 + value
        return total
    return None


def _most(values: list[int | None]) -> int | None:
    return None if not values or any(v is None for v in values) else max(v for v in values if v is not None)


def structured_format(policy: StructuredOutputs, response_format: Any) -> StructuredFormat | None:
    """The format ``policy`` sends for the one DSPy chose: its schema (bounded when the policy says so) as
    ``{"type": "json_schema", "json_schema": {"name", "schema", "strict": true}}``, and ``max_tokens`` sized
    from that schema. JSON mode (``{"type": "json_object"}``) stays as it is, with the ceiling; None when
    DSPy chose no format."""
    if response_format is None:
        return None
    found = schema_of(response_format)
    if found is None:
        return StructuredFormat(response_format=copy.deepcopy(response_format), max_tokens=policy.max_tokens)
    name, schema = found
    if policy.max_string_chars is not None and policy.max_array_items is not None:
        schema = bound_schema(schema, policy.max_string_chars, policy.max_array_items)
    return StructuredFormat(response_format={"type": "json_schema", "json_schema": {
        "name": name, "schema": schema, "strict": True}}, max_tokens=sized_max_tokens(policy, schema))


def sized_max_tokens(policy: StructuredOutputs, schema: dict[str, Any]) -> int:
    """``max_tokens`` for answers under ``schema``: its character bound plus the margin, at most the ceiling."""
    chars = max_json_chars(schema)
    if chars is None:
        return policy.max_tokens
    return min(policy.max_tokens, chars + policy.margin_tokens)
