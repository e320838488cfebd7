"""A scripted stand-in for the Claude Code CLI behind the Agent SDK's `transport=` (the only fake: the model).

It answers the SDK's control requests, and on the prompt it runs `act`, which may call the
coordinator's MCP tools through the very server entry (URL and headers) of the session's options,
as the CLI would; then it emits the messages `act` returned. An error result is followed by the
CLI's non-zero exit, as the real CLI does, which the SDK turns into `ResultError`.
(No tests here; the module name only keeps it beside the tests that use it.)
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
from claude_agent_sdk import ClaudeAgentOptions, ProcessError, Transport
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

Act = Callable[[str, ClaudeAgentOptions], Awaitable[list[dict[str, Any]]]]


class ScriptedCLI(Transport):
    def __init__(self, options: ClaudeAgentOptions, act: Act) -> None:
        self.options, self.act = options, act
        self._ready = False
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](100)

    async def connect(self) -> None:
        self._ready = True

    async def write(self, data: str) -> None:
        for line in data.splitlines():
            message = json.loads(line)
            if message.get("type") == "control_request":
                await self._send.send(
                    {
                        "type": "control_response",
                        "response": {
                            "subtype": "success",
                            "request_id": message["request_id"],
                            "response": {},
                        },
                    }
                )
            elif message.get("type") == "user":
                for out in await self.act(message["message"]["content"], self.options):
                    await self._send.send(out)

    async def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        async for message in self._receive:
            yield message
            if message.get("type") == "result":
                if message.get("is_error"):
                    raise ProcessError("Command failed with exit code 1", exit_code=1, stderr="")
                return

    async def close(self) -> None:
        self._ready = False
        self._send.close()

    def is_ready(self) -> bool:
        return self._ready

    async def end_input(self) -> None:
        pass


class Sessions:
    """A transport factory that records the options of every session it starts."""

    def __init__(self, act: Act) -> None:
        self.act = act
        self.options: list[ClaudeAgentOptions] = []

    def __call__(self, options: ClaudeAgentOptions) -> ScriptedCLI:
        self.options.append(options)
        return ScriptedCLI(options, self.act)


def result(
    *,
    cost: float,
    input_tokens: int,
    output_tokens: int,
    text: str = "done",
    is_error: bool = False,
    terminal_reason: str = "completed",
    model_usage: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The messages of a run: init, one assistant turn, the result."""
    final: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "duration_ms": 10,
        "duration_api_ms": 8,
        "is_error": is_error,
        "num_turns": 1,
        "session_id": "s-1",
        "total_cost_usd": cost,
        "result": text,
        "terminal_reason": terminal_reason,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }
    if model_usage is not None:
        final["modelUsage"] = model_usage
    return [
        {"type": "system", "subtype": "init", "session_id": "s-1", "cwd": ".", "model": "claude-sonnet-4-5"},
        {
            "type": "assistant",
            "message": {
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": text}],
            },
            "parent_tool_use_id": None,
        },
        final,
    ]


@asynccontextmanager
async def mcp_of(options: ClaudeAgentOptions) -> AsyncIterator[Client]:
    """An MCP client of the session's coordinator entry, with exactly its URL and headers."""
    assert isinstance(options.mcp_servers, dict)
    server: Any = options.mcp_servers["yokeflow"]
    async with (
        httpx2.AsyncClient(headers=server["headers"], timeout=60) as http,
        Client(streamable_http_client(server["url"], http_client=http)) as client,
    ):
        yield client


def lease_of(prompt: str) -> tuple[int, str]:
    """The task id and lease id the prompt hands the agent."""
    task = re.search(r"^Task id: (\d+)$", prompt, re.M)
    lease = re.search(r"^Lease id: (\S+)$", prompt, re.M)
    assert task and lease, prompt
    return int(task.group(1)), lease.group(1)
