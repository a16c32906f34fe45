"""Denial-of-service paths through the predicate sandbox: colliding hash keys, uncharged set algebra and
slow-but-legal work must all end in a clear refusal within a small CPU-time bound.

Why these inputs: on 64-bit CPython every multiple of ``2**61 - 1`` hashes to 0, so sets and dicts
built from them probe a chain as long as the container for every insert (quadratic work inside one
C call), and ``range(0, n * M, M)`` produces such keys for one step each.
"""

from __future__ import annotations

import time

import pytest

from eigendspy.scoring.sandbox.predicate import PredicateResult, SandboxLimits, evaluate_predicate

M = 2**61 - 1  # hash(i * M) == 0 for every int i on 64-bit CPython
R = "range(0, {n} * (2**61 - 1), 2**61 - 1)"  # n distinct ints sharing one hash value
CPU_BOUND_S = 2.0


def _refused(expr: str, variables: dict | None = None, limits: SandboxLimits | None = None) -> PredicateResult:
    """Evaluate and assert a SandboxError failure that took under `CPU_BOUND_S` of this process's CPU."""
    start = time.process_time()
    result = evaluate_predicate(expr, variables or {}, limits)
    elapsed = time.process_time() - start
    assert not result.passed and result.value is None, result
    assert result.error is not None and result.error.startswith("SandboxError"), result.error
    assert elapsed < CPU_BOUND_S, f"took {elapsed:.2f} s of CPU"
    return result


def test_hash_collisions_are_possible_on_this_platform() -> None:
    assert {hash(i * M) for i in range(100)} == {0}


# --- hashed containers and set algebra over colliding keys ------------------------------------------

# Each path, written for n colliding keys ({r}), with the n at which the unpatched sandbox spent
# seconds to minutes of CPU inside its step budget.
PATHS = {
    "set_comprehension": ("len({{x for x in {r}}})", 20000),
    "dict_comprehension": ("len({{x: 0 for x in {r}}})", 20000),
    "set_builtin": ("len(set({r}))", 90000),
    "frozenset_builtin": ("len(frozenset({r}))", 90000),
    "dict_builtin": ("len(dict(zip({r}, range({n}))))", 45000),
    "dict_builtin_from_generator": ("len(dict((x, 0) for x in {r}))", 15000),
    "set_builtin_from_generator": ("len(set(x * m for x in range({n})))", 19000),
    "membership_in_colliding_set": ("sum(1 for s in [set({r})] for x in range({n} * m, 28000 * m, m) if x in s)", 8000),
    "keys_or": ("len({{}}.keys() | {r})", 90000),
    "keys_xor": ("len({{0: 0}}.keys() ^ {r})", 90000),
    "reflected_keys_sub": ("len({r} - {{0: 0}}.keys())", 90000),
    "keys_and": ("len({{}}.keys() & {r})", 90000),
    "items_or": ("len({{}}.items() | zip({r}, [0] * {n}))", 90000),
    "keys_or_generator": ("len({{}}.keys() | (x for x in {r}))", 20000),
    "set_union_method": ("len(set().union({r}))", 90000),
    "frozenset_xor_method": ("len(frozenset().symmetric_difference({r}))", 90000),
    "set_issubset_method": ("set().issubset({r})", 90000),
}


def _path(name: str, n: int | None = None) -> str:
    template, big = PATHS[name]
    n = big if n is None else n
    return template.format(r=R.format(n=n), n=n)


@pytest.mark.parametrize("name", PATHS)
def test_colliding_keys_at_dos_sizes_are_refused_quickly(name: str) -> None:
    result = _refused(_path(name), {"m": M})  # whichever limit trips first, it trips within the bound
    assert "share one hash value" in (result.error or "") or "step budget" in (result.error or "")


@pytest.mark.parametrize("name", PATHS)
def test_colliding_keys_are_refused_with_a_clear_reason(name: str) -> None:
    result = _refused(_path(name, n=100), {"m": M})
    assert "more than 64 distinct keys share one hash value" in (result.error or "")


