"""Copy-on-write DB state: table views, read-only and writable views, describe_differences."""

from __future__ import annotations

import pytest

from eigendspy.core.state import DBState, DBView, TableView, Transaction, describe_differences
from tests.core.state_helpers import Row, make_db, write

# the shared ``base`` fixture
pytest_plugins = ["tests.core.state_helpers"]


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
