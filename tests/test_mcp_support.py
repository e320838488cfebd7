"""Helpers for the MCP tests: in-process clients, a real uvicorn server, call shortcuts.

(No tests here; the module name only keeps it beside the tests that use it.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from starlette.applications import Starlette

from coordinator.service import Coordinator
from launcher.embedded_server import free_port
from launcher.serve import build_http_app, http_server
from tools.runtime import Identity, Runtime
from tools.server import Profile, build_server
from tools.token_cache import TokenCache


@asynccontextmanager
async def connect(
    coord: Coordinator,
    profile: Profile = "all",
    *,
    token: str | None = None,
    tokens: TokenCache | None = None,
) -> AsyncIterator[Client]:
    """An in-process client of a fresh server over `coord` (acting with `token`, else as the operator).

    `tokens`: the token cache the server uses (none by default).
    """
    async with Client(build_server(profile, Runtime(coord, Identity(token=token), tokens))) as client:
        yield client


async def ok(client: Client, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, f"{name}({arguments}) failed: {text_of(result)}"
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, name: str, arguments: dict[str, Any], *fragments: str) -> str:
    """Call a tool that must answer with an error result containing every fragment; the error text."""
    result = await client.call_tool(name, arguments)
    text = text_of(result)
    assert result.is_error, f"{name}({arguments}) should have failed but answered {text}"
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return text


def text_of(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def make_project(client: Client, name: str = "shop") -> dict[str, Any]:
    return await ok(client, "create_project", {"name": name})


async def worker_token(client: Client, name: str = "w", persona: str = "implementer", **extra: Any) -> str:
    registered = await ok(client, "register_agent", {"name": name, "persona": persona, **extra})
    return str(registered["token"])


@contextmanager
def serve_in_thread(app: Starlette, *, port: int | None = None) -> Iterator[str]:
    """`app` under the project's own uvicorn server (`launcher.serve.http_server`, which ends event
    streams as it stops), on a thread and event loop of its own; its base URL."""
    port = port or free_port()
    server = http_server(app, host="127.0.0.1", port=port, log_level="warning")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the HTTP server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
    assert not thread.is_alive(), "the HTTP server did not shut down (a background task kept it up?)"


@contextmanager
def running_http_server(url: str, *, require_token: bool = False, **options: Any) -> Iterator[str]:
    """A real uvicorn server for the database at `url`; its base URL.

    `options` go to `build_http_app` (a clock, the sweep interval, the token cache).
    """
    with serve_in_thread(build_http_app(url, require_token=require_token, **options)) as base:
        yield base


@asynccontextmanager
async def http_client(url: str, *, token: str | None = None) -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP, sending `token` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
