"""Tests for the predicate sandbox: correct answers, clear refusals, bounded work, never-raising wrappers."""

from __future__ import annotations

import copy
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eigendspy.scoring.sandbox.predicate import (
    PredicateResult,
    SandboxError,
    SandboxLimits,
    check_expression,
    evaluate,
    evaluate_in_subprocess,
    evaluate_predicate,
)

DB = {
    "orders": {
        "#W123": {"status": "cancelled", "user_id": "u1", "payment_history": [{"amount": 30.5}]},
        "#W1": {
            "status": "delivered",
            "user_id": "u1",
            "payment_history": [{"amount": 12}, {"amount": -12}],
        },
        "#W2": {"status": "pending", "user_id": "u2", "payment_history": [{"amount": 7}]},
    },
    "users": {"u1": {"orders": ["#W123", "#W1"]}, "u2": {"orders": ["#W2"]}},
}


@pytest.fixture
def variables() -> dict:
    return {"db": copy.deepcopy(DB)}


# --- correct results -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('db["orders"]["#W123"]["status"] == "cancelled" and len(db["users"]["u1"]["orders"]) >= 2', True),
        ('db["orders"]["#W1"]["status"] == "cancelled" and len(db["users"]["u1"]["orders"]) >= 2', False),
        ('all(o["status"] != "pending" for o in db["orders"].values() if o["user_id"] == "u1")', True),
        ('all(o["status"] != "pending" for o in db["orders"].values() if o["user_id"] == "u2")', False),
        ('sum(p["amount"] for p in db["orders"]["#W1"]["payment_history"]) == 0', True),
        ('sum(p["amount"] for p in db["orders"]["#W123"]["payment_history"]) == 0', False),
        ('sorted(k for k, o in db["orders"].items() if o["user_id"] == "u1")', ["#W1", "#W123"]),
        ('{k: o["status"] for k, o in db["orders"].items() if o["status"] != "pending"}["#W1"]', "delivered"),
        ('db["orders"].get("#W999", {}).get("status") is None', True),
        ('"#W2" in db["users"]["u2"]["orders"] and "#W2" not in db["users"]["u1"]["orders"]', True),
        ('max(len(u["orders"]) for u in db["users"].values())', 2),
        ('db["orders"]["#W123"]["status"].upper().startswith("CANCEL")', True),
        ("[x * 2 for x in range(5) if x % 2 == 1]", [2, 6]),
        ("2 ** 10 + 7 // 2 - (1 if None is None else 0)", 1026),
        ('"-".join(sorted(db["users"]))', "u1-u2"),
        ("{1, 2} | {3}", {1, 2, 3}),
    ],
)
def test_evaluate_computes_python_semantics(variables: dict, expr: str, expected: object) -> None:
    assert evaluate(expr, variables) == expected


def test_predicate_result_for_pass_fail_and_non_bool(variables: dict) -> None:
    ok = evaluate_predicate('db["orders"]["#W2"]["status"] == "pending"', variables)
    assert ok == PredicateResult(passed=True, value=True, error=None)
    bad = evaluate_predicate('db["orders"]["#W2"]["status"] == "cancelled"', variables)
    assert (bad.passed, bad.value, bad.error) == (False, False, None)
    coerced = evaluate_predicate('db["users"]["u1"]["orders"]', variables)
    assert coerced.passed is True and coerced.value == ["#W123", "#W1"] and coerced.error is None
    empty = evaluate_predicate('[o for o in db["orders"] if o == "#W0"]', variables)
    assert empty.passed is False and empty.value == [] and empty.error is None


def test_runtime_errors_become_clear_failures(variables: dict) -> None:
    missing = evaluate_predicate('db["orders"]["#W999"]["status"] == "cancelled"', variables)
    assert missing.passed is False
    assert missing.error is not None and missing.error.startswith("KeyError: '#W999' while evaluating")
    assert "ZeroDivisionError" in (evaluate_predicate("1 / 0", variables).error or "")
    assert "TypeError" in (evaluate_predicate('db["orders"] + 1', variables).error or "")
    assert "NameError" in (evaluate_predicate("orders", variables).error or "")
    with pytest.raises(KeyError):
        evaluate('db["orders"]["#W999"]', variables)


def test_variables_are_never_mutated(variables: dict) -> None:
    evaluate('[o for o in db["orders"].values()] + list(db["users"]) + sorted(db["orders"])', variables)
    evaluate('{k: v for k, v in db["orders"].items()}', variables)
    assert variables["db"] == DB


# --- static refusals with a clear reason -----------------------------------------------------------


