"""Copy-on-write DB state: transactions, forks, overlay comparison, tau2 hashes, table views."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from eigendspy.state import BaseDB, DBState, DBView, TableView, Transaction, describe_differences, tau2_hash


class Row(BaseModel):
    name: str
    qty: int = 0
    tags: list[str] = Field(default_factory=list)


class Settings(BaseModel):
    currency: str = "USD"
    limit: float = 1.0


class TinyDB(BaseModel):
    rows: dict[str, Row]
    log: list[str]
    version: int
    settings: Settings


def make_db() -> TinyDB:
    return TinyDB(
        rows={"a": Row(name="alpha", qty=1, tags=["x"]), "b": Row(name="beta", qty=2)},
        log=["created"],
        version=1,
        settings=Settings(),
    )


@pytest.fixture
def base() -> BaseDB:
    return BaseDB(make_db())


def write(state: DBState, fn) -> None:  # noqa: ANN001
    """Run ``fn(view)`` in a transaction and commit it."""
    txn = Transaction(state)
    fn(DBView(state, txn))
    txn.commit()


def test_tau2_hash_is_sha256_of_sorted_json():
    obj = {"b": 1, "a": [1, 2, {"z": None, "y": 1.5}]}
    expected = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    assert tau2_hash(obj) == expected
    assert tau2_hash({"a": [1, 2, {"y": 1.5, "z": None}], "b": 1}) == expected
    assert tau2_hash({"a": 1}) != tau2_hash({"a": "1"})


def test_layout_tables_and_units(base):
    assert base.layout.tables == {"rows"}
    assert set(base.layout.unit_adapters) == {"log", "version", "settings"}
    assert base.layout.row_models["rows"] is Row


def test_pristine_state_dumps_and_hashes_like_the_model(base):
    state = DBState(base)
    assert state.is_pristine
    assert state.dump() == make_db().model_dump()
    assert state.hash() == tau2_hash(make_db().model_dump())
    assert state.to_model() == make_db()


# --------------------------------------------------------------------------- transactions


def test_transaction_writes_are_invisible_until_commit(base):
    state = DBState(base)
    before = state.hash()
    txn = Transaction(state)
    view = DBView(state, txn)
    view.rows["a"].qty = 50
    view.rows["a"].tags.append("y")
    view.rows["n"] = Row(name="new", qty=9)
    del view.rows["b"]
    view.log.append("edited")
    view.version = 2
    view.settings.currency = "EUR"

    # the transaction sees its own writes ...
    assert view.rows["a"].qty == 50 and view.rows["a"].tags == ["x", "y"]
    assert "n" in view.rows and "b" not in view.rows
    assert sorted(view.rows) == ["a", "n"] and len(view.rows) == 2
    assert view.log == ["created", "edited"] and view.version == 2 and view.settings.currency == "EUR"
    # ... nobody else does
    reader = DBView(state)
    assert state.is_pristine
    assert reader.rows["a"].qty == 1 and reader.rows["a"].tags == ["x"]
    assert "n" not in reader.rows and "b" in reader.rows and len(reader.rows) == 2
    assert reader.log == ["created"] and reader.version == 1 and reader.settings.currency == "USD"
    assert state.row("rows", "a").qty == 1
    assert state.hash() == before

    txn.commit()
    assert not state.is_pristine
    assert reader.rows["a"].qty == 50 and reader.rows["a"].tags == ["x", "y"]
    assert set(reader.rows) == {"a", "n"} and reader.rows["n"].name == "new"
    assert reader.log == ["created", "edited"] and reader.version == 2 and reader.settings.currency == "EUR"
    assert state.hash() != before
    # the shared, parsed base model is never touched
    assert base.model == make_db()
    assert base.dump() == make_db().model_dump()


def test_abandoned_transaction_leaves_no_trace(base):
    state = DBState(base)
    txn = Transaction(state)
    view = DBView(state, txn)
    view.rows["a"].qty = 7
    view.version = 5
    del txn  # never committed
    assert state.is_pristine
    assert DBView(state).rows["a"].qty == 1 and DBView(state).version == 1
    assert base.model == make_db()


# --------------------------------------------------------------------------- forks


def test_forks_are_independent_and_the_base_is_untouched(base):
    parent = DBState(base)
    write(parent, lambda v: setattr(v.rows["a"], "qty", 10))
    child = parent.fork()
    assert child.same_as(parent) and child.hash() == parent.hash()

    write(child, lambda v: setattr(v.rows["a"], "qty", 20))
    write(child, lambda v: v.rows.__setitem__("c", Row(name="gamma")))
    write(child, lambda v: v.log.append("child"))
    assert DBView(parent).rows["a"].qty == 10
    assert "c" not in DBView(parent).rows
    assert DBView(parent).log == ["created"]

    write(parent, lambda v: v.rows.__delitem__("b"))
    write(parent, lambda v: setattr(v, "version", 3))
    assert "b" in DBView(child).rows
    assert DBView(child).version == 1
    assert DBView(child).rows["a"].qty == 20

    assert not parent.same_as(child)
    assert base.model == make_db()
    assert base.dump() == make_db().model_dump()
    assert DBState(base).hash() == tau2_hash(make_db().model_dump())


# --------------------------------------------------------------------------- same_as and hash


def _mirror_hash(mutate) -> str:  # noqa: ANN001
    model = make_db()
    mutate(model)
    return tau2_hash(model.model_dump())


def test_same_as_after_equal_write_real_change_and_independent_equal_changes(base):
    pristine = DBState(base)

    equal = DBState(base)
    write(equal, lambda v: setattr(v.rows["a"], "qty", 1))  # same value as before
    write(equal, lambda v: setattr(v, "version", 1))
    assert not equal.is_pristine
    assert equal.same_as(pristine) and pristine.same_as(equal)
    assert equal.hash() == pristine.hash() == tau2_hash(make_db().model_dump())

    changed = DBState(base)
    write(changed, lambda v: setattr(v.rows["a"], "qty", 2))
    assert not changed.same_as(pristine) and not pristine.same_as(changed)
    assert changed.hash() != pristine.hash()
    assert changed.hash() == _mirror_hash(lambda m: setattr(m.rows["a"], "qty", 2))

    def edits(v):  # noqa: ANN001, ANN202
        v.rows["a"].qty = 5
        v.rows["z"] = Row(name="zed", tags=["t"])
        del v.rows["b"]
        v.log.append("more")
        v.settings.limit = 2.5

    def mirror(m):  # noqa: ANN001, ANN202
        m.rows["a"].qty = 5
        m.rows["z"] = Row(name="zed", tags=["t"])
        del m.rows["b"]
        m.log.append("more")
        m.settings.limit = 2.5

    one, two = DBState(base), DBState(base)
    write(one, edits)
    # the same end state reached by a different path, in several transactions
    write(two, lambda v: v.log.append("more"))
    write(two, lambda v: v.rows.__setitem__("z", Row(name="zed", tags=[])))
    write(two, lambda v: v.rows["z"].tags.append("t"))
    write(two, lambda v: v.rows.__delitem__("b"))
    write(two, lambda v: setattr(v.rows["a"], "qty", 4))
    write(two, lambda v: setattr(v.rows["a"], "qty", 5))
    write(two, lambda v: setattr(v.settings, "limit", 2.5))
    assert one.same_as(two) and two.same_as(one)
    assert one.hash() == two.hash() == _mirror_hash(mirror)
    assert one.to_model().model_dump() == two.to_model().model_dump()

    # one more unit change breaks equality
    write(two, lambda v: setattr(v, "version", 9))
    assert not one.same_as(two) and one.hash() != two.hash()


def test_insert_then_delete_equals_pristine_and_delete_differs(base):
    pristine = DBState(base)
    s = DBState(base)
    write(s, lambda v: v.rows.__setitem__("tmp", Row(name="tmp")))
    write(s, lambda v: v.rows.__delitem__("tmp"))
    assert s.same_as(pristine) and s.hash() == pristine.hash()

    d = DBState(base)
    write(d, lambda v: v.rows.__delitem__("a"))
    assert not d.same_as(pristine)
    assert d.hash() == _mirror_hash(lambda m: m.rows.pop("a"))
    # deleting and re-inserting the identical row is equal again
    write(d, lambda v: v.rows.__setitem__("a", Row(name="alpha", qty=1, tags=["x"])))
    assert d.same_as(pristine) and d.hash() == pristine.hash()


def test_same_as_across_bases_compares_content():
    s1, s2 = DBState(BaseDB(make_db())), DBState(BaseDB(make_db()))
    assert s1.same_as(s2)
    write(s1, lambda v: setattr(v, "version", 2))
    assert not s1.same_as(s2)
    write(s2, lambda v: setattr(v, "version", 2))
    assert s1.same_as(s2)


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


def _apply(target, op) -> None:  # noqa: ANN001
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


def _run(state: DBState, mirror: TinyDB, txns) -> TinyDB:  # noqa: ANN001
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


# --------------------------------------------------------------------------- table views


def test_table_view_with_inserts_and_deletes(base):
    state = DBState(base)
    write(state, lambda v: v.rows.__setitem__("c", Row(name="gamma")))
    write(state, lambda v: v.rows.__delitem__("a"))
    table = DBView(state).rows
    assert isinstance(table, TableView)
    assert len(table) == 2
    assert list(table) == ["b", "c"]
    assert "c" in table and "b" in table and "a" not in table
    assert 1 not in table and None not in table
    assert table.get("c").name == "gamma"
    assert table.get("a") is None and table.get("a", "dflt") == "dflt"
    assert table["b"].name == "beta"
    with pytest.raises(KeyError):
        table["a"]
    assert dict(table.items()).keys() == {"b", "c"}
    assert "2 rows" in repr(table)

    txn = Transaction(state)
    wt = DBView(state, txn).rows
    wt["d"] = Row(name="delta")
    del wt["b"]
    wt["a"] = Row(name="again")
    assert list(wt) == ["a", "c", "d"]
    assert len(wt) == 3 and "b" not in wt and "a" in wt and "d" in wt
    assert wt.get("b") is None and wt.get("d").name == "delta"
    with pytest.raises(KeyError):
        del wt["b"]
    with pytest.raises(KeyError):
        del wt["missing"]
    with pytest.raises(KeyError):
        wt["b"]
    assert len(DBView(state).rows) == 2  # still uncommitted
    txn.commit()
    assert sorted(DBView(state).rows) == ["a", "c", "d"]
    assert DBView(state).rows["a"].name == "again"


def test_writable_view_copies_rows_before_mutation(base):
    state = DBState(base)
    txn = Transaction(state)
    row = DBView(state, txn).rows["a"]
    assert row is not base.model.rows["a"]
    row.tags.append("mut")
    assert base.model.rows["a"].tags == ["x"]


def test_read_only_view_refuses_writes(base):
    state = DBState(base)
    view = DBView(state)
    with pytest.raises(PermissionError):
        view.rows["x"] = Row(name="x")
    with pytest.raises(PermissionError):
        del view.rows["a"]
    with pytest.raises(PermissionError):
        view.version = 2
    with pytest.raises(PermissionError):
        view.log = []
    assert state.is_pristine and base.model == make_db()

    writable = DBView(state, Transaction(state))
    with pytest.raises(AttributeError):
        writable.rows = {}
    with pytest.raises(AttributeError):
        writable.not_a_field = 1


def test_view_model_dump(base):
    state = DBState(base)
    write(state, lambda v: setattr(v, "version", 4))
    view = DBView(state)
    assert view.model_dump()["version"] == 4
    assert view.model_dump(mode="json")["settings"] == {"currency": "USD", "limit": 1.0}


# --------------------------------------------------------------------------- describe_differences


def test_describe_differences_names_the_changed_leaf(base):
    expected = DBState(base)
    actual = DBState(base)
    assert describe_differences(actual, expected) == []

    write(actual, lambda v: setattr(v.rows["a"], "qty", 5))
    diffs = describe_differences(actual, expected)
    assert diffs == ["rows['a'].qty: expected 1, got 5"]

    write(actual, lambda v: setattr(v.settings, "currency", "EUR"))
    write(actual, lambda v: v.rows.__delitem__("b"))
    diffs = describe_differences(actual, expected)
    assert "settings.currency: expected 'USD', got 'EUR'" in diffs
    assert any(d.startswith("rows['b']") and "<absent>" in d for d in diffs)

    # an equal write is not a difference
    same = DBState(base)
    write(same, lambda v: setattr(v.rows["a"], "qty", 1))
    assert describe_differences(same, expected) == []

    # the limit caps the output
    many = DBState(base)
    for i in range(10):
        write(many, lambda v, i=i: v.rows.__setitem__(f"k{i}", Row(name=str(i))))
    assert len(describe_differences(many, expected, limit=3)) == 3
