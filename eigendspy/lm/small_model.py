"""Small-model mode: output types whose grammar leaves a tiny model no wrong structural choice.

Why: a tiny model (the embedded one) writes valid JSON under grammar-constrained decoding, but given
a free choice it takes whatever the grammar offers first — a tool call with ``{}`` arguments, an
invented id, a reward basis the task cannot meet (docs/embedded_model.md). In small-model mode the role modules do not
ask it for those choices: they hand DSPy per-call *typed* outputs built here, and the JSON schema
DSPy derives from them (so the grammar the local engine compiles) admits only

* tool calls that name a real tool, as a union of per-tool objects whose ``name`` is a constant
  and whose ``arguments`` hold that tool's required parameters (optional ones are left out:
  every extra value is one more the gold solution and the assistant must agree on);
* id-like arguments (``*_id``, ``*_ids``, ``id``) drawn from an enum of values the caller
  grounded: the database rows shown to the task generator, or the ids the user said and the
  tools returned in the dialogue the assistant sees — a tool whose id cannot be grounded is not
  offered at all;
* bounded strings and lists, so a model stuck repeating itself stops early.

Everything here is plain pydantic; nothing depends on the local engine, so a capable remote LM
can run in small-model mode too (it just gains little).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from eigendspy.core.messages import Message
from eigendspy.core.tool import ToolSpec

MAX_ARG_CHARS = 60  # free-text arguments (a title, a summary): short values are easier to repeat exactly
MAX_CALLS = 1  # tool calls per assistant turn: one decision at a time
_ID_KEY = re.compile(r"(^|_)ids?$")
_TOKEN = re.compile(r"[#\w][\w\-@.#/]*")
_QUOTED = re.compile(r'"([^"\n]{1,80})"')

Values = dict[str, list[str]]
"""Grounded string values per key (``{"task_id": ["task_3", ...]}``), first seen first."""


@dataclass
class Grounding:
    """Id values a call may use, and the row each id was seen in (for no-op exclusion)."""

    values: Values = field(default_factory=dict)
    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    said: set[str] | None = None  # tokens the other party said: enum arguments narrow to those when any match
    quoted: list[str] = field(default_factory=list)  # "quoted" text the other party said: free-text arguments

    def add(self, key: str, value: Any, row: dict[str, Any] | None) -> None:
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            seen = self.values.setdefault(key, [])
            if str(value) not in seen:
                seen.append(str(value))
            if row is not None:
                self.rows.setdefault((key, str(value)), row)

    def only(self, keep: Values) -> Grounding:
        """The grounding restricted to ``keep`` (same rows)."""
        return Grounding({k: list(v) for k, v in keep.items()}, self.rows, self.said, self.quoted)


def id_like(name: str) -> bool:
    """Whether a parameter or field name holds identifiers (``id``, ``order_id``, ``item_ids``)."""
    return bool(_ID_KEY.search(name))


def _value_key(param: str) -> str:
    """The field name whose values fill ``param``: ``item_ids`` is filled from ``item_id`` fields."""
    return param[:-1] if param.endswith("ids") else param


def collect_values(data: Any, into: Grounding | None = None) -> Grounding:
    """Every string (or integer) value under an id-like key anywhere in a JSON-like value; a scalar
    id's enclosing object is kept as its row (``{"task_id": "task_3", "status": "pending"}``)."""
    out = Grounding() if into is None else into

    def walk(value: Any) -> None:
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if isinstance(value, dict):
            for key, item in value.items():
                if id_like(str(key)):
                    if isinstance(item, list):
                        for leaf in item:
                            out.add(_value_key(str(key)), leaf, None)
                    else:
                        out.add(str(key), item, value)
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(data)
    return out


def values_from_text(text: str, into: Grounding | None = None) -> Grounding:
    """Id values in text made of JSON documents: a whole JSON text, else one JSON row per line
    (the rendering of `eigendspy.engine.entities.sample_entities`); lines that are not JSON are skipped."""
    out = Grounding() if into is None else into
    try:
        return collect_values(json.loads(text), out)
    except (TypeError, ValueError):
        pass
    for line in (text or "").splitlines():
        line = line.strip()
        if line[:1] in "{[":
            try:
                collect_values(json.loads(line), out)
            except ValueError:
                continue
    return out


