"""The subprocess sandbox never raises, whatever the result's shape or the identifiers used (issue 11)."""

from __future__ import annotations

import sys
import time
import traceback

from eigendspy.scoring.sandbox.process import evaluate_in_subprocess
from eigendspy.scoring.sandbox.rules import PredicateResult

DEEP = "[y := [y] for i in range(900)][-1]"  # a result nested 900 levels deep


def _at_depth(frames_left: int) -> PredicateResult:
    """Call the sandbox with only ``frames_left`` frames of recursion to spare, as a deep caller would."""
    depth = sum(1 for _ in traceback.walk_stack(None))
    if sys.getrecursionlimit() - depth > frames_left:
        return _at_depth(frames_left)
    return evaluate_in_subprocess(DEEP, {"y": []})


def test_deeply_nested_result_is_an_error_not_a_recursion_error() -> None:
    start = time.process_time()
    result = _at_depth(frames_left=200)
    assert not result.passed and "nested too deeply" in (result.error or "")
    assert time.process_time() - start < 2.0


def test_nested_result_within_the_cap_comes_back() -> None:
    result = evaluate_in_subprocess("[y := [y] for i in range(50)][-1]", {"y": []})
    assert result.passed and result.error is None


def test_deeply_nested_variables_are_an_error() -> None:
    deep: list = []
    for _ in range(sys.getrecursionlimit() + 10):
        deep = [deep]
    result = evaluate_in_subprocess("True", {"x": deep})
    assert not result.passed and "JSON" in (result.error or "")


def test_non_ascii_identifier_works() -> None:
    result = evaluate_in_subprocess("len([é for é in range(3)]) == 3 and 'ü' in 'Müller'", {})
    assert result.passed and result.error is None, result.error
