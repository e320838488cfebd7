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
        return Tool.from_function(
            self.fn, title=self.title, annotations=self.annotations, structured_output=True
        )


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
