"""The @tool decorator: docstring parsing, JSON schema derivation, kinds, and signature checks."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from eigendspy.domains import get_domain
from eigendspy.environment import Environment
from eigendspy.ids import IdSource
from eigendspy.tool import (
    EnvFunction,
    ToolError,
    ToolKind,
    ToolSpec,
    assertion,
    env_function,
    parse_docstring,
    tool,
)
from eigendspy.trajectory import ToolCall

# --------------------------------------------------------------------------- docstrings


def test_parse_docstring_summary_args_and_ignored_sections():
    doc = """Summary line of the tool.

    A second paragraph that
    spans two lines.

    Args:
        order_id: The order id, such as '#W0000000'.
        item_ids (list[str]): The item ids to return.
            Each id must belong to the order.
              Indented deeper: still the same argument.
        payment_method_id: Where the refund goes.

    Returns:
        order_id: looks like an argument but belongs to Returns.

    Raises:
        ToolError: if the order is not delivered.
    """
    parsed = parse_docstring(doc)
    assert parsed.description == "Summary line of the tool.\n\nA second paragraph that\nspans two lines."
    assert parsed.arg_descriptions == {
        "order_id": "The order id, such as '#W0000000'.",
        "item_ids": (
            "The item ids to return.\n"
            "Each id must belong to the order.\n"
            "Indented deeper: still the same argument."
        ),
        "payment_method_id": "Where the refund goes.",
    }


def test_parse_docstring_description_on_next_line_and_alias_headers():
    doc = """Do it.

    Arguments:
        x:
            The x value,
            over two lines.
        *rest: Ignored stars are stripped.
    Raises:
        ValueError: never an argument.
    """
    parsed = parse_docstring(doc)
    assert parsed.description == "Do it."
    assert parsed.arg_descriptions == {
        "x": "The x value,\nover two lines.",
        "rest": "Ignored stars are stripped.",
    }


@pytest.mark.parametrize("doc", [None, "", "   \n  "])
def test_parse_docstring_empty(doc):
    parsed = parse_docstring(doc)
    assert parsed.description == ""
    assert parsed.arg_descriptions == {}


def test_parse_docstring_only_summary_keeps_blank_line_structure():
    parsed = parse_docstring("Transfer the user.\n\nOnly transfer if\n -  asked\n -  stuck.")
    assert parsed.description == "Transfer the user.\n\nOnly transfer if\n -  asked\n -  stuck."
    assert parsed.arg_descriptions == {}


# --------------------------------------------------------------------------- schemas


class Address(BaseModel):
    street: str
    zip: str


class DB(BaseModel):
    items: dict[str, Address] = {}


@tool(kind="write")
def everything(
    db: DB,
    name: str,
    count: int,
    ratio: float,
    flag: bool,
    tags: list[str],
    mode: Literal["fast", "slow"],
    address: Address,
    note: str | None = None,
    level: int = 3,
) -> str:
    """Exercise every argument type.

    Args:
        name: The name.
        count: How many.
        ratio: A ratio,
            over two lines.
        flag: A flag.
        tags: Some tags.
        mode: The mode.
        address: Where.
        note: Optional note.
        level: A level with a default.

    Returns:
        Nothing useful.
    """
    return "ok"


def test_schema_of_every_argument_type():
    spec = everything
    assert isinstance(spec, ToolSpec)
    assert spec.name == "everything"
    assert spec.kind is ToolKind.WRITE and spec.mutates_state
    assert spec.arg_names == ("name", "count", "ratio", "flag", "tags", "mode", "address", "note", "level")
    assert spec.required == frozenset({"name", "count", "ratio", "flag", "tags", "mode", "address"})
    schema = spec.openai_schema
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "everything"
    assert fn["description"] == "Exercise every argument type."
    params = fn["parameters"]
    assert params["title"] == "parameters"
    assert params["type"] == "object"
    assert params["required"] == ["name", "count", "ratio", "flag", "tags", "mode", "address"]
    props = params["properties"]
    assert props["name"] == {"description": "The name.", "title": "Name", "type": "string"}
    assert props["count"] == {"description": "How many.", "title": "Count", "type": "integer"}
    assert props["ratio"] == {"description": "A ratio,\nover two lines.", "title": "Ratio", "type": "number"}
    assert props["flag"] == {"description": "A flag.", "title": "Flag", "type": "boolean"}
    assert props["tags"] == {
        "description": "Some tags.",
        "items": {"type": "string"},
        "title": "Tags",
        "type": "array",
    }
    assert props["mode"] == {
        "description": "The mode.",
        "enum": ["fast", "slow"],
        "title": "Mode",
        "type": "string",
    }
    assert props["note"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
        "description": "Optional note.",
        "title": "Note",
    }
    assert props["level"] == {
        "default": 3,
        "description": "A level with a default.",
        "title": "Level",
        "type": "integer",
    }
    # a nested pydantic model is a $ref into $defs, with its own schema
    assert props["address"]["$ref"] == "#/$defs/Address"
    assert props["address"]["description"] == "Where."
    assert params["$defs"]["Address"] == {
        "properties": {
            "street": {"title": "Street", "type": "string"},
            "zip": {"title": "Zip", "type": "string"},
        },
        "required": ["street", "zip"],
        "title": "Address",
        "type": "object",
    }
    # the db parameter is never part of the schema
    assert "db" not in props
    # the whole schema is JSON-serializable (it goes on the wire)
    json.dumps(schema)


def test_tau2_style_none_default_on_str_is_a_plain_string_with_null_default():
    @tool
    def f(db: DB, description: str = None) -> str:  # type: ignore[assignment]
        """F.

        Args:
            description: Optional.
        """
        return ""

    props = f.parameters_schema["properties"]
    assert props["description"] == {
        "default": None,
        "description": "Optional.",
        "title": "Description",
        "type": "string",
    }
    assert "required" not in f.parameters_schema


def test_argument_without_docstring_entry_has_no_description_and_no_args_schema_is_empty():
    @tool
    def g(db: DB, x: int) -> int:
        """G."""
        return x

    @tool
    def h(db: DB) -> str:
        """H."""
        return ""

    assert g.parameters_schema["properties"]["x"] == {"title": "X", "type": "integer"}
    assert h.parameters_schema == {"properties": {}, "title": "parameters", "type": "object"}


def test_decorator_forms_name_override_and_kinds():
    @tool
    def plain(db: DB) -> str:
        """Plain."""
        return ""

    @tool(kind=ToolKind.GENERIC, name="renamed")
    def other(db: DB) -> str:
        """Other."""
        return ""

    @tool(kind="think")
    def think(db: DB, thought: str) -> str:
        """Think."""
        return ""

    assert plain.kind is ToolKind.READ and not plain.mutates_state
    assert other.name == "renamed" and other.kind is ToolKind.GENERIC and not other.mutates_state
    assert other.openai_schema["function"]["name"] == "renamed"
    assert think.kind is ToolKind.THINK and not think.mutates_state
    assert repr(other) == "ToolSpec('renamed', kind=generic)"
    with pytest.raises(ValueError):
        tool(kind="delete")(lambda db: None)


def test_tool_is_still_callable_as_a_function():
    assert (
        everything(
            DB(),
            name="n",
            count=1,
            ratio=0.5,
            flag=True,
            tags=[],
            mode="fast",
            address=Address(street="s", zip="z"),
        )
        == "ok"
    )


def test_tool_error_is_an_exception():
    assert issubclass(ToolError, Exception)
    assert str(ToolError("User u not found")) == "User u not found"


# --------------------------------------------------------------------------- the mock domain vs tau2


def test_mock_schemas_equal_tau2_exactly(tau2_dir):
    expected = json.loads((tau2_dir / "mock" / "tool_schemas.json").read_text())
    for domain in (get_domain("mock"), get_domain("mock", data_dir=tau2_dir / "mock")):
        assert domain.tool_schemas("assistant") == expected["assistant"]
        assert domain.tool_schemas("user") == expected["user"]
        # the key order of the schema itself also matches (models see the serialized text)
        assert json.dumps(domain.tool_schemas("assistant")) == json.dumps(expected["assistant"])
        assert json.dumps(domain.tool_schemas("user")) == json.dumps(expected["user"])


def test_mock_kinds_equal_tau2_tool_meta(tau2_dir):
    expected = json.loads((tau2_dir / "mock" / "tool_schemas.json").read_text())["tool_meta"]
    domain = get_domain("mock", data_dir=tau2_dir / "mock")
    assert domain.toolkit.tool_meta() == expected["assistant"]
    assert domain.user_toolkit.tool_meta() == expected["user"]
    for name, meta in expected["assistant"].items():
        assert domain.toolkit[name].kind.value == meta["tool_type"]
        assert domain.toolkit.mutates_state(name) is meta["mutates_state"]
    for name, meta in expected["user"].items():
        assert domain.user_toolkit[name].kind.value == meta["tool_type"]


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
    def f(db, good: int, bad) -> str:  # noqa: ANN001
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
    from eigendspy.domain import Domain

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
