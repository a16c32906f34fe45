"""Hypothesis strategies for fuzzing domain tools: calls built from each tool's own argument schema.

Three kinds of call are generated (see `tool_calls`):

* **typed** -- every value fits the tool's JSON schema. Strings are mostly taken from the DB,
  from a *cluster* of related records (a random record plus every record one of its strings
  names, e.g. an order, its user and its products), so ids agree with each other and calls reach
  deep logic and sometimes succeed and write; the rest are literals quoted in the tool's
  docstring (``'no longer needed'``), strings from anywhere in the DB, and random text.
* **wrong** -- a typed call with one value replaced by one of the wrong kind or of a hostile
  size (bool for str, str for list, huge ints, NaN, nested JSON, 100k-char strings, long lists,
  lone surrogates, None), a required argument dropped, or an unexpected one added.
* **malformed** -- arguments that are not an object (a list, a number, invalid JSON text), or a
  tool name the side does not have.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from eigendspy.core.environment import Environment
from eigendspy.core.messages import ToolCall
from eigendspy.core.tool import ToolSpec

LONG = 100_000
HOSTILE_STRINGS = [
    "",
    " ",
    "x" * LONG,
    "(" * LONG,
    "9" * LONG,
    "é" * LONG,
    "9" * 400,
    "1e999",
    "-0",
    "NaN",
    "9**9**9**9",
    "1/0",
    "((((1))))" * 50,
    "#W" + "0" * 50,
    "\ud800",
    "\x00",
    "日本語のテキスト",
    "🙂" * 50,
    "' OR 1=1 --",
    "{}",
    "[]",
    "null",
    "None",
    "__class__",
    "../../etc/passwd",
]
HOSTILE_NUMBERS = [
    *(math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, -1, 0.5),
    *(2**63, -(2**63) - 1, 10**30, 2**1000),
    10**5000,  # has no str(): Python refuses to print an int of over 4300 digits
]
"""Numbers that break sums or printing (``json.loads`` reads ``NaN``, ``Infinity`` and ``1e999``)."""
DEEP = 50_000


def _nested(depth: int, kind: type = list) -> Any:
    """A list (or ``{"k": ...}`` dict) ``depth`` levels deep, built without recursion."""
    value: Any = 0
    for _ in range(depth):
        value = {"k": value} if kind is dict else [value]
    return value


NESTED = [_nested(DEEP), _nested(DEEP, dict)]  # built once: each costs ~50 ms
BAD_JSON_TEXTS = [
    "{",
    "{'a': 1}",
    "[1,",
    "\ud800",
    "{" * 10_000,
    "}",
    "[" * DEEP + "]" * DEEP,
    '{"a": ' * DEEP + "1" + "}" * DEEP,
    '{"a": 1' + "0" * 5000 + "}",
    '{"a": NaN}',
    '{"a": 1e999}',
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
ALIASES = {
    "dob": ["date_of_birth"],
    "id": ["line_id", "bill_id", "customer_id", "device_id", "plan_id"],
    "mode": ["network_mode_preference"],
    "permission": ["permissions"],
    "payment_method_id": ["id"],
    "payment_id": ["id"],
    "new_item_ids": ["item_id"],
}
"""Argument names whose values the DB files under another field name."""
EXTRA_NAMES = ["db", "ids", "self", "kwargs", "args", "extra", "__class__", "user_id", "order_id", ""]


def _walk(value: Any, found: Cluster, name: str = "") -> None:
    """Collect every string (dict keys included), sub-dict and int of a JSON-mode record dump;
    strings are also filed under the field name they sit in (list items under the list's name)."""
    if isinstance(value, dict):
        found.dicts.append(value)
        for key, item in value.items():
            found.strings.add(key)
            found.by_field.setdefault(name, set()).add(key)  # keys of an id- or date-keyed dict
            _walk(item, found, key)
    elif isinstance(value, list):
        for item in value:
            _walk(item, found, name)
    elif isinstance(value, str):
        found.strings.add(value)
        found.by_field.setdefault(name, set()).add(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        found.ints.add(value)


@dataclass
class Cluster:
    """Values of some related records; sorted into lists by `frozen` so hypothesis can sample them."""

    strings: Any = field(default_factory=set)
    dicts: list[dict[str, Any]] = field(default_factory=list)
    ints: Any = field(default_factory=set)
    by_field: dict[str, Any] = field(default_factory=dict)

    def frozen(self) -> Cluster:
        return Cluster(
            sorted(self.strings) or ["x"],
            self.dicts or [{}],
            sorted(self.ints) or [0],
            {k: sorted(v) for k, v in self.by_field.items()},
        )

    def for_name(self, name: str) -> list[str]:
        """Strings filed under an argument's name, its singular or plural, or an alias."""
        out: list[str] = []
        for candidate in field_names(name):
            out += self.by_field.get(candidate, [])
        return out


def field_names(name: str) -> list[str]:
    return [name, name.removesuffix("s"), name + "s", *ALIASES.get(name, ())]


@dataclass
class DomainPool:
    """The DB values one side's tool calls draw from: top-level records and the ids naming them."""

    records: list[Any]
    index: dict[str, list[Any]]
    all_strings: list[str]
    with_field: dict[str, list[int]]
    _clusters: dict[int, Cluster] = field(default_factory=dict)

    @classmethod
    def from_dump(cls, dump: dict[str, Any]) -> DomainPool:
        records: list[Any] = []
        index: dict[str, list[Any]] = {}
        for value in dump.values():
            if isinstance(value, dict):
                items = list(value.items())
            elif isinstance(value, list):
                items = [(None, v) for v in value]
            else:
                items = [(None, value)]
            for key, record in items:
                records.append(record)
                names = [key] if key is not None else []
                if isinstance(record, dict):
                    names += [v for k, v in record.items() if k.endswith("id") and isinstance(v, str)]
                for name in names:
                    index.setdefault(name, []).append(record)
        everything = Cluster()
        _walk(dump, everything)
        with_field: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            for name in record if isinstance(record, dict) else ():
                with_field.setdefault(name, []).append(i)
        return cls(records or [{}], index, sorted(everything.strings)[:5000] or ["x"], with_field)

    def anchors(self, spec: ToolSpec) -> list[int]:
        """Records holding a field named like one of the tool's arguments (an order for ``order_id``)."""
        for arg in spec.arg_names:
            for name in field_names(arg):
                if name in self.with_field:
                    return self.with_field[name]
        return list(range(len(self.records)))

    def cluster(self, i: int) -> Cluster:
        """Record ``i`` plus every record named by one of its strings (one hop)."""
        found = self._clusters.get(i)
        if found is None:
            found = Cluster()
            _walk(self.records[i], found)
            for s in list(found.strings):
                for other in self.index.get(s, ())[:3]:
                    _walk(other, found)
            found = self._clusters[i] = found.frozen()
        return found


def pool_for(env: Environment, side: str) -> DomainPool:
    state = env.state_of(side)
    return DomainPool.from_dump(state.to_model().model_dump(mode="json") if state is not None else {})


def doc_literals(spec: ToolSpec) -> list[str]:
    """Strings quoted in the tool's docstring (``'no longer needed'``, ``'#W0000000'``)."""
    text = spec.description + json.dumps(spec.parameters_schema)
    return sorted(set(re.findall(r"'([^'\\]{1,60})'", text)))


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return defs.get(ref.rsplit("/", 1)[-1], {}) if isinstance(ref, str) else schema


@st.composite
def typed_value(draw, schema: dict[str, Any], defs: dict[str, Any], ctx: dict[str, Any], name: str = "") -> Any:
    """A value of the schema's kind, from the DB cluster when it can be (by the argument's name first)."""
    schema = _resolve(schema, defs)
    cluster: Cluster = ctx["cluster"]
    if "anyOf" in schema:
        return draw(typed_value(draw(st.sampled_from(schema["anyOf"])), defs, ctx, name))
    if "enum" in schema and draw(st.integers(0, 4)):
        return draw(st.sampled_from(schema["enum"]))
    kind = schema.get("type")
    if kind == "string" or "enum" in schema:
        named, literals = cluster.for_name(name), ctx["literals"]
        weights = ["named"] * 6 + ["cluster"] if named else ["cluster"] * 4
        source = draw(st.sampled_from([*weights, *(["literal"] * 2 if literals else []), "anywhere", "text"]))
        if source == "named":
            return draw(st.sampled_from(named))
        if source == "cluster":
            return draw(st.sampled_from(cluster.strings))
        if source == "literal":
            return draw(st.sampled_from(literals))
        if source == "anywhere":
            return draw(st.sampled_from(ctx["pool"].all_strings))
        return draw(st.text(max_size=12))
    if kind in ("integer", "number"):
        extreme = st.sampled_from([0, -1, 10**6, 2**63, 10**30, 1e308, -1e308, 0.5, 2.0])
        values = st.sampled_from(cluster.ints) | st.integers(-3, 12) | st.integers() | extreme
        return draw(values | st.floats(allow_nan=False, allow_infinity=False) if kind == "number" else values)
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "array":
        items = schema.get("items") or {}
        return draw(st.lists(typed_value(items, defs, ctx, name), max_size=4))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if not props or not draw(st.integers(0, 2)):
            return dict(draw(st.sampled_from(cluster.dicts)))
        out = {}
        for prop_name, prop in props.items():
            if prop_name in schema.get("required", ()) or draw(st.booleans()):
                out[prop_name] = draw(typed_value(prop, defs, ctx, prop_name))
        return out
    return draw(JSON)


@st.composite
def typed_arguments(draw, spec: ToolSpec, ctx: dict[str, Any]) -> dict[str, Any]:
    schema = spec.parameters_schema
    defs = schema.get("$defs", {})
    out = {}
    for name, prop in schema.get("properties", {}).items():
        if name in spec.required or draw(st.integers(0, 3)):
            out[name] = draw(typed_value(prop, defs, ctx, name))
    return out


def wrong_value(ctx: dict[str, Any]) -> st.SearchStrategy[Any]:
    cluster: Cluster = ctx["cluster"]
    real = cluster.strings
    return st.one_of(
        st.booleans(),
        st.none(),
        st.sampled_from(NESTED),
        st.sampled_from(HOSTILE_NUMBERS),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(min_size=1, max_size=30, alphabet=st.characters(min_codepoint=128)),
        st.sampled_from(real),  # a string where a list is declared
        st.lists(st.sampled_from(real), min_size=1, max_size=3),  # a list where a string is
        st.sampled_from(real).map(lambda s: s * (LONG // max(len(s), 1))),
        st.sampled_from(real).map(lambda s: [s] * 20_000),
        st.integers(1, 20_000).map(lambda n: [str(i) for i in range(n)]),
        st.sampled_from(cluster.dicts).map(dict),
        st.builds(lambda d: [d] * 5_000, st.sampled_from(cluster.dicts)),
        JSON,
    )


@st.composite
def wrong_arguments(draw, spec: ToolSpec, ctx: dict[str, Any]) -> dict[str, Any]:
    args = draw(typed_arguments(spec, ctx))
    for _ in range(draw(st.integers(1, 2))):
        how = draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if how == "replace" and args:
            name = draw(st.sampled_from(sorted(args)))
            kind = spec.parameters_schema.get("properties", {}).get(name, {}).get("type")
            numeric = kind in ("integer", "number") and draw(st.booleans())
            args[name] = draw(st.sampled_from(HOSTILE_NUMBERS) if numeric else wrong_value(ctx))
        elif how == "drop" and args:
            del args[draw(st.sampled_from(sorted(args)))]
        else:
            name = draw(st.sampled_from(EXTRA_NAMES) | st.text(max_size=10))
            args[name] = draw(wrong_value(ctx) | typed_value({"type": "string"}, {}, ctx))
    return args


@st.composite
def tool_calls(draw, spec: ToolSpec, side: str, ctx: dict[str, Any], other_names: list[str]) -> ToolCall:
    """One call of ``spec`` (or a malformed call) from ``side``; ``ctx`` holds pool and literals."""
    pool: DomainPool = ctx["pool"]
    anchor = draw(st.sampled_from(pool.anchors(spec)) | st.integers(0, len(pool.records) - 1))
    ctx = {**ctx, "cluster": pool.cluster(anchor)}
    kind = draw(st.sampled_from(["typed"] * 5 + ["wrong"] * 4 + ["malformed"]))
    if kind == "typed":
        args = draw(typed_arguments(spec, ctx))
        if draw(st.integers(0, 5)) == 0:  # the wire form: arguments as JSON text
            return ToolCall(id="f", name=spec.name, arguments=json.dumps(args), requestor=side)
        return ToolCall(id="f", name=spec.name, arguments=args, requestor=side)
    if kind == "wrong":
        return ToolCall(id="f", name=spec.name, arguments=draw(wrong_arguments(spec, ctx)), requestor=side)
    how = draw(st.sampled_from(["not_object", "bad_json", "json_not_object", "unknown_name", "bad_name"]))
    if how == "not_object":
        args = draw(st.sampled_from([None, 0, 1.5, True, [], ["a"], "x"]) | JSON)
        return ToolCall.model_construct(id="f", name=spec.name, arguments=args, requestor=side)
    if how == "bad_json":
        text = draw(st.sampled_from(BAD_JSON_TEXTS) | st.text(max_size=20))
        return ToolCall(id="f", name=spec.name, arguments=text, requestor=side)
    if how == "json_not_object":
        return ToolCall(id="f", name=spec.name, arguments=json.dumps(draw(JSON)), requestor=side)
    if how == "unknown_name":
        name = draw(
            st.sampled_from(other_names + [spec.name.upper(), spec.name + " ", "__init__"]) | st.text(max_size=30)
        )
        args = draw(typed_arguments(spec, ctx))
        return ToolCall(id="f", name=name, arguments=args, requestor=side)
    name = draw(st.sampled_from([None, 0, ["x"], {"name": spec.name}]))
    return ToolCall.model_construct(id="f", name=name, arguments={}, requestor=side)
