"""The @tool decorator: signature checks, injected ids, and env functions/assertions."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from eigendspy.core.environment import Environment
from eigendspy.core.ids import IdSource
from eigendspy.core.messages import ToolCall
from eigendspy.core.tool import EnvFunction, assertion, env_function, tool
from tests.core.tool_helpers import DB, Address

# --------------------------------------------------------------------------- signature errors


def test_tool_without_any_parameter_is_a_type_error():
    def no_db() -> str:
        """No db."""
        return ""

    with pytest.raises(TypeError, match=r"no_db.*database view"):
        tool(no_db)


def test_var_positional_is_a_type_error():
    def f(db: DB, *args: str) -> str:
        """F."""
        return ""

    with pytest.raises(TypeError, match=r"\*args/\*\*kwargs"):
        tool(f)


def test_var_keyword_is_a_type_error():
    def f(db: DB, x: int, **kwargs: Any) -> str:
        """F."""
        return ""

    with pytest.raises(TypeError, match=r"'f'.*\*args/\*\*kwargs"):
        tool(f)


def test_unannotated_argument_is_a_type_error_naming_it():
    def f(db, good: int, bad) -> str:
        """F."""
        return ""

    with pytest.raises(TypeError, match=r"'bad' needs a type hint"):
        tool(f)


def _only_kwargs(**kwargs: Any) -> str:
    """Only kwargs."""
    return ""


def _only_args(*args: Any) -> str:
    """Only args."""
    return ""


def _keyword_only(*, title: str) -> str:
    """Keyword-only.

    Args:
        title: The title.
    """
    return title


@pytest.mark.parametrize("fn", [_only_kwargs, _only_args, _keyword_only], ids=["kwargs", "args", "kwonly"])
def test_first_parameter_must_be_a_positional_db_parameter(fn):
    with pytest.raises(TypeError):
        tool(fn)


# --------------------------------------------------------------------------- injected ids


class Counter(BaseModel):
    minted: dict[str, Address] = {}


@tool(kind="write")
def mint(db: Counter, street: str, ids: IdSource) -> str:
    """Mint a new row id.

    Args:
        street: The street.
    """
    new_id = "A" + ids.hex(8)
    db.minted[new_id] = Address(street=street, zip="00000")
    return new_id


def _counter_domain():
    from eigendspy.core.domain import Domain

    return Domain("counter", Counter, [mint], "policy", lambda: Counter())


def test_ids_parameter_is_hidden_from_schema_and_injected():
    assert mint.injected == ("ids",)
    assert mint.arg_names == ("street",)
    assert mint.required == frozenset({"street"})
    assert set(mint.parameters_schema["properties"]) == {"street"}
    assert mint.parameters_schema["required"] == ["street"]

    env = Environment(_counter_domain())
    first = env.execute(ToolCall(name="mint", arguments={"street": "Main"}))
    second = env.execute(ToolCall(name="mint", arguments={"street": "Side"}))
    assert not first.error and not second.error
    # the default IdSource is a counter (tau2's recorded uuid stub): 00000001, 00000002, ...
    assert (first.content, second.content) == ("A00000001", "A00000002")
    assert set(env.view().minted) == {first.content, second.content}


def test_ids_injection_is_reproducible_per_seed_and_not_model_settable():
    dom = _counter_domain()
    a = Environment(dom, ids=IdSource(seed=7))
    b = Environment(dom, ids=IdSource(seed=7))
    c = Environment(dom, ids=IdSource(seed=8))
    out = [e.execute(ToolCall(name="mint", arguments={"street": "x"})).content for e in (a, b, c)]
    assert out[0] == out[1] != out[2]
    # the model may not pass the injected parameter (nor the db parameter) itself
    for bad in ({"street": "x", "ids": "y"}, {"street": "x", "db": {}}):
        before = a.db_hash()
        msg = a.execute(ToolCall(name="mint", arguments=bad))
        assert msg.error is True
        assert "unexpected keyword argument" in msg.content
        assert a.db_hash() == before


# --------------------------------------------------------------------------- env functions


def test_env_function_and_assertion_registration():
    @env_function
    def seed_row(db: DB, key: str) -> None:
        db.items[key] = Address(street="s", zip="z")

    @env_function(writes=False)
    def peek(db: DB) -> int:
        return len(db.items)

    @assertion
    def has_row(db: DB, key: str) -> bool:
        return key in db.items

    assert isinstance(seed_row, EnvFunction) and seed_row.writes and seed_row.name == "seed_row"
    assert not peek.writes
    assert isinstance(has_row, EnvFunction) and not has_row.writes
    assert has_row.db_param == "db"
    with pytest.raises(TypeError):
        env_function(lambda: None)
