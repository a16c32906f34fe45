"""Rules of the predicate language: limits, errors, the allow-lists and static validation.

See `eigendspy.scoring.sandbox.predicate` for the language and why it exists.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, ItemsView, KeysView, ValuesView
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SandboxError(Exception):
    """An expression was refused statically or stopped at runtime by a sandbox limit.

    Args:
        reason: Human-readable explanation naming the offending construct or limit; it is shown
            to whoever debugs the checker (often an LLM repairing its own predicate).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SandboxLimits(BaseModel):
    """Resource bounds for one evaluation; the defaults fit predicates over a retail-sized DB dump.

    Args:
        max_chars: Longest accepted expression text.
        max_nodes: Most AST nodes; bounds parsing and validation work.
        max_depth: Deepest AST nesting; keeps the recursive interpreter far from Python's stack limit.
        max_steps: Work budget: one step per evaluated node and per loop iteration, plus one per
            `BULK` elements touched by C-level work (repetition, slicing, and the nested elements
            that ``==``, ``in``, ``sorted`` or hashing visit; see `_Interpreter.weigh`).
        max_container_len: Longest list/tuple/set/dict (and ``range``) an expression may produce.
        max_str_len: Longest string an expression may produce.
        max_int_bits: Largest integer (in bits) an expression may produce.
        max_cpu_seconds: CPU time (of the evaluating thread) one evaluation may use, checked as steps
            are charged: the backstop for work the step budget mis-prices (and for pathological
            containers passed in as variables). CPU time, not wall time, so that a loaded machine
            never turns a passing predicate into a failing one (rewards stay deterministic).
        max_seconds: Wall-clock limit of one evaluation, the last resort (e.g. a thread starved of
            CPU for long); generous so that load alone never trips it.
    """

    model_config = ConfigDict(frozen=True)

    max_chars: int = Field(2000, gt=0)
    max_nodes: int = Field(500, gt=0)
    max_depth: int = Field(100, gt=0)
    max_steps: int = Field(100_000, gt=0)
    max_container_len: int = Field(100_000, gt=0)
    max_str_len: int = Field(100_000, gt=0)
    max_int_bits: int = Field(256, gt=0)
    max_cpu_seconds: float = Field(1.0, gt=0)
    max_seconds: float = Field(10.0, gt=0)


class PredicateResult(BaseModel):
    """Outcome of a predicate; ``passed`` is ``bool(value)`` and ``False`` whenever ``error`` is set."""

    passed: bool
    value: Any = None
    error: str | None = None


BULK = 16  # C-level element operations charged as one interpreter step.
SIZED = (str, bytes, list, tuple, dict, set, frozenset)
SEQUENCES = (str, bytes, list, tuple)
WALKED = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)
SCALARS = frozenset({int, float, bool, complex, type(None)})
TEXT = frozenset({str, bytes})
HASHED = (set, frozenset, dict, KeysView, ItemsView)  # operands that make | & - ^ hash their keys
DISPLAYS: dict[type[ast.AST], Callable[[list[Any]], Any]] = {ast.List: list, ast.Tuple: tuple, ast.Set: set}

BINOPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}  # fmt: skip
UNARYOPS: dict[type[ast.AST], Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}  # fmt: skip
SET_OPS = frozenset({ast.BitOr, ast.BitAnd, ast.Sub, ast.BitXor})
CMPOPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.List, ast.Tuple, ast.Set,
    ast.Dict, ast.Subscript, ast.Slice, ast.Attribute, ast.Call, ast.keyword, ast.BoolOp, ast.And,
    ast.Or, ast.Compare, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp, ast.comprehension, *BINOPS, *UNARYOPS, *CMPOPS,
)  # fmt: skip
_REJECTED_NODES: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda expressions are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed; a predicate must not bind names",
    ast.JoinedStr: "f-strings are not allowed; build strings with str() and +",
    ast.FormattedValue: "f-strings are not allowed; build strings with str() and +",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Starred: "* unpacking is not allowed",
}

