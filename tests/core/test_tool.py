"""The @tool decorator: docstring parsing, JSON schema derivation, kinds, and the mock domain vs tau2."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from eigendspy.core.tool import ToolError, ToolKind, ToolSpec, parse_docstring, tool
from eigendspy.domains import get_domain
from tests.core.tool_helpers import DB, Address

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
