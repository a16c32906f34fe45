"""Copy-on-write DB state: transactions, forks, overlay comparison and tau2 hashes."""

from __future__ import annotations

import hashlib
import json

from eigendspy.core.state import BaseDB, DBState, DBView, Transaction, tau2_hash
from tests.core.state_helpers import Row, make_db, write

# the shared ``base`` fixture
pytest_plugins = ["tests.core.state_helpers"]


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


def _mirror_hash(mutate) -> str:
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

    def edits(v):
        v.rows["a"].qty = 5
        v.rows["z"] = Row(name="zed", tags=["t"])
        del v.rows["b"]
        v.log.append("more")
        v.settings.limit = 2.5

    def mirror(m):
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