# Builtin name -> keyword arguments it accepts.
_PLAIN_BUILTINS = "len sum any all abs round set frozenset list dict tuple str int float bool range enumerate zip"
_BUILTINS: dict[str, frozenset[str]] = {name: frozenset() for name in _PLAIN_BUILTINS.split()} | {
    "min": frozenset({"default"}),
    "max": frozenset({"default"}),
    "sorted": frozenset({"reverse"}),
}
_SET_METHODS = frozenset(
    {"union", "intersection", "difference", "symmetric_difference", "issubset", "issuperset", "isdisjoint"}
)
METHODS: dict[type, frozenset[str]] = {
    str: frozenset({
        "lower", "upper", "casefold", "strip", "lstrip", "rstrip", "startswith", "endswith", "count",
        "index", "find", "split", "join", "isdigit", "isalpha", "isalnum",
    }),
    dict: frozenset({"get", "keys", "values", "items"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    set: _SET_METHODS,
    frozenset: _SET_METHODS,
}  # fmt: skip
_ALL_METHODS = frozenset().union(*METHODS.values())
_TARGET_NODES = (ast.Name, ast.Tuple, ast.List, ast.Store)
CONVERTERS: dict[str, Callable[..., Any]] = {
    f.__name__: f for f in (len, abs, round, str, int, float, bool, enumerate, zip, set, frozenset, list, tuple, dict)
}
_MUTATING = frozenset({
    "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "setdefault", "add",
    "discard", "sort", "reverse", "difference_update", "intersection_update", "symmetric_difference_update",
})  # fmt: skip


def _check_identifier(name: str) -> None:
    if name.startswith("_"):
        raise SandboxError(f"access to dunder/private name {name!r} is not allowed")


def _explain_syntax_error(expr: str, exc: SyntaxError) -> str:
    """Turn a ``mode="eval"`` SyntaxError into a reason; imports and statements get their own words."""
    try:
        module = ast.parse(expr, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return f"syntax error: {exc.msg} (line {exc.lineno}, column {exc.offset})"
    if not module.body:
        return "the expression is empty"
    if any(isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(module)):
        return "imports are not allowed: a predicate is a single expression over the given variables"
    kind = type(module.body[0]).__name__
    return f"statements are not allowed (found {kind}): a predicate must be a single expression"


def parse_expression(expr: str, limits: SandboxLimits) -> ast.Expression:
    if not isinstance(expr, str):
        raise SandboxError(f"the expression must be a str, not {type(expr).__name__}")
    if len(expr) > limits.max_chars:
        raise SandboxError(f"the expression has {len(expr)} characters; the limit is {limits.max_chars}")
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        raise SandboxError(_explain_syntax_error(expr, exc)) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SandboxError(f"the expression could not be parsed: {exc}") from None
    _validate(tree, limits)
    return tree


def _validate(tree: ast.Expression, limits: SandboxLimits) -> None:
    # Size, depth and node kinds first, iteratively, so nothing recursive ever sees a pathological tree.
    count, stack = 0, [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > limits.max_nodes:
            raise SandboxError(f"the expression is too complex: more than {limits.max_nodes} AST nodes")
        if depth > limits.max_depth:
            raise SandboxError(f"the expression is nested deeper than {limits.max_depth} levels")
        if type(node) in _REJECTED_NODES:
            raise SandboxError(_REJECTED_NODES[type(node)])
        if not isinstance(node, _ALLOWED_NODES):
            raise SandboxError(f"{type(node).__name__} is not allowed in a predicate")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            _check_identifier(node.id)
        elif isinstance(node, ast.Attribute):
            _check_identifier(node.attr)
            if id(node) not in called:
                raise SandboxError(f"attribute access '.{node.attr}' is not allowed; only method calls are")
            if node.attr in _MUTATING:
                raise SandboxError(f"mutating method '.{node.attr}()' is not allowed: variables are read-only")
            if node.attr not in _ALL_METHODS:
                raise SandboxError(f"method '.{node.attr}()' is not allowed; allowed: {sorted(_ALL_METHODS)}")
        elif isinstance(node, ast.Call):
            _validate_call(node)
        elif isinstance(node, ast.Dict) and any(key is None for key in node.keys):
            raise SandboxError("** unpacking is not allowed")
        elif isinstance(node, ast.comprehension):
            if node.is_async:
                raise SandboxError("async comprehensions are not allowed")
            if not all(isinstance(t, _TARGET_NODES) for t in ast.walk(node.target)):
                raise SandboxError("comprehension targets must be names or tuples of names")
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            if node.value.bit_length() > limits.max_int_bits:
                raise SandboxError(f"integer literal exceeds {limits.max_int_bits} bits")


def _validate_call(node: ast.Call) -> None:
    if isinstance(node.func, ast.Name):
        _check_identifier(node.func.id)
        if node.func.id not in _BUILTINS:
            raise SandboxError(f"call to {node.func.id!r} is not allowed; allowed: {sorted(_BUILTINS)}")
        accepted = _BUILTINS[node.func.id]
    elif isinstance(node.func, ast.Attribute):
        accepted = frozenset()
    else:
        raise SandboxError("only direct calls of allowed functions and methods are allowed")
    for kw in node.keywords:
        if kw.arg is None:
            raise SandboxError("** unpacking is not allowed")
        _check_identifier(kw.arg)
        if kw.arg not in accepted:
            raise SandboxError(f"keyword argument {kw.arg!r} is not allowed in this call")


def check_expression(expr: str, limits: SandboxLimits | None = None) -> None:
    """Statically validate ``expr`` against the language without evaluating it.

    Why: a checker can be rejected (and sent back for repair) when it is written, long before any
    environment state exists to run it against.

    Raises:
        SandboxError: With a reason naming the offending construct.
    """
    parse_expression(expr, limits or SandboxLimits())
