"""The ``calculate`` tool's cost is bounded for the whole expression, not per operator (issue 11)."""

from __future__ import annotations

import time

import pytest

from eigendspy.domains.calculator import CalculationError, calculate_text

COSTLY = [
    "*".join(["(3**300000)"] * 50),  # products of individually-capped powers: minutes before
    "*".join(["(3**60000)"] * 100),
    "(" + "*".join(["(7**30000)"] * 30) + ")//(3**200000)",
    "(2**999999)*(3**630000)",
]


@pytest.mark.parametrize("expression", COSTLY)
def test_costly_expression_is_refused_quickly(expression: str) -> None:
    start = time.process_time()
    with pytest.raises(CalculationError, match="too costly|too large"):
        calculate_text(expression)
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("+".join(["1"] * 999), "999.0"),  # long chains evaluate without Python recursion, as eval does
        ("-" * 1990 + "1", "1.0"),
        ("2**1000/2**999", "2.0"),  # big exact integers far below the budget still work
        ("(2**5000*3)//(2**4999)", "6.0"),
    ],
)
def test_cheap_expressions_match_eval(expression: str, expected: str) -> None:
    assert calculate_text(expression) == expected == str(round(float(eval(expression)), 2))


def test_nesting_beyond_the_parser_is_an_error_not_a_crash() -> None:
    with pytest.raises(CalculationError, match="too deeply nested"):
        calculate_text("-" * 1000 + "(" * 199 + "1" + ")" * 199)