def tokens(texts: Iterable[str]) -> set[str]:
    """The word-like tokens of ``texts`` (ids keep their ``_``, ``-``, ``#``), lower-cased too."""
    out: set[str] = set()
    for text in texts:
        for token in _TOKEN.findall(text or ""):
            token = token.strip(".,;:!?'\"")
            out.update({token, token.lstrip("#"), token.lower()})
    return out


def mentioned(values: Values, texts: Iterable[str]) -> Values:
    """The subset of ``values`` that occurs as a token in ``texts`` (ids a speaker actually said)."""
    said = tokens(texts)
    return {key: hits for key, vals in values.items() if (hits := [v for v in vals if v in said])}


def _bounded_str(max_chars: int) -> Any:
    return Annotated[str, StringConstraints(min_length=1, max_length=max_chars)]


def _param_type(name: str, schema: Mapping[str, Any], grounding: Grounding, max_chars: int) -> Any:
    """The annotation of one argument, or None when an id-like argument has no grounded value."""
    is_array = schema.get("type") == "array"
    if id_like(name):
        options = grounding.values.get(_value_key(name))
        if not options:
            return None
        choice = Literal[tuple(options)]  # type: ignore[valid-type]
        return Annotated[list[choice], Field(min_length=1, max_length=4)] if is_array else choice
    if schema.get("enum"):
        options = [e for e in schema["enum"] if grounding.said is not None and str(e).lower() in grounding.said]
        return Literal[tuple(options or schema["enum"])]  # type: ignore[valid-type]
    kind = schema.get("type")
    if kind == "string":
        return Literal[tuple(grounding.quoted)] if grounding.quoted else _bounded_str(max_chars)  # type: ignore
    if kind in ("integer", "number", "boolean"):
        return {"integer": int, "number": float, "boolean": bool}[kind]
    if is_array and (schema.get("items") or {}).get("type") == "string":
        return Annotated[list[_bounded_str(max_chars)], Field(min_length=1, max_length=4)]
    return Any  # objects and unions: any JSON value (the tool validates it)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", name) if part)


def _call_model(spec: ToolSpec, fields: dict[str, Any], suffix: str = "") -> type[BaseModel]:
    forbid = ConfigDict(extra="forbid")
    args = pydantic.create_model(f"{_camel(spec.name)}Arguments{suffix}", __config__=forbid, **fields)
    return pydantic.create_model(
        f"{_camel(spec.name)}Call{suffix}", __config__=forbid, __doc__=(spec.description or spec.name).split("\n")[0],
        name=(Literal[spec.name], ...),  # type: ignore[valid-type]
        arguments=(args, ...),
    )


def _changing_variants(spec: ToolSpec, fields: dict[str, Any], grounding: Grounding) -> list[type[BaseModel]] | None:
    """For a write whose one id argument selects a row that also holds one of its enum arguments
    (``update_task_status(task_id, status)`` and a task row's ``status``): one variant per id, whose
    enum leaves out the row's current value, so the call cannot be a no-op write. None when the
    tool has no such shape."""
    props = spec.parameters_schema.get("properties", {})
    ids = [n for n in fields if id_like(n) and props.get(n, {}).get("type") != "array"]
    enums = [n for n in fields if props.get(n, {}).get("enum") and not id_like(n)]
    if len(ids) != 1 or not enums:
        return None
    target = ids[0]
    variants = []
    for i, value in enumerate(grounding.values.get(target, [])):
        row = grounding.rows.get((target, value))
        if row is None or not any(n in row for n in enums):
            return None
        changed = dict(fields, **{target: (Literal[value], fields[target][1])})  # type: ignore[valid-type]
        for n in enums:
            left = [e for e in props[n]["enum"] if n not in row or e != row[n]]
            if not left:
                break
            changed[n] = (Literal[tuple(left)], fields[n][1])  # type: ignore[valid-type]
        else:
            variants.append(_call_model(spec, changed, f"_{i}"))
    return variants


