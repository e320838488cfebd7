"""What every tool call needs: the shared coordinator, the identity rules, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context

from coordinator.observe import ObserverService
from coordinator.service import Coordinator
from tools.token_cache import TokenCache


@dataclass(frozen=True)
class Identity:
    """How a server decides who is calling.

    `token`: the agent token a stdio server acts with (`--token` / `YOKEFLOW_TOKEN`); HTTP
    requests carry their own in `Authorization: Bearer …`.
    `allow_operator`: whether a call without any token acts as the local operator. True over
    stdio and on a loopback-bound HTTP server; False when the server requires tokens.
    """

    token: str | None = None
    allow_operator: bool = True


@dataclass
class Runtime:
    """The coordinator and identity rules one MCP server (or several, over HTTP) shares.

    `tokens`: a short-lived cache of token → agent (the HTTP server's), or None to read the
    agent from the database on every call.
    """

    coord: Coordinator
    identity: Identity = field(default_factory=Identity)
    tokens: TokenCache | None = None

    @property
    def observe(self) -> ObserverService:
        return self.coord.observe


ToolContext = Context[Runtime, Any]
"""The type tools annotate their context parameter with; the SDK injects it."""


def runtime_of(ctx: ToolContext) -> Runtime:
    runtime = ctx.request_context.lifespan_context
    assert isinstance(runtime, Runtime), "the MCP server's lifespan must yield a tools.runtime.Runtime"
    return runtime
