"""Shared helpers for the copy-on-write state tests: a tiny DB model, its ``base`` fixture (test
modules load it with ``pytest_plugins = ["tests.core.state_helpers"]``) and a write-and-commit helper."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from eigendspy.core.state import BaseDB, DBState, DBView, Transaction


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


def write(state: DBState, fn) -> None:
    """Run ``fn(view)`` in a transaction and commit it."""
    txn = Transaction(state)
    fn(DBView(state, txn))
    txn.commit()