def _reason(expr: str, limits: SandboxLimits | None = None) -> str:
    with pytest.raises(SandboxError) as info:
        evaluate(expr, {"db": copy.deepcopy(DB)}, limits)
    return info.value.reason


def test_refuses_dunder_import() -> None:
    assert _reason("__import__('os')") == "access to dunder/private name '__import__' is not allowed"


def test_refuses_import_statement_with_clear_reason() -> None:
    assert _reason("import os").startswith("imports are not allowed")
    assert _reason("from os import path").startswith("imports are not allowed")


def test_refuses_dunder_attribute_chain() -> None:
    reason = _reason("().__class__.__bases__")
    assert "dunder/private name" in reason and "__" in reason
    assert "dunder/private name '_secret'" in _reason("db._secret")


def test_refuses_open() -> None:
    assert _reason("open('/etc/passwd')").startswith("call to 'open' is not allowed")


def test_refuses_exec() -> None:
    assert _reason("exec('1')").startswith("call to 'exec' is not allowed")


def test_refuses_eval() -> None:
    assert _reason("eval('1')").startswith("call to 'eval' is not allowed")


def test_refuses_getattr_and_globals() -> None:
    assert _reason("getattr(db, 'keys')").startswith("call to 'getattr' is not allowed")
    assert _reason("globals()").startswith("call to 'globals' is not allowed")


def test_refuses_lambda() -> None:
    assert _reason("sorted(db, key=lambda k: k)") == "lambda expressions are not allowed"


def test_refuses_mutation_methods() -> None:
    assert _reason("db['orders'].clear()").startswith("mutating method '.clear()' is not allowed")
    assert _reason("db['users']['u1']['orders'].append('#W9')").startswith("mutating method '.append()'")
    assert _reason("db.setdefault('x', 1)").startswith("mutating method '.setdefault()'")


def test_refuses_binding_into_variables_from_comprehension_target() -> None:
    assert "comprehension targets" in _reason("[1 for db['orders'] in [1]]")


def test_refuses_other_constructs() -> None:
    assert _reason("(x := 1)").startswith("assignment expressions (:=) are not allowed")
    assert _reason("f'{db}'").startswith("f-strings are not allowed")
    assert _reason("'%s' % db").startswith("printf-style")
    assert _reason("'{0.__class__}'.format(db)").startswith("method '.format()' is not allowed")
    assert _reason("db.keys").startswith("attribute access '.keys' is not allowed")
    assert _reason("x = 1").startswith("statements are not allowed")
    assert _reason("[*db]") == "* unpacking is not allowed"
    assert _reason("") == "the expression is empty"


def test_check_expression_is_static() -> None:
    check_expression('db["orders"]["#W999"]["status"] == "x"')  # would KeyError at runtime, valid statically
    with pytest.raises(SandboxError, match="call to 'open'"):
        check_expression("open('x')")


def test_expression_size_limits() -> None:
    assert _reason("1 + " * 600 + "1").startswith("the expression has")
    assert "more than 500 AST nodes" in _reason("[" + ",".join(["1"] * 600) + "]")
    assert "nested deeper than 100" in _reason("-" * 200 + "1")
    assert evaluate("+".join(["1"] * 90), {}) == 90


# --- runtime bounds: loops and memory bombs refused before allocating -------------------------------


def test_step_budget_stops_nested_loops() -> None:
    start = time.perf_counter()
    assert _reason("sum(1 for a in range(10**4) for b in range(10**4))").startswith("step budget of 100000")
    assert time.perf_counter() - start < 2


def test_huge_range_is_refused_before_iterating() -> None:
    assert _reason("sum(range(10**12))").startswith("range() of 1000000000000 items exceeds the limit")


def test_string_repetition_bomb() -> None:
    assert _reason("'a' * 10**10") == "repetition would build 10000000000 items; the limit is 100000"


def test_list_repetition_bomb() -> None:
    assert _reason("[0] * 10**9") == "repetition would build 1000000000 items; the limit is 100000"


def test_power_tower_bomb() -> None:
    assert _reason("10**10**10") == "10 ** 10000000000 would exceed the 256-bit integer limit"
    assert "256-bit" in _reason("1 << 10**9")


def test_join_and_comprehension_growth_are_bounded() -> None:
    assert "join would build" in _reason("''.join(['a' * 100000] * 2)")
    assert "step budget" in _reason("[('x' * 99999) for i in range(100)]")


