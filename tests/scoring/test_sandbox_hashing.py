"""Ordinary predicates over sets, dicts and keys views keep Python's semantics under the collision and
size checks (tests/scoring/test_sandbox_dos.py covers the refusals)."""

from __future__ import annotations

import copy

import pytest

from eigendspy.scoring.sandbox.predicate import evaluate, evaluate_in_subprocess, evaluate_predicate

DB = {
    "orders": {
        "#W1": {"status": "delivered", "user_id": "u1", "payment_history": [{"amount": 12}]},
        "#W2": {"status": "pending", "user_id": "u2", "payment_history": []},
        "#W3": {"status": "pending", "user_id": "u1", "payment_history": []},
    },
    "users": {"u1": {"orders": ["#W1", "#W3"]}, "u2": {"orders": ["#W2"]}},
}


@pytest.fixture
def variables() -> dict:
    return {"db": copy.deepcopy(DB)}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('len(set(o["user_id"] for o in db["orders"].values()))', 2),
        ('{o["status"] for o in db["orders"].values()}', {"delivered", "pending"}),
        ('frozenset(u for u in db["users"])', frozenset({"u1", "u2"})),
        ('{k: o["user_id"] for k, o in db["orders"].items()}["#W3"]', "u1"),
        ('{"a": 1, "b": 2, "a": 3}', {"a": 3, "b": 2}),
        ("{1, 1.0, True, 2}", {1, 2}),
        ('len(set(["u1"] * 50000))', 1),
        ("set([-1, -2] * 1000)", {-1, -2}),  # hash(-1) == hash(-2): equal hashes, only two distinct keys
        ("len(set((a, b, c) for a in (-1, -2) for b in (-1, -2) for c in (-1, -2)))", 8),
        ('dict(zip(["a", "b"], [1, 2]))', {"a": 1, "b": 2}),
        ('dict([("a", 1), ["b", 2]])', {"a": 1, "b": 2}),
        ('dict(db["users"])["u2"]', {"orders": ["#W2"]}),
        ('dict(enumerate("ab"))', {0: "a", 1: "b"}),
        ('dict(["xy"])', {"x": "y"}),
        ("dict()", {}),
        ('db["orders"].keys() & {"#W1", "#W2", "#W9"}', {"#W1", "#W2"}),
        ('db["orders"].keys() | {"#W9"}', {"#W1", "#W2", "#W3", "#W9"}),
        ('db["orders"].keys() - ["#W1"]', {"#W2", "#W3"}),
        ('db["orders"].keys() ^ db["users"]["u1"]["orders"]', {"#W2"}),
        ('["#W1", "#W7"] - db["orders"].keys()', {"#W7"}),
        ('db["users"].keys() & (u for u in ["u2", "u3"])', {"u2"}),
        ('db["users"].keys() <= {"u1", "u2", "u3"}', True),
        ('db["users"].keys() == {"u1", "u2"}', True),
        ('db["orders"]["#W1"].items() & {("status", "delivered")}', {("status", "delivered")}),
        ('{"u1"} | set(db["users"]) - {"u2"}', {"u1"}),
        ("{1, 2} ^ {2, 3}", {1, 3}),
        ('set().union(["a"], ("b",), "c")', {"a", "b", "c"}),
        ("{1, 2}.issubset(range(5)) and {9}.isdisjoint(x for x in range(3))", True),
        ("frozenset([3, 1]).intersection([1, 2], {1})", frozenset({1})),
        ('sorted(set(db["orders"]) & {u for u in db["users"]["u1"]["orders"]})', ["#W1", "#W3"]),
    ],
)
def test_hashed_containers_keep_python_semantics(variables: dict, expr: str, expected: object) -> None:
    assert evaluate(expr, variables) == expected


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ('db["orders"]["#W1"].items() | {("a", 1)}', "TypeError: unhashable type: 'list'"),
        ("{[1]: 2}", "TypeError: unhashable type: 'list'"),
        ("set([[1]])", "TypeError: unhashable type: 'list'"),
        ("dict([(1, 2, 3)])", "ValueError"),
        ("dict([1])", "TypeError"),
        ("{1} | [2]", "TypeError: unsupported operand"),
        ("{}.keys() | 5", "TypeError"),
    ],
)
def test_python_errors_still_surface(variables: dict, expr: str, error: str) -> None:
    result = evaluate_predicate(expr, variables)
    assert not result.passed and (result.error or "").startswith(error), result.error


def test_results_never_alias_the_variables(variables: dict) -> None:
    users = evaluate('db["users"]', variables)
    assert users == DB["users"] and users is not variables["db"]["users"]
    users["u1"]["orders"].append("#W9")
    rows = evaluate('[o for o in db["orders"].values() if o["user_id"] == "u1"]', variables)
    rows[0]["status"] = "cancelled"
    result = evaluate_predicate('db["orders"]["#W1"]', variables)
    result.value["payment_history"].clear()
    assert variables["db"] == DB


def test_subprocess_variant_is_bounded_by_its_timeout_on_colliding_keys() -> None:
    expr = "len(set(range(0, 90000 * (2**61 - 1), 2**61 - 1)))"
    result = evaluate_in_subprocess(expr, {}, timeout_s=1.0)
    assert not result.passed and (result.error or "").startswith("timeout"), result.error
