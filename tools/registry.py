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
        tool.fn_metadata.output_schema = compact_nullables(tool.fn_metadata.output_schema)
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


def compact_nullables(schema: Any) -> Any:
    """`schema` with each `anyOf` of bare types (pydantic's `X | None`) written as one `type` list.

    The two forms mean the same; clients that check results against the output schema (the Python
    SDK does, with `jsonschema`) check the list form about twice as fast, because a failed `anyOf`
    branch builds an error object and results hold many null fields.
    """
    if isinstance(schema, list):
        return [compact_nullables(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    compact = {key: compact_nullables(value) for key, value in schema.items()}
    options = compact.get("anyOf")
    if (
        isinstance(options, list)
        and "type" not in compact
        and all(isinstance(o, dict) and set(o) == {"type"} and isinstance(o["type"], str) for o in options)
    ):
        del compact["anyOf"]
        compact["type"] = [option["type"] for option in options]
    return compact
