"""A small, safe arithmetic evaluator for the ``calculate`` tool.

Why not ``eval``: the expression comes straight from a model. We parse it with Python's own
grammar (so what is and is not valid syntax, and the resulting int/float arithmetic, match what
tau2-bench computes with ``eval``) and then walk the tree ourselves, accepting only numeric
literals, ``+ - * / // **``, unary signs and parentheses.

Why a cost budget for the whole expression: bounding each operator alone is not enough, since
a product of several individually-capped powers still costs minutes of big-integer work. Before
every operation we charge an upper bound of its cost (in 30-bit-digit operations, schoolbook
rates) against one budget per expression and refuse past it, so any call costs well under a
second. Only integer arithmetic far beyond anything a float (the printed result) can hold is
refused; such inputs are where eigendspy deliberately differs from tau2's unbounded ``eval``.
The walk is iterative so long chains such as ``1+1+...+1`` evaluate as ``eval`` would, without
Python recursion.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

ALLOWED_CHARS = frozenset("0123456789+-*/(). ")
"""tau2's character allow-list (``**`` and ``//`` therefore pass)."""

MAX_POWER_BITS = 1_000_000
"""Largest exact integer intermediate we compute (in bits); anything bigger cannot be a float."""

MAX_LENGTH = 2_000
"""Longest expression accepted (keeps parse trees small)."""

MAX_COST = 100_000_000
"""Budget per expression, in digit operations (about 0.2 s of CPU at schoolbook speed)."""

_DIGIT_BITS = 30
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


class CalculationError(ValueError):
    """The expression is not allowed or cannot be evaluated; the message is what the model sees."""


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression exactly as Python would, without executing code.

    Args:
        expression: Text made only of digits, ``.``, ``+ - * /``, parentheses and spaces.

    Raises:
        CalculationError: Disallowed characters, division by zero (Python's message, e.g.
            ``division by zero`` or ``float division by zero``), an oversized intermediate
            integer, a whole expression over the cost budget, or nesting too deep to parse.
        SyntaxError: The text is not a well-formed expression (Python's own message).
    """
    if not all(ch in ALLOWED_CHARS for ch in expression):
        raise CalculationError("Invalid characters in expression")
    if len(expression) > MAX_LENGTH:
        raise CalculationError("Expression too long")
    try:
        # ``eval`` tolerates leading spaces, ``ast.parse`` does not: strip them to match.
        tree = ast.parse(expression.lstrip(" "), filename="<string>", mode="eval")
    except (MemoryError, RecursionError) as exc:  # the parser's own stack limit
        raise CalculationError("Expression too deeply nested") from exc
    if isinstance(tree.body, ast.Tuple) and not tree.body.elts:
        # ``()`` is the one non-number the allowed characters can form; tau2's float() rejects it so:
        raise CalculationError("float() argument must be a string or a real number, not 'tuple'")
    return _Evaluator().run(tree.body)


class _Evaluator:
    """Post-order walk with an explicit stack, charging each operation before doing it."""

    def __init__(self) -> None:
        self.spent = 0

    def run(self, root: ast.AST) -> int | float:
        pending: list[tuple[ast.AST, bool]] = [(root, False)]
        values: list[int | float] = []
        while pending:
            node, ready = pending.pop()
            if isinstance(node, ast.Constant) and type(node.value) in (int, float):
                values.append(node.value)
            elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
                if not ready:
                    pending += [(node, True), (node.operand, False)]
                    continue
                operand = values.pop()
                self._charge(_digits(operand))
                values.append(_UNARY[type(node.op)](operand))
            elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
                if not ready:
                    pending += [(node, True), (node.right, False), (node.left, False)]
                    continue
                right, left = values.pop(), values.pop()
                values.append(self._binary(node.op, left, right))
            else:
                raise CalculationError("Unsupported expression")
        return values[0]

    def _binary(self, op: ast.operator, left: int | float, right: int | float) -> int | float:
        self._charge(binary_cost(op, left, right))
        try:
            return _BINARY[type(op)](left, right)
        except (ZeroDivisionError, OverflowError) as exc:  # Python's own text, exactly as eval gives it
            raise CalculationError(str(exc)) from exc

    def _charge(self, cost: int) -> None:
        self.spent += cost
        if self.spent > MAX_COST:
            raise CalculationError("Expression too costly to evaluate")


def binary_cost(op: ast.operator, left: int | float, right: int | float) -> int:
    """An upper bound of the work ``left op right`` does, in digit operations.

    Raises:
        CalculationError: The exact integer result would exceed ``MAX_POWER_BITS``.
    """
    n, m = _digits(left), _digits(right)
    if not (isinstance(left, int) and isinstance(right, int)):
        return n + m  # float arithmetic, after at most one int->float conversion
    if isinstance(op, ast.Pow):
        if abs(left) <= 1 or right <= 0:
            return n + m  # 0, ±1, or a float result (negative exponent)
        bits = abs(left).bit_length() * right
        if bits > MAX_POWER_BITS:
            raise CalculationError("Result too large")
        size = bits // _DIGIT_BITS + 1
        return size * size  # repeated squaring is dominated by the last, full-size squaring
    if isinstance(op, ast.Mult):
        if abs(left).bit_length() + abs(right).bit_length() > MAX_POWER_BITS:
            raise CalculationError("Result too large")
        return n * m
    if isinstance(op, ast.FloorDiv):
        return n * m  # schoolbook long division
    return n + m  # + - and true division (CPython divides at float precision)


def _digits(value: int | float) -> int:
    """Size of a number in 30-bit digits, CPython's unit of big-integer work (floats count 1)."""
    if isinstance(value, int):
        return abs(value).bit_length() // _DIGIT_BITS + 1
    return 1


def calculate_text(expression: str) -> str:
    """The ``calculate`` tool's answer: the value rounded to 2 decimals, as tau2 prints it."""
    value = evaluate(expression)
    try:
        return str(round(float(value), 2))
    except OverflowError as exc:
        raise CalculationError("Result too large") from exc
