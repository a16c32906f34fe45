"""The `@tool` decorator: a plain typed Python function over a database becomes an agent tool.

Why a decorator over plain functions: a domain author writes ordinary, testable Python
(`def cancel_order(db, order_id: str) -> Order`) and gets, for free, the OpenAI function
schema the model sees (derived from type hints and the Google-style docstring), the tool's
kind (read / write / generic / think) that the environment uses to decide whether a call may
touch state, and a stable name. The schema derivation mirrors tau2-bench's conventions
(pydantic `model_json_schema` of a model named ``parameters``) so a tau2 model sees byte-equal
tool definitions.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable
from enum import Enum
from typing import Any, get_type_hints

import pydantic
from pydantic import BaseModel, ConfigDict, Field


class ToolKind(str, Enum):
    """What a tool may do to state. Only WRITE tools get a writable view of the database."""

    READ = "read"
    WRITE = "write"
    GENERIC = "generic"
    THINK = "think"


class ToolError(Exception):
    """A domain-level failure (unknown id, wrong status, ...). The model sees ``Error: <message>``."""


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


class ParsedDocstring(BaseModel):
    """The parts of a Google-style docstring that reach the model."""

    model_config = ConfigDict(frozen=True)

    description: str
    arg_descriptions: dict[str, str]


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Split a Google-style docstring into the summary text and per-argument descriptions.

    Continuation lines of an argument keep their line breaks (joined with ``\\n``), because
    tau2-bench's schemas carry them that way and models are trained on those exact strings.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    description: list[str] = []
    args: dict[str, list[str]] = {}
    section: str | None = None
    current: str | None = None
    arg_indent: int | None = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section = header.group(1)
            current, arg_indent = None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters"):
            continue
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if match and (arg_indent is None or indent <= arg_indent):
            arg_indent = indent
            current = match.group(2).lstrip("*")
            args[current] = [match.group(4).strip()]
        elif current is not None:
            args[current].append(line.strip())
    return ParsedDocstring(
        description="\n".join(description).strip(),
        arg_descriptions={name: "\n".join(p for p in parts if p) for name, parts in args.items()},
    )


def _require_db_parameter(params: list[inspect.Parameter], what: str) -> None:
    """The first parameter receives the DB view, so it must be a plain positional parameter."""
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise TypeError(f"{what} must take the database view as its first (positional) parameter")


INJECTED = ("ids",)
"""Parameter names the environment supplies itself (never shown to the model): ``ids`` is the
environment's seeded `IdSource`, so tools that mint ids stay reproducible."""


