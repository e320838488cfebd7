"""Output schemas are published inline and compact, and still mean what pydantic's schemas mean."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Literal

import pytest
from jsonschema.validators import validator_for
from pydantic import BaseModel

from tools.registry import compact_nullables, inline_definitions
from tools.server import profile_tools


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    name: str
    colour: Colour


class Outer(BaseModel):
    kind: Literal["a", "b"] | None = None
    fixed: Literal["only"] | None = None
    inner: Inner | None = None
    colour: Colour | None = None
    inners: list[Inner] = []
    count: int | None = None


class Node(BaseModel):
    value: int
    children: list[Node] = []


def published(model: type[BaseModel]) -> dict[str, Any]:
    return compact_nullables(inline_definitions(model.model_json_schema()))


def accepts(schema: dict[str, Any], instance: Any) -> bool:
    return not list(validator_for(schema)(schema).iter_errors(instance))


INSTANCES = [
    {},
    {"kind": "a", "inner": {"name": "x", "colour": "red"}, "colour": "blue", "count": 3},
    {"kind": None, "inner": None, "colour": None, "count": None, "fixed": None},
    {"fixed": "only", "inners": [{"name": "y", "colour": "blue"}]},
    {"kind": "c"},
    {"fixed": "other"},
    {"inner": {"name": "x", "colour": "green"}},
    {"inner": {"name": "x"}},
    {"inner": "x"},
    {"colour": "green"},
    {"count": "3"},
    {"inners": [None]},
    {"inners": [{"name": 1, "colour": "red"}]},
]


@pytest.mark.parametrize("instance", INSTANCES, ids=json.dumps)
def test_the_published_schema_accepts_exactly_what_pydantics_accepts(instance: dict[str, Any]) -> None:
    assert accepts(published(Outer), instance) == accepts(Outer.model_json_schema(), instance)


def test_references_are_inlined_and_nullables_are_type_lists() -> None:
    schema = published(Outer)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    properties = schema["properties"]
    assert not any("anyOf" in properties[name] for name in ("kind", "inner", "colour", "count"))
    assert properties["inner"]["type"] == ["object", "null"] and "name" in properties["inner"]["properties"]
    assert properties["colour"]["enum"] == ["red", "blue", None]
    assert properties["kind"]["enum"] == ["a", "b", None]
    assert properties["count"]["type"] == ["integer", "null"]


def test_a_constant_that_may_be_null_keeps_its_any_of() -> None:
    fixed = published(Outer)["properties"]["fixed"]
    assert fixed["anyOf"] == [{"const": "only", "type": "string"}, {"type": "null"}]


def test_a_recursive_schema_keeps_its_definitions() -> None:
    schema = inline_definitions(Node.model_json_schema())
    assert schema == Node.model_json_schema()
    assert accepts(schema, {"value": 1, "children": [{"value": 2, "children": []}]})
    assert not accepts(schema, {"value": 1, "children": [{"value": "two"}]})


def test_every_tool_publishes_an_inline_schema() -> None:
    for spec in profile_tools("all"):
        schema = spec.tool.output_schema
        assert schema is not None and schema["type"] == "object", spec.name
        assert "$ref" not in json.dumps(schema), f"{spec.name} still refers to a definition"