@pytest.mark.parametrize(
    "bomb",
    [
        "[list(range(5000))] * 5000 == [list(range(5000))] * 5000",  # shared rows, deep == in C
        "sorted([list(range(3000))] * 3000)",  # n log n deep comparisons
        "len(set([tuple(range(3000))] * 3000))",  # tuple hashes are not cached
        "sum(1 for i in range(20000) if 'a' in range(99999))",  # linear scan per test
        "sum(1 for i in range(5000) if [[0]] * 99999 == 1)",  # many tiny containers to weigh
    ],
)
def test_c_level_work_is_charged_to_the_step_budget(bomb: str) -> None:
    start = time.perf_counter()
    assert _reason(bomb).startswith("step budget of 100000 exceeded")
    assert time.perf_counter() - start < 1


def test_int_of_long_digit_string_is_refused() -> None:
    assert _reason("int('9' * 300)") == "int() of a string longer than 256 characters"


def test_realistic_predicates_fit_the_budget_on_a_retail_sized_db() -> None:
    orders = {
        f"#W{i}": {"status": "pending", "user_id": f"u{i % 500}", "items": [{"price": 1.5}] * 5}
        for i in range(1000)
    }
    users = {f"u{i}": {"orders": [f"#W{i}", f"#W{i + 500}"]} for i in range(500)}
    big = {"db": {"orders": orders, "users": users}}
    assert evaluate("all(o in db['orders'] for u in db['users'].values() for o in u['orders'])", big)
    assert evaluate("len([o for o in db['orders'].values() if sum(i['price'] for i in o['items']) > 5])", big)
    assert evaluate("sorted(db['orders'])[0]", big) == "#W0"
    assert evaluate("db['orders'] != {}", big)


def test_custom_limits_are_honoured() -> None:
    tight = SandboxLimits(max_steps=50)
    assert "step budget of 50" in _reason("sum(x for x in range(100))", tight)
    assert evaluate("sum(x for x in range(100))", {}) == 4950
    with pytest.raises(ValueError):
        SandboxLimits(max_steps=0)
    with pytest.raises(ValueError):  # frozen: a shared limits object cannot be loosened in place
        tight.max_steps = 10**9  # type: ignore[misc]


# --- evaluate_predicate never raises -----------------------------------------------------------------

_TOKENS = [
    "db", '["orders"]', "[", "]", "(", ")", "{", "}", ",", ":", "for", "in", "if", "else", "not", "and",
    "or", "x", "o", "len", "sum", "range", "sorted", ".get", ".values()", ".items()", "'#W1'", "1", "0",
    "10", "**", "*", "+", "-", "/", "//", "%", "==", "<", "lambda", "__class__", ".", "'a'", "None",
]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=120))
def test_evaluate_predicate_never_raises_on_random_text(expr: str) -> None:
    result = evaluate_predicate(expr, {"db": DB})
    assert isinstance(result, PredicateResult)
    assert result.error is None or result.passed is False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), max_size=25).map(" ".join))
def test_evaluate_predicate_never_raises_on_token_soup(expr: str) -> None:
    result = evaluate_predicate(expr, {"db": DB})
    assert isinstance(result, PredicateResult)
    assert result.error is None or result.passed is False


# --- subprocess path ---------------------------------------------------------------------------------


def test_subprocess_correct_result(variables: dict) -> None:
    expr = 'all(o["status"] != "pending" for o in db["orders"].values() if o["user_id"] == "u1")'
    assert evaluate_in_subprocess(expr, variables) == PredicateResult(passed=True, value=True)
    lam = evaluate_in_subprocess('sorted(db["orders"], key=lambda k: -len(k))[0]', variables)
    assert lam == PredicateResult(passed=True, value="#W123")
    missing = evaluate_in_subprocess('db["orders"]["#W999"]', variables)
    assert missing.passed is False and missing.error == "KeyError: '#W999'"


def test_subprocess_timeout_on_cpu_burn() -> None:
    start = time.perf_counter()
    result = evaluate_in_subprocess("sum(range(10**10))", {}, timeout_s=1.0)
    assert result.passed is False and result.error is not None and result.error.startswith("timeout")
    assert time.perf_counter() - start < 4


@pytest.mark.parametrize("bomb", ["len('a' * 10**10)", "[0] * 10**9"])
def test_subprocess_memory_bomb_reported_cleanly(bomb: str) -> None:
    result = evaluate_in_subprocess(bomb, {}, memory_mb=256)
    assert result.passed is False
    assert result.error == "memory limit exceeded: the predicate needed more than 256 MB"


def test_subprocess_refuses_dunder_escape() -> None:
    result = evaluate_in_subprocess("().__class__.__bases__[0].__subclasses__()", {})
    assert result.passed is False and "not allowed" in (result.error or "")
    assert "NameError" in (evaluate_in_subprocess("open('/etc/passwd').read()", {}).error or "")
