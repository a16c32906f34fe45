"""A restricted, bounded expression language for LLM-written state predicates.

Why: checkers carry predicates such as ``db["orders"]["#W1"]["status"] == "cancelled"`` that an LLM
wrote. Handing them to Python's ``eval`` would let one bad sample read files, import modules, walk
``().__class__.__bases__`` to anything, or freeze a worker with ``10**10**10``. Instead the text is
parsed with `ast`, checked against an allow-list, and run by the small tree-walking interpreter
below, never by ``eval``/``compile``. Every evaluated node and loop iteration costs a step, so does
C-level work in proportion to the elements it touches (``==``/``in``/``sorted``/hashing walk nested
containers), and results are size-checked *before* the big operations (``*`` repetition, ``**``,
``<<``, ``range``) allocate anything, so each predicate finishes in bounded time and memory.

Language: literals and list/tuple/set/dict displays, variable names, subscripts and slices,
``and``/``or``/``not``, comparisons (including ``in`` and ``is None``), ``+ - * / // % ** << >> & | ^``,
``x if c else y``, list/set/dict comprehensions and generator expressions, calls to the builtins in
`_BUILTINS` and to the read-only methods in `_METHODS`. ``**`` is kept (``10 ** 2`` is common in
amounts) but refused when the result would exceed ``max_int_bits``. Rejected: imports and other
statements, lambda, ``:=`` (predicates need no bindings), f-strings and ``%`` string formatting
(format specs can allocate), ``*``/``**`` unpacking, every identifier starting with ``_``, attribute
access other than an allowed method call, and mutating methods (variables are read-only).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eigendspy.sandbox_subprocess import evaluate_in_subprocess

__all__ = [
    "PredicateResult",
    "SandboxError",
    "SandboxLimits",
    "check_expression",
    "evaluate",
    "evaluate_in_subprocess",
    "evaluate_predicate",
]


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
            `_BULK` elements touched by C-level work (repetition, slicing, and the nested elements
            that ``==``, ``in``, ``sorted`` or hashing visit; see `_Interpreter.weigh`).
        max_container_len: Longest list/tuple/set/dict (and ``range``) an expression may produce.
        max_str_len: Longest string an expression may produce.
        max_int_bits: Largest integer (in bits) an expression may produce.
    """

    model_config = ConfigDict(frozen=True)

    max_chars: int = Field(2000, gt=0)
    max_nodes: int = Field(500, gt=0)
    max_depth: int = Field(100, gt=0)
    max_steps: int = Field(100_000, gt=0)
    max_container_len: int = Field(100_000, gt=0)
    max_str_len: int = Field(100_000, gt=0)
    max_int_bits: int = Field(256, gt=0)


class PredicateResult(BaseModel):
    """Outcome of a predicate; ``passed`` is ``bool(value)`` and ``False`` whenever ``error`` is set."""

    passed: bool
    value: Any = None
    error: str | None = None


_BULK = 16  # C-level element operations charged as one interpreter step.
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
_SEQUENCES = (str, bytes, list, tuple)
_WALKED = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)
_SCALARS = frozenset({int, float, bool, complex, type(None)})
_TEXT = frozenset({str, bytes})
_DISPLAYS: dict[type[ast.AST], Callable[[list[Any]], Any]] = {ast.List: list, ast.Tuple: tuple, ast.Set: set}

_BINOPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}  # fmt: skip
_UNARYOPS: dict[type[ast.AST], Callable[[Any], Any]] = {
    ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert,
}  # fmt: skip
_CMPOPS: dict[type[ast.AST], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.List, ast.Tuple, ast.Set,
    ast.Dict, ast.Subscript, ast.Slice, ast.Attribute, ast.Call, ast.keyword, ast.BoolOp, ast.And,
    ast.Or, ast.Compare, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp, ast.comprehension, *_BINOPS, *_UNARYOPS, *_CMPOPS,
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
_PLAIN_BUILTINS = (
    "len sum any all abs round set frozenset list dict tuple str int float bool range enumerate zip"
)
_BUILTINS: dict[str, frozenset[str]] = {name: frozenset() for name in _PLAIN_BUILTINS.split()} | {
    "min": frozenset({"default"}),
    "max": frozenset({"default"}),
    "sorted": frozenset({"reverse"}),
}
_SET_METHODS = frozenset(
    {"union", "intersection", "difference", "symmetric_difference", "issubset", "issuperset", "isdisjoint"}
)
_METHODS: dict[type, frozenset[str]] = {
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
_ALL_METHODS = frozenset().union(*_METHODS.values())
_TARGET_NODES = (ast.Name, ast.Tuple, ast.List, ast.Store)
_CONVERTERS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (len, abs, round, str, int, float, bool, enumerate, zip, set, frozenset, list, tuple, dict)
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


def _parse(expr: str, limits: SandboxLimits) -> ast.Expression:
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
                raise SandboxError(
                    f"mutating method '.{node.attr}()' is not allowed: variables are read-only"
                )
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
    _parse(expr, limits or SandboxLimits())


class _Interpreter:
    """Tree-walking evaluator for validated trees; it charges steps and size-checks every result."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.steps = 0

    def charge(self, steps: int = 1) -> None:
        self.steps += steps
        if self.steps > self.limits.max_steps:
            raise SandboxError(
                f"step budget of {self.limits.max_steps} exceeded: the expression does too much work "
                "(huge ranges, nested comprehensions or large repeated containers)"
            )

    def weigh(self, *values: Any) -> None:
        """Charge for C-level hashing/comparison of ``values``: one step per `_BULK` nested elements.

        Why: ``==``, ``in``, ``sorted`` and hashing walk nested containers in C, and cheap repetition
        makes such containers huge (``[big] * 10**5`` shares one ``big``). Each visited container
        costs a full step (that is what walking it costs here), and the walk stops once the
        remaining budget is spent, so it is bounded itself.
        """
        cap = (self.limits.max_steps - self.steps + 1) * _BULK
        total, stack = len(values), list(values)
        while stack and total <= cap:
            item = stack.pop()
            if isinstance(item, str | bytes):
                total += len(item) // _BULK
                continue
            if isinstance(item, range):
                total += len(item)
                continue
            parts = (
                (item, item.values())
                if isinstance(item, dict)
                else (item,)
                if isinstance(item, _WALKED)
                else ()
            )
            for part in parts:
                total += _BULK + len(part)
                kinds = set(map(type, part))  # C-level scan; flat parts need no Python-level walk
                if kinds <= _TEXT:
                    total += sum(map(len, part)) // _BULK
                elif not kinds <= _SCALARS:
                    stack.extend(part)
        self.charge(total // _BULK)

    def bounded(self, value: Any) -> Any:
        lim = self.limits
        if isinstance(value, int) and value.bit_length() > lim.max_int_bits:
            raise SandboxError(f"integer result exceeds the limit of {lim.max_int_bits} bits")
        if isinstance(value, str | bytes) and len(value) > lim.max_str_len:
            raise SandboxError(f"string of {len(value)} characters exceeds the limit of {lim.max_str_len}")
        if isinstance(value, list | tuple | dict | set | frozenset) and len(value) > lim.max_container_len:
            raise SandboxError(
                f"{type(value).__name__} of {len(value)} items exceeds the limit of {lim.max_container_len}"
            )
        return value

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            self.charge()
            yield item

    def collect(self, iterable: Iterable[Any]) -> list[Any]:
        items: list[Any] = []
        for item in self.iterate(iterable):
            items.append(item)
            if len(items) > self.limits.max_container_len:
                raise SandboxError(f"more than {self.limits.max_container_len} items collected")
        return items

    def eval(self, node: ast.AST, env: dict[str, Any]) -> Any:
        self.charge()
        return getattr(self, f"visit_{type(node).__name__}")(node, env)

    def visit_Constant(self, node: ast.Constant, env: dict[str, Any]) -> Any:
        return node.value

    def visit_Name(self, node: ast.Name, env: dict[str, Any]) -> Any:
        if node.id not in env:
            raise NameError(f"name {node.id!r} is not defined")
        return env[node.id]

    def visit_List(self, node: ast.List | ast.Tuple | ast.Set, env: dict[str, Any]) -> Any:
        items = [self.eval(e, env) for e in node.elts]
        if isinstance(node, ast.Set):
            self.weigh(items)
        return _DISPLAYS[type(node)](items)

    visit_Tuple = visit_Set = visit_List

    def visit_Dict(self, node: ast.Dict, env: dict[str, Any]) -> Any:
        pairs = [(self.eval(k, env), self.eval(v, env)) for k, v in zip(node.keys, node.values, strict=True)]
        self.weigh([key for key, _ in pairs])
        return dict(pairs)

    def visit_Slice(self, node: ast.Slice, env: dict[str, Any]) -> Any:
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else self.eval(part, env) for part in parts))

    def visit_Subscript(self, node: ast.Subscript, env: dict[str, Any]) -> Any:
        container, key = self.eval(node.value, env), self.eval(node.slice, env)
        self.weigh(key)
        result = container[key]
        if isinstance(key, slice) and isinstance(result, _SEQUENCES):
            self.charge(len(result) // _BULK)
        return self.bounded(result)

    def visit_BoolOp(self, node: ast.BoolOp, env: dict[str, Any]) -> Any:
        value = None
        for operand in node.values:
            value = self.eval(operand, env)
            if bool(value) == isinstance(node.op, ast.Or):
                return value
        return value

    def visit_UnaryOp(self, node: ast.UnaryOp, env: dict[str, Any]) -> Any:
        return self.bounded(_UNARYOPS[type(node.op)](self.eval(node.operand, env)))

    def visit_IfExp(self, node: ast.IfExp, env: dict[str, Any]) -> Any:
        return self.eval(node.body if self.eval(node.test, env) else node.orelse, env)

    def visit_Compare(self, node: ast.Compare, env: dict[str, Any]) -> Any:
        left = self.eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator, env)
            if isinstance(op, ast.In | ast.NotIn):
                if isinstance(right, Iterator):  # a generator: materialise it so its items get weighed
                    right = self.collect(right)
                if isinstance(right, dict | set | frozenset | KeysView):
                    self.weigh(left)  # hashed lookup: only the needle is walked
                elif not (isinstance(right, range) and isinstance(left, int)):
                    self.weigh(left, right)
            elif not isinstance(op, ast.Is | ast.IsNot):
                self.weigh(left, right)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def visit_BinOp(self, node: ast.BinOp, env: dict[str, Any]) -> Any:
        left, right, lim = self.eval(node.left, env), self.eval(node.right, env), self.limits
        op = type(node.op)
        if op is ast.Mult:
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, _SEQUENCES) and isinstance(times, int):
                    size = len(seq) * max(times, 0)
                    cap = lim.max_str_len if isinstance(seq, str | bytes) else lim.max_container_len
                    if size > cap:
                        raise SandboxError(f"repetition would build {size} items; the limit is {cap}")
                    self.charge(size // _BULK)
        elif op in (ast.Pow, ast.LShift) and isinstance(left, int) and isinstance(right, int) and right > 0:
            # Lower bound on the result's bits, checked before Python would allocate it (0, 1, -1 stay small).
            size = abs(left).bit_length()
            bits = (size - 1) * right if op is ast.Pow else (size + right if size else 0)
            if bits > lim.max_int_bits:
                sym = "**" if op is ast.Pow else "<<"
                raise SandboxError(
                    f"{left} {sym} {right} would exceed the {lim.max_int_bits}-bit integer limit"
                )
        elif op is ast.Mod and isinstance(left, str | bytes):
            raise SandboxError("printf-style '%' string formatting is not allowed")
        elif isinstance(left, _SIZED) and isinstance(right, _SIZED):  # concatenation, set algebra
            self.charge((len(left) + len(right)) // _BULK)
        return self.bounded(_BINOPS[op](left, right))

    def scopes(self, generators: list[ast.comprehension], env: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Yield one scope per combination of the comprehension's ``for`` clauses that passes its ``if``s."""
        if not generators:
            yield env
            return
        first, rest = generators[0], generators[1:]
        for item in self.iterate(self.eval(first.iter, env)):
            scope = dict(env)
            self.bind(first.target, item, scope)
            if all(self.eval(cond, scope) for cond in first.ifs):
                yield from self.scopes(rest, scope)

    def bind(self, target: ast.AST, value: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = value
            return
        assert isinstance(target, ast.Tuple | ast.List)
        items = self.collect(value)
        if len(items) != len(target.elts):
            raise ValueError(f"cannot unpack {len(items)} values into {len(target.elts)} names")
        for name, item in zip(target.elts, items, strict=True):
            self.bind(name, item, scope)

    def visit_ListComp(self, node: ast.ListComp | ast.SetComp, env: dict[str, Any]) -> Any:
        items = self.collect(self.eval(node.elt, scope) for scope in self.scopes(node.generators, env))
        if isinstance(node, ast.SetComp):
            self.weigh(items)
            return set(items)
        return items

    visit_SetComp = visit_ListComp

    def visit_GeneratorExp(self, node: ast.GeneratorExp, env: dict[str, Any]) -> Any:
        return (self.eval(node.elt, scope) for scope in self.scopes(node.generators, env))

    def visit_DictComp(self, node: ast.DictComp, env: dict[str, Any]) -> Any:
        scopes = self.scopes(node.generators, env)
        pairs = self.collect((self.eval(node.key, s), self.eval(node.value, s)) for s in scopes)
        self.weigh([key for key, _ in pairs])
        return dict(pairs)

    def visit_Call(self, node: ast.Call, env: dict[str, Any]) -> Any:
        receiver = self.eval(node.func.value, env) if isinstance(node.func, ast.Attribute) else None
        args = [self.eval(arg, env) for arg in node.args]
        kwargs = {kw.arg: self.eval(kw.value, env) for kw in node.keywords if kw.arg is not None}
        if isinstance(node.func, ast.Attribute):
            return self.bounded(self.call_method(receiver, node.func.attr, args))
        assert isinstance(node.func, ast.Name)
        return self.bounded(self.call_builtin(node.func.id, args, kwargs))

    def call_method(self, receiver: Any, name: str, args: list[Any]) -> Any:
        for kind, names in _METHODS.items():
            if isinstance(receiver, kind) and name in names:
                if name == "join":
                    args = [self.collect(args[0])] if len(args) == 1 else args
                    total = sum(len(p) for p in args[0] if isinstance(p, str)) + len(receiver) * len(args[0])
                    if total > self.limits.max_str_len:
                        raise SandboxError(f"join would build a string of {total} characters")
                if isinstance(receiver, dict):
                    self.weigh(*args[:1])  # views are O(1); get() hashes its key
                else:
                    self.weigh(receiver, *args)
                return getattr(receiver, name)(*args)
        raise SandboxError(f"method '.{name}()' is not available on {type(receiver).__name__}")

    def call_builtin(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if name == "sum":
            total = args[1] if len(args) > 1 else 0
            for item in self.iterate(args[0]):
                if not isinstance(item, int | float) or not isinstance(total, int | float):
                    raise TypeError(f"sum() only adds numbers here, got {type(item).__name__}")
                total = self.bounded(total + item)
            return total
        if name in ("any", "all"):
            want = name == "any"
            return next((want for item in self.iterate(args[0]) if bool(item) == want), not want)
        if name in ("min", "max", "sorted", "set", "frozenset", "list", "tuple", "dict"):
            if name == "dict" and args and isinstance(args[0], Mapping):
                args = [args[0].items()]
            many = name in ("min", "max") and len(args) > 1
            items = args if many else self.collect(args[0]) if args else []
            if name not in ("list", "tuple"):  # these copy references; the rest compare or hash items
                self.weigh(items)
            if name == "sorted":
                self.charge(len(items).bit_length() * len(items) // _BULK)
                return sorted(items, reverse=bool(kwargs.get("reverse", False)))
            if name in ("min", "max"):
                if not items and "default" in kwargs:
                    return kwargs["default"]
                return min(items) if name == "min" else max(items)
            return _CONVERTERS[name](items)
        if name == "str" and args and not isinstance(args[0], str | int | float | bool | type(None)):
            raise SandboxError("str() only accepts scalar values (str, int, float, bool, None)")
        if (
            name == "int"
            and args
            and isinstance(args[0], str | bytes)
            and len(args[0]) > self.limits.max_int_bits
        ):
            raise SandboxError(f"int() of a string longer than {self.limits.max_int_bits} characters")
        if name == "round" and len(args) > 1 and isinstance(args[1], int) and abs(args[1]) > 64:
            raise SandboxError("round() accepts at most 64 digits")
        if name == "range":
            span = range(*args)
            try:
                size = len(span)
            except OverflowError:
                size = 2**63
            if size > self.limits.max_container_len:
                raise SandboxError(
                    f"range() of {size} items exceeds the limit of {self.limits.max_container_len}"
                )
            return span
        return _CONVERTERS[name](*args)


def evaluate(expr: str, variables: Mapping[str, Any], limits: SandboxLimits | None = None) -> Any:
    """Validate ``expr`` and interpret it over ``variables`` (read-only) within ``limits``.

    Why: the result of a predicate decides a reward, so it has to be computed by code whose reach is
    exactly the language above; the interpreter exposes no way to mutate or escape ``variables``.

    Returns:
        The expression's value; an unconsumed generator/iterator is materialised into a list.

    Raises:
        SandboxError: If the expression is refused or exceeds a limit.
        Exception: Ordinary runtime errors (KeyError on a missing id, TypeError, ...) propagate.
    """
    limits = limits or SandboxLimits()
    tree = _parse(expr, limits)
    interpreter = _Interpreter(limits)
    value = interpreter.eval(tree.body, dict(variables))
    if isinstance(value, Iterator):
        value = interpreter.collect(value)
    return value


def _preview(expr: Any, limit: int = 200) -> str:
    text = repr(expr)
    return text if len(text) <= limit else text[:limit] + "..."


def evaluate_predicate(
    expr: str, variables: Mapping[str, Any], limits: SandboxLimits | None = None
) -> PredicateResult:
    """Evaluate ``expr`` as a pass/fail predicate; never raises.

    Why: a broken predicate (a wrong id, a type slip, a refused construct) must fail its own
    check with a readable reason, not crash the rollout or reward computation that called it.
    A non-bool value is coerced with ``bool()``; the raw value stays in ``value``.
    """
    try:
        value = evaluate(expr, variables, limits)
        return PredicateResult(passed=bool(value), value=value)
    except SandboxError as exc:
        return PredicateResult(passed=False, error=f"SandboxError: {exc.reason} (in {_preview(expr)})")
    except Exception as exc:
        try:
            detail = f"{type(exc).__name__}: {exc}"
        except Exception:
            detail = type(exc).__name__
        return PredicateResult(passed=False, error=f"{detail[:500]} while evaluating {_preview(expr)}")
