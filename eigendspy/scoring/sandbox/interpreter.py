"""The tree-walking interpreter of the predicate language (never Python's eval/compile).

Every evaluated node costs a step, C-level work is charged by the elements it touches, keys are
vetted for hash collisions before anything hashes them (`eigendspy.scoring.sandbox.hashing`), results
are size-checked before large allocations, and a wall-clock deadline backs all of it up. See
`eigendspy.scoring.sandbox.predicate`.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Iterable, Iterator, KeysView, Mapping
from typing import Any

from eigendspy.scoring.sandbox.hashing import dict_pairs, vet_keys, vet_operands
from eigendspy.scoring.sandbox.rules import (
    BINOPS,
    BULK,
    CMPOPS,
    CONVERTERS,
    DISPLAYS,
    HASHED,
    METHODS,
    SCALARS,
    SEQUENCES,
    SET_OPS,
    SIZED,
    TEXT,
    UNARYOPS,
    WALKED,
    SandboxError,
    SandboxLimits,
)

CLOCK_EVERY = 16
"""Steps between two checks of the deadline. Checking at every charge made predicates 40-50% slower
(measured: a 150x150 nested loop 55 -> 81 ms); every 16 steps the cost is within noise, and the deadline
is overrun by at most 16 steps of charged work."""


class Interpreter:
    """Tree-walking evaluator for validated trees; it charges steps and size-checks every result."""

    def __init__(self, limits: SandboxLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.deadline = time.monotonic() + limits.max_seconds
        self.cpu_deadline = time.thread_time() + limits.max_cpu_seconds
        self.next_check = min(CLOCK_EVERY, limits.max_steps + 1)

    def charge(self, steps: int = 1) -> None:
        """Count ``steps`` of work; every `CLOCK_EVERY` steps also check the budget and the deadline."""
        self.steps += steps
        if self.steps >= self.next_check:
            self.check_limits()

    def check_limits(self) -> None:
        """Raise once the step budget or the time limit is spent.

        Why the clock too: the step budget is only as good as the charging of C-level work; the
        deadline bounds whatever a charging gap or a pathological input variable lets through.
        """
        lim = self.limits
        if self.steps > lim.max_steps:
            raise SandboxError(
                f"step budget of {lim.max_steps} exceeded: the expression does too much work "
                "(huge ranges, nested comprehensions or large repeated containers)"
            )
        if time.thread_time() > self.cpu_deadline:
            raise SandboxError(
                f"the expression exceeded the CPU time limit of {lim.max_cpu_seconds} s "
                f"(after {self.steps} of {lim.max_steps} steps)"
            )
        if time.monotonic() > self.deadline:
            raise SandboxError(
                f"the expression exceeded the time limit of {lim.max_seconds} s "
                f"(after {self.steps} of {lim.max_steps} steps)"
            )
        self.next_check = min(self.steps + CLOCK_EVERY, lim.max_steps + 1)

    def weigh(self, *values: Any) -> None:
        """Charge for C-level hashing/comparison of ``values``: one step per `BULK` nested elements.

        Why: ``==``, ``in``, ``sorted`` and hashing walk nested containers in C, and cheap repetition
        makes such containers huge (``[big] * 10**5`` shares one ``big``). Each visited container
        costs a full step (that is what walking it costs here), and the walk stops once the
        remaining budget is spent, so it is bounded itself.
        """
        cap = (self.limits.max_steps - self.steps + 1) * BULK
        total, stack = len(values), list(values)
        while stack and total <= cap:
            item = stack.pop()
            if isinstance(item, str | bytes):
                total += len(item) // BULK
                continue
            if isinstance(item, range):
                total += len(item)
                continue
            parts = (item, item.values()) if isinstance(item, dict) else (item,) if isinstance(item, WALKED) else ()
            for part in parts:
                total += BULK + len(part)
                kinds = set(map(type, part))  # C-level scan; flat parts need no Python-level walk
                if kinds <= TEXT:
                    total += sum(map(len, part)) // BULK
                elif not kinds <= SCALARS:
                    stack.extend(part)
        self.charge(total // BULK)

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
            vet_keys(self, items)
        return DISPLAYS[type(node)](items)

    visit_Tuple = visit_Set = visit_List

    def visit_Dict(self, node: ast.Dict, env: dict[str, Any]) -> Any:
        pairs = [(self.eval(k, env), self.eval(v, env)) for k, v in zip(node.keys, node.values, strict=True)]
        keys = [key for key, _ in pairs]
        self.weigh(keys)
        vet_keys(self, keys)
        return dict(pairs)

    def visit_Slice(self, node: ast.Slice, env: dict[str, Any]) -> Any:
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if part is None else self.eval(part, env) for part in parts))

    def visit_Subscript(self, node: ast.Subscript, env: dict[str, Any]) -> Any:
        container, key = self.eval(node.value, env), self.eval(node.slice, env)
        self.weigh(key)
        result = container[key]
        if isinstance(key, slice) and isinstance(result, SEQUENCES):
            self.charge(len(result) // BULK)
        return self.bounded(result)

    def visit_BoolOp(self, node: ast.BoolOp, env: dict[str, Any]) -> Any:
        value = None
        for operand in node.values:
            value = self.eval(operand, env)
            if bool(value) == isinstance(node.op, ast.Or):
                return value
        return value

    def visit_UnaryOp(self, node: ast.UnaryOp, env: dict[str, Any]) -> Any:
        return self.bounded(UNARYOPS[type(node.op)](self.eval(node.operand, env)))

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
            if not CMPOPS[type(op)](left, right):
                return False
            left = right
        return True

    def visit_BinOp(self, node: ast.BinOp, env: dict[str, Any]) -> Any:
        left, right, lim = self.eval(node.left, env), self.eval(node.right, env), self.limits
        op = type(node.op)
        if op is ast.Mult:
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, SEQUENCES) and isinstance(times, int):
                    size = len(seq) * max(times, 0)
                    cap = lim.max_str_len if isinstance(seq, str | bytes) else lim.max_container_len
                    if size > cap:
                        raise SandboxError(f"repetition would build {size} items; the limit is {cap}")
                    self.charge(size // BULK)
        elif op in (ast.Pow, ast.LShift) and isinstance(left, int) and isinstance(right, int) and right > 0:
            # Lower bound on the result's bits, checked before Python would allocate it (0, 1, -1 stay small).
            size = abs(left).bit_length()
            bits = (size - 1) * right if op is ast.Pow else (size + right if size else 0)
            if bits > lim.max_int_bits:
                sym = "**" if op is ast.Pow else "<<"
                raise SandboxError(f"{left} {sym} {right} would exceed the {lim.max_int_bits}-bit integer limit")
        elif op is ast.Mod and isinstance(left, str | bytes):
            raise SandboxError("printf-style '%' string formatting is not allowed")
        elif op in SET_OPS and (isinstance(left, HASHED) or isinstance(right, HASHED)):
            left, right = vet_operands(self, left, right)  # set algebra, also on keys/items views
        elif isinstance(left, SIZED) and isinstance(right, SIZED):  # concatenation
            self.charge((len(left) + len(right)) // BULK)
        return self.bounded(BINOPS[op](left, right))

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
            vet_keys(self, items)
            return set(items)
        return items

    visit_SetComp = visit_ListComp

    def visit_GeneratorExp(self, node: ast.GeneratorExp, env: dict[str, Any]) -> Any:
        return (self.eval(node.elt, scope) for scope in self.scopes(node.generators, env))

    def visit_DictComp(self, node: ast.DictComp, env: dict[str, Any]) -> Any:
        scopes = self.scopes(node.generators, env)
        pairs = self.collect((self.eval(node.key, s), self.eval(node.value, s)) for s in scopes)
        keys = [key for key, _ in pairs]
        self.weigh(keys)
        vet_keys(self, keys)
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
        for kind, names in METHODS.items():
            if isinstance(receiver, kind) and name in names:
                if name == "join":
                    args = [self.collect(args[0])] if len(args) == 1 else args
                    total = sum(len(p) for p in args[0] if isinstance(p, str)) + len(receiver) * len(args[0])
                    if total > self.limits.max_str_len:
                        raise SandboxError(f"join would build a string of {total} characters")
                if isinstance(receiver, dict):
                    self.weigh(*args[:1])  # views are O(1); get() hashes its key
                elif isinstance(receiver, set | frozenset):
                    receiver, *args = vet_operands(self, receiver, *args)
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
            if name in ("set", "frozenset"):
                vet_keys(self, items)
            elif name == "dict":
                items = dict_pairs(self, items)
            if name == "sorted":
                self.charge(len(items).bit_length() * len(items) // BULK)
                return sorted(items, reverse=bool(kwargs.get("reverse", False)))
            if name in ("min", "max"):
                if not items and "default" in kwargs:
                    return kwargs["default"]
                return min(items) if name == "min" else max(items)
            return CONVERTERS[name](items)
        if name == "str" and args and not isinstance(args[0], str | int | float | bool | type(None)):
            raise SandboxError("str() only accepts scalar values (str, int, float, bool, None)")
        if name == "int" and args and isinstance(args[0], str | bytes) and len(args[0]) > self.limits.max_int_bits:
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
                raise SandboxError(f"range() of {size} items exceeds the limit of {self.limits.max_container_len}")
            return span
        return CONVERTERS[name](*args)
