"""Copy-on-write database state: a shared, immutable parsed DB plus a small overlay of writes.

Why: a retail DB takes ~65 ms to deep-copy and ~36 ms to hash on this class of machine, while
scoring a trajectory must cost a few milliseconds and thousands of episodes run at once. So
the parsed DB (a pydantic model) is loaded once and never mutated; each environment keeps only
the rows its write tools touched. Two states over the same base are compared by their
overlays, and tau2's full-DB hash is computed only when someone asks for it.

Model layout: every top-level field of the DB model whose annotation is ``dict[str, Model]`` is
a *table* whose rows are copied individually on write; every other field (lists, singleton
models, scalars) is a *unit* copied whole on write.
"""

from __future__ import annotations

import copy
import hashlib
import json
import typing
from collections.abc import Iterator, MutableMapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

_TOMBSTONE = object()


def tau2_hash(dump: Any) -> str:
    """tau2-bench's state hash: sha256 of ``json.dumps(obj, sort_keys=True, default=str)``."""
    return hashlib.sha256(json.dumps(dump, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class _Layout:
    """Per-DB-model facts computed once: which fields are tables, how to dump units."""

    _cache: dict[type, _Layout] = {}

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.tables: set[str] = set()
        self.row_models: dict[str, type[BaseModel]] = {}
        self.unit_adapters: dict[str, TypeAdapter[Any]] = {}
        for name, field in model.model_fields.items():
            ann = field.annotation
            origin = typing.get_origin(ann)
            args = typing.get_args(ann)
            if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
                self.tables.add(name)
                self.row_models[name] = args[1]
            else:
                self.unit_adapters[name] = TypeAdapter(ann)
        self.fields = tuple(model.model_fields)

    @classmethod
    def of(cls, model: type[BaseModel]) -> _Layout:
        layout = cls._cache.get(model)
        if layout is None:
            layout = cls._cache[model] = cls(model)
        return layout


class BaseDB:
    """A parsed DB shared by many states; its python-mode dump is computed once, on demand."""

    def __init__(self, model: BaseModel) -> None:
        self.model = model
        self.layout = _Layout.of(type(model))
        self._dump: dict[str, Any] | None = None

    def dump(self) -> dict[str, Any]:
        if self._dump is None:
            self._dump = self.model.model_dump()
        return self._dump


class DBState:
    """An effective DB = shared base + overlay of touched rows/units. Cheap to create and fork."""

    def __init__(self, base: BaseDB, tables: dict[str, dict[str, Any]] | None = None,
                 units: dict[str, Any] | None = None) -> None:
        self.base = base
        self.tables: dict[str, dict[str, Any]] = tables if tables is not None else {}
        self.units: dict[str, Any] = units if units is not None else {}

    # -- structure -----------------------------------------------------------------
    def fork(self) -> DBState:
        """A new state with the same effective content; rows are shared until written."""
        return DBState(self.base, {k: dict(v) for k, v in self.tables.items()}, dict(self.units))

    def row(self, table: str, key: str, default: Any = None) -> Any:
        over = self.tables.get(table)
        if over is not None and key in over:
            value = over[key]
            return default if value is _TOMBSTONE else value
        return getattr(self.base.model, table).get(key, default)

    def unit(self, name: str) -> Any:
        if name in self.units:
            return self.units[name]
        return getattr(self.base.model, name)

    def commit(self, tables: dict[str, dict[str, Any]], units: dict[str, Any]) -> None:
        """Apply a finished transaction's writes."""
        for table, rows in tables.items():
            self.tables.setdefault(table, {}).update(rows)
        self.units.update(units)

    @property
    def is_pristine(self) -> bool:
        return not any(self.tables.values()) and not self.units

    # -- comparison and hashing ----------------------------------------------------------
    def same_as(self, other: DBState) -> bool:
        """Whether two states over the same base have identical content (decided from overlays)."""
        if self.base is not other.base:
            return self.dump() == other.dump()
        for table in set(self.tables) | set(other.tables):
            keys = set(self.tables.get(table, ())) | set(other.tables.get(table, ()))
            for key in keys:
                a = self.row(table, key, _TOMBSTONE)
                b = other.row(table, key, _TOMBSTONE)
                if a is not b and (a is _TOMBSTONE or b is _TOMBSTONE or a != b):
                    return False
        for name in set(self.units) | set(other.units):
            if self.unit(name) != other.unit(name):
                return False
        return True

    def dump(self) -> dict[str, Any]:
        """The python-mode ``model_dump()`` of the effective DB (what tau2 hashes)."""
        base = self.base.dump()
        if self.is_pristine:
            return base
        out = dict(base)
        for table, rows in self.tables.items():
            if not rows:
                continue
            merged = dict(base[table])
            for key, value in rows.items():
                if value is _TOMBSTONE:
                    merged.pop(key, None)
                else:
                    merged[key] = value.model_dump()
            out[table] = merged
        for name, value in self.units.items():
            out[name] = self.base.layout.unit_adapters[name].dump_python(value)
        return out

    def hash(self) -> str:
        return tau2_hash(self.dump())

    def to_model(self) -> BaseModel:
        """Materialize the effective DB as a fresh model (slow path: exports, debugging)."""
        return type(self.base.model).model_validate(self.dump())


class Transaction:
    """Writes of one tool call, kept apart until the call succeeds (so errors never half-write)."""

    def __init__(self, state: DBState) -> None:
        self.state = state
        self.tables: dict[str, dict[str, Any]] = {}
        self.units: dict[str, Any] = {}

    def row(self, table: str, key: str, default: Any = None) -> Any:
        rows = self.tables.get(table)
        if rows is not None and key in rows:
            value = rows[key]
            return default if value is _TOMBSTONE else value
        return self.state.row(table, key, default)

    def commit(self) -> None:
        self.state.commit(self.tables, self.units)

    def changes_anything(self) -> bool:
        """Whether committing would change the effective state (a guard for read-only tools)."""
        for table, rows in self.tables.items():
            for key, value in rows.items():
                before = self.state.row(table, key, _TOMBSTONE)
                if value is not before and (value is _TOMBSTONE or before is _TOMBSTONE or value != before):
                    return True
        return any(value != self.state.unit(name) for name, value in self.units.items())


class TableView(MutableMapping[str, Any]):
    """A dict-like view of one table. Writable views copy a row the first time it is read."""

    __slots__ = ("_txn", "_state", "_name", "_writable")

    def __init__(self, state: DBState, txn: Transaction | None, name: str) -> None:
        self._state = state
        self._txn = txn
        self._name = name

    def _base(self) -> dict[str, Any]:
        return getattr(self._state.base.model, self._name)

    def _lookup(self, key: str) -> Any:
        if self._txn is not None:
            return self._txn.row(self._name, key, _TOMBSTONE)
        return self._state.row(self._name, key, _TOMBSTONE)

    def __getitem__(self, key: str) -> Any:
        if self._txn is None:
            value = self._lookup(key)
            if value is _TOMBSTONE:
                raise KeyError(key)
            return value
        rows = self._txn.tables.setdefault(self._name, {})
        if key in rows:
            if rows[key] is _TOMBSTONE:
                raise KeyError(key)
            return rows[key]
        value = self._state.row(self._name, key, _TOMBSTONE)
        if value is _TOMBSTONE:
            raise KeyError(key)
        value = copy.deepcopy(value)
        rows[key] = value
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not _TOMBSTONE

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, TypeError):
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        if self._txn is None:
            raise PermissionError(f"table {self._name!r} is read-only in a non-write tool")
        self._txn.tables.setdefault(self._name, {})[key] = value

    def __delitem__(self, key: str) -> None:
        if self._txn is None:
            raise PermissionError(f"table {self._name!r} is read-only in a non-write tool")
        if key not in self:
            raise KeyError(key)
        self._txn.tables.setdefault(self._name, {})[key] = _TOMBSTONE

    def _keys(self) -> Iterator[str]:
        layers = [self._state.tables.get(self._name) or {}]
        if self._txn is not None:
            layers.append(self._txn.tables.get(self._name) or {})
        if not any(layers):
            yield from self._base()
            return
        seen: set[str] = set()
        for key in self._base():
            seen.add(key)
            if self._lookup(key) is not _TOMBSTONE:
                yield key
        for layer in layers:
            for key in layer:
                if key not in seen:
                    seen.add(key)
                    if self._lookup(key) is not _TOMBSTONE:
                        yield key

    def __iter__(self) -> Iterator[str]:
        return self._keys()

    def __len__(self) -> int:
        return sum(1 for _ in self._keys())

    def __repr__(self) -> str:
        return f"TableView({self._name!r}, {len(self)} rows)"


class DBView:
    """What a tool receives as ``db``: attribute access like the DB model, copy-on-write underneath."""

    __slots__ = ("_state", "_txn")

    def __init__(self, state: DBState, txn: Transaction | None = None) -> None:
        object.__setattr__(self, "_state", state)
        object.__setattr__(self, "_txn", txn)

    def __getattr__(self, name: str) -> Any:
        state: DBState = object.__getattribute__(self, "_state")
        txn: Transaction | None = object.__getattribute__(self, "_txn")
        layout = state.base.layout
        if name in layout.tables:
            return TableView(state, txn, name)
        if name in layout.unit_adapters:
            if txn is None:
                return state.unit(name)
            if name not in txn.units:
                txn.units[name] = copy.deepcopy(state.unit(name))
            return txn.units[name]
        return getattr(state.base.model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        txn: Transaction | None = object.__getattribute__(self, "_txn")
        state: DBState = object.__getattribute__(self, "_state")
        if txn is None:
            raise PermissionError(f"field {name!r} is read-only in a non-write tool")
        if name not in state.base.layout.unit_adapters:
            raise AttributeError(f"cannot replace table or unknown field {name!r}")
        txn.units[name] = value

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        state: DBState = object.__getattribute__(self, "_state")
        if kwargs:
            return state.to_model().model_dump(**kwargs)
        return state.dump()


def describe_differences(actual: DBState, expected: DBState, limit: int = 6) -> list[str]:
    """Readable leaf-level differences between two states over one base (for feedback).

    Only rows touched by either overlay are inspected, so this stays cheap on large DBs.
    """
    out: list[str] = []

    def leaves(a: Any, b: Any, path: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                leaves(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                leaves(x, y, f"{path}[{i}]")
        elif a != b:
            out.append(f"{path}: expected {b!r}, got {a!r}")

    def dump(value: Any) -> Any:
        if value is _TOMBSTONE:
            return "<absent>"
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value

    for table in sorted(set(actual.tables) | set(expected.tables)):
        keys = set(actual.tables.get(table, ())) | set(expected.tables.get(table, ()))
        for key in sorted(keys):
            a = actual.row(table, key, _TOMBSTONE)
            b = expected.row(table, key, _TOMBSTONE)
            if a is not b and (a is _TOMBSTONE or b is _TOMBSTONE or a != b):
                leaves(dump(a), dump(b), f"{table}[{key!r}]")
    for name in sorted(set(actual.units) | set(expected.units)):
        adapter = actual.base.layout.unit_adapters[name]
        a, b = actual.unit(name), expected.unit(name)
        if a != b:
            leaves(adapter.dump_python(a, mode="json"), adapter.dump_python(b, mode="json"), name)
    return out[:limit]