class ToolSpec:
    """A registered tool: the function, its kind, its argument model and its OpenAI schema.

    The first parameter of the function receives the database view (named ``db`` by
    convention); a parameter named ``ids`` receives the environment's id source; every other
    parameter is a model-facing argument.
    """

    def __init__(self, fn: Callable[..., Any], *, kind: ToolKind, name: str | None = None) -> None:
        self.fn = fn
        self.kind = ToolKind(kind)
        self.name = name or fn.__name__
        parsed = parse_docstring(fn.__doc__)
        self.description = parsed.description
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        _require_db_parameter(params, f"tool {self.name!r}")
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        self.db_param = params[0].name
        self.injected: tuple[str, ...] = tuple(p.name for p in params[1:] if p.name in INJECTED)
        params = [params[0]] + [p for p in params[1:] if p.name not in INJECTED]
        for param in params[1:]:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {self.name!r}: *args/**kwargs are not allowed in tools")
            if param.name not in hints:
                raise TypeError(f"tool {self.name!r}: argument {param.name!r} needs a type hint")
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (
                hints[param.name],
                Field(default, description=parsed.arg_descriptions.get(param.name)),
            )
        self.arg_names: tuple[str, ...] = tuple(fields)
        self.required: frozenset[str] = frozenset(
            p.name for p in params[1:] if p.default is inspect.Parameter.empty
        )
        self.args_model: type[BaseModel] = pydantic.create_model("parameters", **fields)

    @property
    def mutates_state(self) -> bool:
        return self.kind is ToolKind.WRITE

    @functools.cached_property
    def parameters_schema(self) -> dict[str, Any]:
        """Computed once: pydantic's schema generation costs milliseconds and every episode needs it."""
        return self.args_model.model_json_schema()

    @functools.cached_property
    def openai_schema(self) -> dict[str, Any]:
        """The ``{"type": "function", "function": {...}}`` dict a chat-completions API takes."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters_schema,
            },
        }

    def check_arguments(self, args: dict[str, Any]) -> None:
        """Refuse an argument value of the wrong JSON kind before the tool runs; values are not changed.

        Why: a model-written value of the wrong kind (a bool where a str is declared, a string
        where a list is) must be a tool error, never a DB row that later fails to load, and a
        string must never be iterated where a list is expected. Only the kind is checked, against
        the tool's own schema (one level into list items), because tau2 checks nothing and its
        row models coerce: a literal/enum parameter takes any string (mock ``update_task_status``
        stores ``bogus``), any number or numeric-looking string is accepted where a number is
        declared (airline ``send_certificate`` with ``amount=12.5`` or ``"300"``), a number is
        accepted where a string is (retail ``find_user_id_by_name_zip`` with ``zip=12345`` just
        finds no user; a row model taking it still refuses it), ``null`` is
        accepted where the default is None (mock ``create_task``), and nested objects are left
        to the tool's models. NaN and infinity (``json.loads`` accepts them, JSON has neither)
        are refused at those two levels whatever the declared kind, unlike tau2: stored, they
        dump as ``null`` and the row no longer loads. The tool receives the original values, as
        in tau2. A missing or unknown argument is left to the call itself, so its error text
        stays Python's.

        Raises:
            TypeError: Names the argument, the kind given and the kinds accepted.
        """
        schema = self.parameters_schema
        defs = schema.get("$defs", {})
        for name, value in args.items():
            prop = schema.get("properties", {}).get(name)
            if prop is None or (value is None and self.args_model.model_fields[name].default is None):
                continue
            problem = json_kind_problem(value, prop, defs)
            if problem:
                raise TypeError(f"argument '{name}' of {self.name}(): {problem}")

    def __call__(self, db: Any, **kwargs: Any) -> Any:
        return self.fn(db, **kwargs)

    def __repr__(self) -> str:
        return f"ToolSpec({self.name!r}, kind={self.kind.value})"


_KIND_OF: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}
_ALSO_ACCEPTED = {
    "integer": {"number", "string"},
    "number": {"integer", "string"},
    "string": {"integer", "number"},
}
"""Declared kind -> further JSON kinds accepted, as tau2's pydantic row models coerce them."""


def json_kind_problem(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> str | None:
    """Why ``value``'s JSON kind does not fit ``schema`` (None when it does or cannot be told).

    List items are checked one level deep, against kinds computed once: linear in the list.
    """
    problem = _kind_problem(value, _schema_kinds(schema, defs))
    items = _resolve(schema, defs).get("items")
    if problem or not isinstance(value, list) or not isinstance(items, dict):
        return problem
    item_kinds = _schema_kinds(items, defs)
    for index, item in enumerate(value):
        problem = _kind_problem(item, item_kinds)
        if problem:
            return f"item {index}: {problem}"
    return None


def _kind_problem(value: Any, kinds: set[str] | None) -> str | None:
    kind = _KIND_OF.get(type(value))
    if kind == "number" and not math.isfinite(value):
        # Not JSON numbers (see `ToolSpec.check_arguments`); found by tests/domains/test_tool_fuzz.py.
        return f"expected a finite number, got {value}"
    if kinds is None or kind is None or kind in kinds:
        return None
    if any(kind in _ALSO_ACCEPTED.get(k, ()) for k in kinds):
        return None
    return f"expected {' or '.join(sorted(kinds))}, got {kind}"


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return defs.get(ref.rsplit("/", 1)[-1], {}) if isinstance(ref, str) else schema


def _schema_kinds(schema: dict[str, Any], defs: dict[str, Any]) -> set[str] | None:
    """The JSON kinds a schema allows at its top level; None when it allows anything."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        kinds: set[str] = set()
        for option in schema["anyOf"]:
            option_kinds = _schema_kinds(option, defs)
            if option_kinds is None:
                return None
            kinds |= option_kinds
        return kinds
    if isinstance(schema.get("type"), str):
        return {schema["type"]}
    values = schema.get("enum", [schema["const"]] if "const" in schema else None)
    if values:
        return {_KIND_OF.get(type(v), "string") for v in values}
    return None


def tool(
    fn: Callable[..., Any] | None = None, *, kind: ToolKind | str = ToolKind.READ, name: str | None = None
) -> Any:
    """Register a function as a tool.

    Args:
        fn: The function; its first parameter receives the database view.
        kind: ``read``, ``write``, ``generic`` or ``think``. Only ``write`` tools may change state.
        name: Overrides the function name as the tool name.

    Example:
        ```python
        @tool(kind="write")
        def update_task_status(db: MockDB, task_id: str, status: str) -> Task:
            \"\"\"Update the status of a task.

            Args:
                task_id: The ID of the task to update
                status: The new status of the task
            \"\"\"
        ```
    """

    def wrap(f: Callable[..., Any]) -> ToolSpec:
        return ToolSpec(f, kind=ToolKind(kind), name=name)

    return wrap(fn) if fn is not None else wrap


class EnvFunction:
    """A non-tool function over a database: initialization helpers and env assertions.

    tau2 tasks name these in ``initialization_actions`` and ``env_assertions``; they are never
    shown to a model. ``writes`` says whether it gets a writable view.
    """

    def __init__(self, fn: Callable[..., Any], *, writes: bool, name: str | None = None) -> None:
        self.fn = fn
        self.writes = writes
        self.name = name or fn.__name__
        signature_params = list(inspect.signature(fn).parameters.values())
        _require_db_parameter(signature_params, f"env function {self.name!r}")
        params = [p.name for p in signature_params]
        self.db_param = params[0]
        self.injected: tuple[str, ...] = tuple(p for p in params[1:] if p in INJECTED)

    def __call__(self, db: Any, **kwargs: Any) -> Any:
        return self.fn(db, **kwargs)

    def __repr__(self) -> str:
        return f"EnvFunction({self.name!r}, writes={self.writes})"


def env_function(fn: Callable[..., Any] | None = None, *, writes: bool = True) -> Any:
    """Register an initialization helper (writes by default)."""

    def wrap(f: Callable[..., Any]) -> EnvFunction:
        return EnvFunction(f, writes=writes)

    return wrap(fn) if fn is not None else wrap


def assertion(fn: Callable[..., Any]) -> EnvFunction:
    """Register a read-only state assertion used by task ``env_assertions``."""
    return EnvFunction(fn, writes=False)
