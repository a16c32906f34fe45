"""Copy-on-write DB state: property test of the overlay against a materialized model."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from eigendspy.core.state import BaseDB, DBState, DBView, Transaction, tau2_hash
from tests.core.state_helpers import Row, TinyDB, make_db

# --------------------------------------------------------------------------- overlay vs materialized model

KEYS = ["a", "b", "c", "d"]
op_strategy = st.one_of(
    st.tuples(st.just("qty"), st.sampled_from(KEYS), st.integers(0, 3)),
    st.tuples(st.just("insert"), st.sampled_from(KEYS), st.sampled_from(["alpha", "beta", "new"])),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("tag"), st.sampled_from(KEYS), st.sampled_from(["x", "y"])),
    st.tuples(st.just("log"), st.sampled_from(["created", "e"])),
    st.tuples(st.just("pop_log")),
    st.tuples(st.just("version"), st.integers(1, 2)),
    st.tuples(st.just("currency"), st.sampled_from(["USD", "EUR"])),
)
txn_strategy = st.tuples(st.lists(op_strategy, max_size=4), st.booleans())


def _apply(target, op) -> None:
    """Apply one op to a writable DBView or to a plain TinyDB (the same code drives both)."""
    kind = op[0]
    rows = target.rows
    if kind == "qty" and op[1] in rows:
        rows[op[1]].qty = op[2]
    elif kind == "insert":
        rows[op[1]] = Row(name=op[2])
    elif kind == "delete" and op[1] in rows:
        del rows[op[1]]
    elif kind == "tag" and op[1] in rows:
        rows[op[1]].tags.append(op[2])
    elif kind == "log":
        target.log.append(op[1])
    elif kind == "pop_log" and target.log:
        target.log.pop()
    elif kind == "version":
        target.version = op[1]
    elif kind == "currency":
        target.settings.currency = op[1]


def _run(state: DBState, mirror: TinyDB, txns) -> TinyDB:
    """Apply transactions to ``state`` and, for committed ones, to a plain copy; return that copy."""
    for ops, commit in txns:
        txn = Transaction(state)
        view = DBView(state, txn)
        scratch = copy.deepcopy(mirror)
        for op in ops:
            if op[0] in ("qty", "insert", "delete", "tag"):
                # the view and the plain model agree on membership at every step
                assert (op[1] in view.rows) == (op[1] in scratch.rows)
            _apply(view, op)
            _apply(scratch, op)
        assert sorted(view.rows) == sorted(scratch.rows) and len(view.rows) == len(scratch.rows)
        if commit:
            txn.commit()
            mirror = scratch
    return mirror


@settings(max_examples=150, deadline=None)
@given(st.lists(txn_strategy, max_size=5), st.lists(txn_strategy, max_size=5))
def test_property_overlay_matches_materialized_model(txns1, txns2):
    base = BaseDB(make_db())
    s1 = DBState(base)
    m1 = _run(s1, make_db(), txns1)
    assert s1.dump() == m1.model_dump()
    assert s1.hash() == tau2_hash(m1.model_dump())
    assert s1.to_model() == m1

    snapshot = s1.hash()
    s2 = s1.fork()
    m2 = _run(s2, copy.deepcopy(m1), txns2)
    assert s2.hash() == tau2_hash(m2.model_dump())
    assert s1.hash() == snapshot  # the fork never leaks back
    assert s1.same_as(s2) == (m1.model_dump() == m2.model_dump()) == (s1.hash() == s2.hash())
    assert s2.same_as(s1) == s1.same_as(s2)

    fresh = DBState(base)
    s3 = DBState(base)
    m3 = _run(s3, make_db(), txns2)
    assert s3.same_as(fresh) == (m3.model_dump() == make_db().model_dump())
    assert base.model == make_db() and base.dump() == make_db().model_dump()
