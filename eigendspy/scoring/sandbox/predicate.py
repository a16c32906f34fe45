"""A restricted, bounded expression language for LLM-written state predicates.

Why: checkers carry predicates such as ``db["orders"]["#W1"]["status"] == "cancelled"`` that an LLM
wrote. Handing them to Python's ``eval`` would let one bad sample read files, import modules, walk
``().__class__.__bases__`` to anything, or freeze a worker with ``10**10**10``. Instead the text is
parsed with `ast`, checked against an allow-list, and run by the small tree-walking interpreter
below, never by ``eval``/``compile``. Every evaluated node and loop iteration costs a step, so does
C-level work in proportion to the elements it touches (``==``/``in``/``sorted``/hashing walk nested
containers), keys are refused when too many distinct ones share a hash value (colliding keys make
sets and dicts quadratic inside one C call), results are size-checked *before* the big operations
(``*`` repetition, ``**``, ``<<``, ``range``) allocate anything, and a wall-clock deadline backs all of
it up, so each predicate finishes in bounded time and memory.

Language: literals and list/tuple/set/dict displays, variable names, subscripts and slices,
``and``/``or``/``not``, comparisons (including ``in`` and ``is None``), ``+ - * / // % ** << >> & | ^``,
``x if c else y``, list/set/dict comprehensions and generator expressions, calls to the builtins in
`_BUILTINS` and to the read-only methods in `METHODS`. ``**`` is kept (``10 ** 2`` is common in
amounts) but refused when the result would exceed ``max_int_bits``. Rejected: imports and other
statements, lambda, ``:=`` (predicates need no bindings), f-strings and ``%`` string formatting
(format specs can allocate), ``*``/``**`` unpacking, every identifier starting with ``_``, attribute
access other than an allowed method call, and mutating methods (variables are read-only).
"""

from __future__ import annotations

import copy
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from eigendspy.scoring.sandbox.interpreter import Interpreter
from eigendspy.scoring.sandbox.process import evaluate_in_subprocess
from eigendspy.scoring.sandbox.rules import (
    SCALARS,
    TEXT,
    PredicateResult,
    SandboxError,
    SandboxLimits,
    check_expression,
    parse_expression,
)

__all__ = [
    "PredicateResult",
    "SandboxError",
    "SandboxLimits",
    "check_expression",
    "evaluate",
    "evaluate_in_subprocess",
    "evaluate_predicate",
]


def evaluate(expr: str, variables: Mapping[str, Any], limits: SandboxLimits | None = None) -> Any:
    """Validate ``expr`` and interpret it over ``variables`` (read-only) within ``limits``.

    Why: the result of a predicate decides a reward, so it has to be computed by code whose reach is
    exactly the language above; the interpreter exposes no way to mutate or escape ``variables``.

    Returns:
        The expression's value, never aliasing ``variables``: an unconsumed generator/iterator or a
        dict view is materialised into a list, and containers are deep copies.

    Raises:
        SandboxError: If the expression is refused or exceeds a limit.
        Exception: Ordinary runtime errors (KeyError on a missing id, TypeError, ...) propagate.
    """
    limits = limits or SandboxLimits()
    tree = parse_expression(expr, limits)
    interpreter = Interpreter(limits)
    value = interpreter.eval(tree.body, dict(variables))
    if isinstance(value, Iterator):
        value = interpreter.collect(value)
    return _detached(interpreter, value)


def _detached(interpreter: Interpreter, value: Any) -> Any:
    """A copy of ``value`` that shares no mutable object with the variables, charged like a walk.

    Why: the variables are typically a shared, cached DB dump (`eigendspy.core.state.BaseDB.dump`);
    a caller mutating a returned ``db["users"]`` would otherwise change every environment's hash.
    """
    if type(value) in SCALARS or type(value) in TEXT:
        return value
    if isinstance(value, KeysView | ValuesView | ItemsView):
        value = interpreter.collect(value)
    interpreter.weigh(value)
    return copy.deepcopy(value)


def _preview(expr: Any, limit: int = 200) -> str:
    text = repr(expr)
    return text if len(text) <= limit else text[:limit] + "..."


def evaluate_predicate(expr: str, variables: Mapping[str, Any], limits: SandboxLimits | None = None) -> PredicateResult:
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