@pytest.mark.parametrize(
    "expr",
    [
        pytest.param("{" + ", ".join(f"{i} * m" for i in range(70)) + "}", id="set_display"),
        pytest.param("{" + ", ".join(f"{i} * m: 0" for i in range(70)) + "}", id="dict_display"),
        pytest.param("{(i * m, 'x') for i in range(70)}", id="colliding_tuples"),
        pytest.param("{1} | {i * m for i in range(1, 40)} | {i * m for i in range(40, 70)}", id="set_or_set"),
        pytest.param("{i * m: 0 for i in range(40)} | {i * m: 0 for i in range(40, 70)}", id="dict_merge"),
    ],
)
def test_small_colliding_containers_are_refused_too(expr: str) -> None:
    assert "share one hash value" in (_refused(expr, {"m": M}).error or "")


def test_at_most_64_distinct_keys_may_share_a_hash_value() -> None:
    ok = evaluate_predicate(
        "len({i * m for i in range(64)}) == 64 and len({i * m: i for i in range(64)}) == 64", {"m": M}
    )
    assert ok.passed and ok.error is None
    assert "more than 64 distinct keys share one hash value" in (
        _refused("{i * m for i in range(65)}", {"m": M}).error or ""
    )


# --- set algebra and comparisons on big operands are charged by size -------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        pytest.param("sum(len(d.keys() & d.keys()) for i in range(15000))", id="keys_and"),
        pytest.param("sum(len(d.keys() | d.keys()) for i in range(15000))", id="keys_or"),
        pytest.param("sum(len(d.keys() - d.keys()) for i in range(15000))", id="keys_sub"),
        pytest.param("sum(len(d.keys() ^ d.keys()) for i in range(15000))", id="keys_xor"),
        pytest.param("sum(len(d.items() & d.items()) for i in range(15000))", id="items_and"),
        pytest.param("sum(1 for i in range(15000) if d.keys() <= d.keys())", id="keys_le"),
        pytest.param("sum(1 for i in range(15000) if s >= d.keys())", id="set_ge_keys"),
        pytest.param("sum(len(s & s) for i in range(15000))", id="set_and"),
    ],
)
def test_set_algebra_on_big_operands_is_charged_by_size(expr: str) -> None:
    big = dict.fromkeys(range(10000), 0)
    result = _refused(expr, {"d": big, "s": set(big)})
    assert "step budget" in (result.error or "")


# --- the CPU and wall-clock deadlines stop what the step budget lets through -------------------------------


def test_deadline_stops_a_long_loop_within_a_huge_step_budget() -> None:
    limits = SandboxLimits(max_steps=10**9, max_cpu_seconds=0.2)
    result = _refused("sum(1 for a in range(2000) for b in range(2000))", limits=limits)
    assert "exceeded the CPU time limit of 0.2 s" in (result.error or "")


def test_deadline_stops_lookups_in_a_colliding_set_given_as_a_variable() -> None:
    # Containers the caller passes in are trusted data and not vetted; lookups into a pathological
    # one cost ~5000 comparisons per step. Only the deadline can stop that (the budget is raised so
    # that the step count cannot win on a fast machine).
    colliding = frozenset(i * M for i in range(5000))
    expr = "sum(1 for x in range(5000 * m, 80000 * m, m) if x in s)"
    result = _refused(expr, {"s": colliding, "m": M}, SandboxLimits(max_steps=10**7, max_cpu_seconds=0.1))
    assert "exceeded the CPU time limit of 0.1 s" in (result.error or "")


def test_wall_clock_backstop_stops_an_evaluation_too() -> None:
    limits = SandboxLimits(max_steps=10**9, max_cpu_seconds=100.0, max_seconds=0.1)
    result = _refused("sum(1 for a in range(2000) for b in range(2000))", limits=limits)
    assert "exceeded the time limit of 0.1 s" in (result.error or "")


def test_default_limits_are_a_cpu_second_and_a_wall_backstop_and_must_be_positive() -> None:
    assert SandboxLimits().max_cpu_seconds == 1.0
    assert SandboxLimits().max_seconds > SandboxLimits().max_cpu_seconds
    for field in ("max_cpu_seconds", "max_seconds"):
        with pytest.raises(ValueError):
            SandboxLimits(**{field: 0})