def tool_call_models(spec: ToolSpec, grounding: Grounding | Values, *, max_chars: int = MAX_ARG_CHARS,
                     avoid_no_op: bool = False) -> list[type[BaseModel]]:
    """``{"name": <const>, "arguments": {<required params>}}`` for one tool — one model, or one per
    target row with ``avoid_no_op`` (see `_changing_variants`) — or none when one of its id-like
    arguments cannot be grounded (then the tool is not offered)."""
    grounding = grounding if isinstance(grounding, Grounding) else Grounding(dict(grounding))
    props = spec.parameters_schema.get("properties", {})
    fields: dict[str, Any] = {}
    for name in spec.arg_names:
        if name not in spec.required:
            continue
        annotation = _param_type(name, props.get(name, {}), grounding, max_chars)
        if annotation is None:
            return []
        fields[name] = (annotation, Field(..., description=props.get(name, {}).get("description")))
    if avoid_no_op and spec.mutates_state:
        variants = _changing_variants(spec, fields, grounding)
        if variants is not None:
            return variants
    return [_call_model(spec, fields)]


def tool_call_union(specs: Iterable[ToolSpec], grounding: Grounding | Values, *, max_chars: int = MAX_ARG_CHARS,
                    avoid_no_op: bool = False) -> Any | None:
    """The union of `tool_call_models` over ``specs`` (tools that cannot be grounded dropped), or None."""
    models = [m for spec in specs for m in tool_call_models(spec, grounding, max_chars=max_chars,
                                                           avoid_no_op=avoid_no_op)]
    if not models:
        return None
    return models[0] if len(models) == 1 else Union[tuple(models)]  # noqa: UP007 - built at run time


def call_arguments(call: Any) -> dict[str, Any]:
    """A parsed call's arguments as a plain dict (typed models dumped, plain dicts copied)."""
    args = getattr(call, "arguments", None)
    if isinstance(args, BaseModel):
        return args.model_dump(mode="json")
    return dict(args or {})


def bound_schema(schema: Any, max_chars: int, max_items: int) -> Any:
    """A copy of a JSON schema where every string without ``maxLength`` gets ``max_chars`` and every
    array without ``maxItems`` gets ``max_items`` (enums and constants are left alone).

    Why: a small model that starts repeating itself fills a free string or list until the token
    budget runs out; bounded fields end it early and keep every call short."""
    if isinstance(schema, list):
        return [bound_schema(s, max_chars, max_items) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bound_schema(v, max_chars, max_items) if k not in ("enum", "const", "default") else v
           for k, v in schema.items()}
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "enum" not in out and "const" not in out and "maxLength" not in out:
        out["maxLength"] = max_chars
    if "array" in kinds and "maxItems" not in out:
        out["maxItems"] = max(out.get("minItems", 0), max_items)
    return out


def write_specs(specs: Sequence[ToolSpec], allowed: Iterable[str] | None = None) -> list[ToolSpec]:
    """The state-changing tools among ``specs`` (those a gold solution is checked by), in order."""
    keep = set(allowed) if allowed is not None else None
    return [s for s in specs if s.mutates_state and (keep is None or s.name in keep)]


def dialogue_grounding(known: Values, messages: Sequence[Message], side: str = "assistant") -> Grounding:
    """What ``side`` may put in a tool call at this point of the dialogue: the ``known`` ids (the
    domain's) that the other party said, every id in ``side``'s own tool results, the other party's
    words (to narrow enum arguments) and its "quoted" phrases (free-text arguments: copied exactly,
    never paraphrased). Ids the side itself wrote are not evidence."""
    other = "user" if side == "assistant" else "assistant"
    said = [m.content or "" for m in messages if m.role == other and not m.tool_calls]
    quoted = list(dict.fromkeys(q.strip() for text in said for q in _QUOTED.findall(text) if q.strip()))
    grounding = Grounding(mentioned(known, said), said=tokens(said), quoted=quoted)
    for m in messages:
        if m.role == "tool" and (m.requestor or "assistant") == side and not m.error:
            values_from_text(m.content or "", grounding)
    return grounding


def completed_writes(messages: Sequence[Message], specs: Iterable[ToolSpec], side: str = "assistant") -> set[str]:
    """Names of ``side``'s write tools that already succeeded in this dialogue."""
    writes = {s.name for s in specs if s.mutates_state}
    ok = {m.id for m in messages if m.role == "tool" and not m.error}
    return {c.name for m in messages if m.role == side for c in (m.tool_calls or [])
            if c.name in writes and c.id in ok}
