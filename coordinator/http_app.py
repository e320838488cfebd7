"""The HTTP app: streamable HTTP MCP endpoints and the REST API, over one shared coordinator.

The app opens the coordinator in its lifespan, builds one MCP server per path from the
factories it was given (the tool surface lives in `tools/`, which this module does not import),
and runs each server's session manager. Every session on every path shares that coordinator.
While it runs, background tasks sweep (`Coordinator.sweep_forever`), so expired leases and
lost agents appear in the event log without anyone asking, run the merge queue, and keep
expertise consolidated (`Coordinator.improve_expertise_forever`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from coordinator import __version__
from coordinator.dashboard_routes import dashboard_routes
from coordinator.rest import RestContext, rest_routes
from coordinator.service import Coordinator

McpFactory = Callable[[Coordinator], MCPServer[Any]]
"""Builds the MCP server of one path over the open coordinator."""

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 5
"""How long a stopping server waits for open requests: event streams never end on their own."""

_WILDCARDS = {"0.0.0.0", "::", ""}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_protection(host: str, allowed_hosts: Sequence[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host and Origin headers a server bound to `host` accepts.

    Always the loopback names; the bound address itself; for a wildcard bind, this machine's
    names; plus `allowed_hosts` (the names clients use to reach the server).
    """
    names = ["127.0.0.1", "localhost", "[::1]"]
    if host in _WILDCARDS:
        names += [socket.gethostname(), socket.getfqdn()]
    elif not is_loopback(host):
        names.append(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    names += list(allowed_hosts)
    names = list(dict.fromkeys(n for n in names if n))
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*names, *(f"{n}:*" for n in names)],
        allowed_origins=[
            f"{scheme}://{n}{port}" for n in names for scheme in ("http", "https") for port in ("", ":*")
        ],
    )


@dataclass
class _State:
    coord: Coordinator | None = None
    endpoints: dict[str, StreamableHTTPASGIApp] = field(default_factory=dict)


class _McpEndpoint:
    """One MCP path: refuses requests without a bearer token when tokens are required."""

    def __init__(self, state: _State, path: str, require_token: bool) -> None:
        self.state, self.path, self.require_token = state, path, require_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.state.endpoints.get(self.path)
        if endpoint is None:
            response = JSONResponse({"error": "starting", "message": "the server is not ready yet"}, 503)
            await response(scope, receive, send)
            return
        if self.require_token and scope["type"] == "http":
            header = Request(scope).headers.get("authorization", "")
            if not header.lower().startswith("bearer ") or not header[7:].strip():
                response = JSONResponse(
                    {
                        "error": "unauthorized",
                        "message": "this server requires a bearer token",
                        "fix": "send `Authorization: Bearer <token>` with an agent token "
                        "(register_agent or `yokeflow launch` issue them)",
                    },
                    401,
                    headers={"WWW-Authenticate": 'Bearer realm="yokeflow"'},
                )
                await response(scope, receive, send)
                return
        await endpoint(scope, receive, send)


def build_app(
    *,
    open_coordinator: Callable[[], Awaitable[Coordinator]],
    mcp: Mapping[str, McpFactory],
    require_token: bool = False,
    json_response: bool = False,
    transport_security: TransportSecuritySettings | None = None,
    sweep_interval_seconds: float | None = None,
) -> Starlette:
    """The Starlette app: `mcp` maps each path (e.g. /mcp, /mcp/worker) to its server factory.

    `sweep_interval_seconds`: how often the background sweep runs (default: the heartbeat interval).
    """
    state = _State()
    rest = RestContext(allow_operator=not require_token, security=transport_security)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        coord = await open_coordinator()
        try:
            async with AsyncExitStack() as stack:
                stack.push_async_callback(
                    _stop, _start(coord.sweep_forever(sweep_interval_seconds), "sweeper")
                )
                stack.push_async_callback(_stop, _start(coord.merge_forever(), "merge queue"))
                stack.push_async_callback(
                    _stop, _start(coord.improve_expertise_forever(), "expertise upkeep")
                )
                for path, factory in mcp.items():
                    server = factory(coord)
                    # Builds this server's session manager; the app it returns is not used.
                    server.streamable_http_app(
                        streamable_http_path=path,
                        json_response=json_response,
                        transport_security=transport_security,
                    )
                    await stack.enter_async_context(server.session_manager.run())
                    state.endpoints[path] = StreamableHTTPASGIApp(server.session_manager)
                state.coord = rest.coord = coord
                yield
        finally:
            state.coord = rest.coord = None
            state.endpoints.clear()
            await coord.close()

    async def health(request: Request) -> JSONResponse:
        """GET /api/health: the server answers and its database can be read."""
        coord = state.coord
        if coord is None:
            return JSONResponse({"status": "starting"}, 503)
        try:
            async with coord.store.transaction(write=False) as tx:
                await tx.fetchval("SELECT 1")
        except Exception as exc:  # the health check reports any failure instead of raising
            return JSONResponse(
                {"status": "error", "database": coord.store.describe(), "error": type(exc).__name__}, 503
            )
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "database": coord.store.describe(),
                "mcp": sorted(mcp),
                "time": time.time(),
            }
        )

    routes: list[BaseRoute] = [Route("/api/health", health, methods=["GET"])]
    routes += [Route(path, endpoint=_McpEndpoint(state, path, require_token)) for path in mcp]
    routes += rest_routes(rest)  # the REST API and the event stream (coordinator/rest/)
    routes += dashboard_routes()  # the web dashboard at / (coordinator/dashboard/)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.rest = rest
    return app


def _start(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Run `work` in the background; if it ever fails, say so in the log."""
    task = asyncio.create_task(work, name=f"yokeflow-{name}")

    def stopped(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("the background %s stopped: %r", name, done.exception())

    task.add_done_callback(stopped)
    return task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
