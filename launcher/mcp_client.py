"""A small typed client of the coordinator's MCP tools over streamable HTTP, as agents and the launcher use it."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from coordinator.errors import YokeflowError

WORKER_PATH = "/mcp/worker"
OPERATOR_PATH = "/mcp"
OBSERVER_PATH = "/mcp/observer"
_PREFIX = "Error executing tool "
# The coordinator's error texts start with these words; no other code reaches the client over MCP.
_CODES = {"lease lost": "lease_lost", "permission denied": "permission_denied"}


class ToolCallError(YokeflowError):
    """A tool answered with an error; `error_code` says which kind (lease_lost, permission_denied, error)."""

    def __init__(self, tool: str, error_code: str, message: str, fix: str | None) -> None:
        self.tool = tool
        self.error_code = error_code
        super().__init__(f"{tool}: {message}", fix=fix)


def tool_error(tool: str, result: CallToolResult) -> ToolCallError:
    """The error an `is_error` result of `tool` stands for."""
    text = " ".join(getattr(block, "text", "") for block in result.content).strip()
    text = text.removeprefix(f"{_PREFIX}{tool}: ")
    message, _, fix = text.partition(". Fix: ")
    lowered = message.lower()
    code = next((code for start, code in _CODES.items() if lowered.startswith(start)), "error")
    return ToolCallError(tool, code, message or "the tool failed without saying why", fix or None)


class AgentClient:
    """An MCP session with the server at `base_url` (e.g. http://127.0.0.1:8765), acting with `token`.

    Without a token the caller is the local operator (loopback servers only). Use it as an async
    context manager; `call` returns a tool's structured result or raises `ToolCallError`.
    """

    def __init__(
        self, base_url: str, token: str | None, *, profile_path: str = WORKER_PATH, timeout: float = 330.0
    ) -> None:
        self.url = base_url.rstrip("/") + profile_path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # claim_task may wait up to 300 s for work, so the read timeout is longer than that.
        self._http = httpx2.AsyncClient(headers=headers, timeout=timeout)
        self._client = Client(streamable_http_client(self.url, http_client=self._http))

    async def __aenter__(self) -> AgentClient:
        await self._http.__aenter__()
        try:
            await self._client.__aenter__()
        except BaseException as exc:
            await self._http.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._client.__aexit__(kind, exc, tb)
        except BaseExceptionGroup as group:
            # The SDK's task group wraps an error raised inside the block; let it go on unwrapped.
            if exc is None or group.subgroup(
                lambda e: not isinstance(e, BaseExceptionGroup) and e is not exc
            ):
                raise
        finally:
            await self._http.__aexit__(kind, exc, tb)

    async def offers(self, tool: str) -> bool:
        """Whether the server offers `tool` at this path."""
        return any(listed.name == tool for listed in (await self._client.list_tools()).tools)

    async def call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call `tool` with `arguments` (None values are left out); its structured result."""
        given = {name: value for name, value in arguments.items() if value is not None}
        result = await self._client.call_tool(tool, given)
        if result.is_error:
            raise tool_error(tool, result)
        if result.structured_content is None:
            raise ToolCallError(
                tool,
                "error",
                "the server answered without a structured result",
                "use a yokeflow coordinator server of the same version as this launcher",
            )
        return result.structured_content
