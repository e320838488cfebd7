"""A small registry of tool functions with their titles and honest annotations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

ToolFn = Callable[..., Awaitable[Any]]
F = TypeVar("F", bound=ToolFn)


@dataclass(frozen=True)
class ToolSpec:
    fn: ToolFn
    title: str
    annotations: ToolAnnotations

    @property
    def name(self) -> str:
        return self.fn.__name__

    @cached_property
    def tool(self) -> Tool:
        """The SDK's tool (argument model, input and output schemas), built once and shared by every server."""
        tool = Tool.from_function(
            self.fn, title=self.title, annotations=self.annotations, structured_output=True
        )
        tool.fn_metadata.output_schema = compact_nullables(inline_definitions(tool.fn_metadata.output_schema))
        return tool


class ToolSet:
    """The tools of one module, in the order they were defined."""

    def __init__(self) -> None:
        self._specs: dict[str, ToolSpec] = {}

    def tool(
        self, title: str, *, read_only: bool = False, destructive: bool = False, idempotent: bool = False
    ) -> Callable[[F], F]:
        """Register a tool. Nothing here reaches outside the coordinator, so open_world is always False."""

        def register(fn: F) -> F:
            self._specs[fn.__name__] = ToolSpec(
                fn,
                title,
                ToolAnnotations(
                    title=title,
                    read_only_hint=read_only,
                    destructive_hint=destructive,
                    idempotent_hint=idempotent or read_only,
                    open_world_hint=False,
                ),
            )
            return fn

        return register

    def __getitem__(self, name: str) -> ToolSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def names(self) -> list[str]:
        return list(self._specs)

    def pick(self, *names: str) -> list[ToolSpec]:
        return [self._specs[n] for n in names]


class _Recursive(Exception):
    """A definition refers to itself: the schema keeps its `$defs`."""


def inline_definitions(schema: Any) -> Any:
    """`schema` with every `$ref` to its own `$defs` replaced by the definition (unless one is recursive).

    Clients that check results against the output schema resolve each `$ref` on every check;
    inline, the same check takes about a third less time, and the schema reads top to bottom.
    """
    if not isinstance(schema, dict) or "$defs" not in schema:
        return schema
    definitions = schema["$defs"]
    body = {key: value for key, value in schema.items() if key != "$defs"}

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen:
                raise _Recursive(name)
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            return {**resolve(definitions[name], (*seen, name)), **resolve(siblings, seen)}
        return {key: resolve(value, seen) for key, value in node.items()}

    try:
        return resolve(body, ())
    except _Recursive:
        return schema


# Keywords that constrain every type: a schema using one cannot simply also admit null.
_TYPE_INDEPENDENT = {"const", "anyOf", "oneOf", "allOf", "not", "$ref", "if"}
_NULL = {"type": "null"}


def compact_nullables(schema: Any) -> Any:
    """`schema` with each `anyOf` of a type and null (pydantic's `X | None`) written as one schema
    whose `type` lists both (an `enum` then also lists null).

    The two forms mean the same, since every other keyword of such a schema only constrains its
    own type; clients that check results against the output schema (the Python SDK does, with
    `jsonschema`) check the compact form about twice as fast, because a failed `anyOf` branch
    builds an error object and results hold many null fields.
    """
    if isinstance(schema, list):
        return [compact_nullables(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    compact = {key: compact_nullables(value) for key, value in schema.items()}
    options = compact.get("anyOf")
    if not isinstance(options, list) or "type" in compact:
        return compact
    outer = {key: value for key, value in compact.items() if key != "anyOf"}
    if all(isinstance(o, dict) and set(o) == {"type"} and isinstance(o["type"], str) for o in options):
        return {**outer, "type": [option["type"] for option in options]}
    others = [option for option in options if option != _NULL]
    if len(options) == 2 and len(others) == 1:
        (other,) = others
        if (
            isinstance(other, dict)
            and isinstance(other.get("type"), str)
            and not _TYPE_INDEPENDENT & set(other)
        ):
            merged = {**other, **outer, "type": [other["type"], "null"]}
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            return merged
    return compact
