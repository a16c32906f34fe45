"""A small, safe arithmetic evaluator for the ``calculate`` tool.

Why not ``eval``: the expression comes straight from a model. We parse it with Python's own
grammar (so what is and is not valid syntax, and the resulting int/float arithmetic, match what
tau2-bench computes with ``eval``) and then walk the tree ourselves, accepting only numeric
literals, ``+ - * / // **``, unary signs and parentheses. Exponents are bounded so a model
cannot stall a worker with ``9**9**9``.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

ALLOWED_CHARS = frozenset("0123456789+-*/(). ")
"""tau2's character allow-list (``**`` and ``//`` therefore pass)."""

MAX_POWER_BITS = 1_000_000
"""Largest exact integer power we compute (in bits); anything bigger cannot be a float anyway."""

MAX_LENGTH = 2_000
"""Longest expression accepted (keeps parse trees small)."""

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
            ``division by zero`` or ``float division by zero``), or an oversized power.
        SyntaxError: The text is not a well-formed expression (Python's own message).
    """
    if not all(ch in ALLOWED_CHARS for ch in expression):
        raise CalculationError("Invalid characters in expression")
    if len(expression) > MAX_LENGTH:
        raise CalculationError("Expression too long")
    # ``eval`` tolerates leading spaces, ``ast.parse`` does not: strip them to match.
    tree = ast.parse(expression.lstrip(" "), filename="<string>", mode="eval")
    if isinstance(tree.body, ast.Tuple) and not tree.body.elts:
        # ``()`` is the one non-number the allowed characters can form; tau2's float() rejects it so:
        raise CalculationError("float() argument must be a string or a real number, not 'tuple'")
    return _eval(tree.body)


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and _power_too_large(left, right):
            raise CalculationError("Result too large")
        try:
            return _BINARY[type(node.op)](left, right)
        except (ZeroDivisionError, OverflowError) as exc:  # Python's own text, exactly as eval gives it
            raise CalculationError(str(exc)) from exc
    raise CalculationError("Unsupported expression")


def _power_too_large(base: int | float, exponent: int | float) -> bool:
    """Whether ``base ** exponent`` is an exact integer power too big to compute cheaply."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or abs(base) <= 1 or exponent <= 0:
        return False
    return abs(base).bit_length() * exponent > MAX_POWER_BITS


def calculate_text(expression: str) -> str:
    """The ``calculate`` tool's answer: the value rounded to 2 decimals, as tau2 prints it."""
    value = evaluate(expression)
    try:
        return str(round(float(value), 2))
    except OverflowError as exc:
        raise CalculationError("Result too large") from exc
