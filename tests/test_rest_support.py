"""Helpers for the REST tests: a real uvicorn server with its app at hand, clients, answers, SSE frames.

(No tests here; the module name only keeps it beside the tests that use it.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from starlette.applications import Starlette

from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.planning import NewTask
from coordinator.rest import RestContext
from coordinator.service import Coordinator
from launcher.serve import build_http_app
from tests.test_mcp_support import serve_in_thread

WAIT_SECONDS = 60.0
"""How long a test waits for something that must happen (a deadline, not a measurement)."""


@dataclass
class Server:
    url: str
    app: Starlette

    @property
    def rest(self) -> RestContext:
        context = self.app.state.rest
        assert isinstance(context, RestContext)
        return context

    def client(self, token: str | None = None, **headers: str) -> httpx2.AsyncClient:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx2.AsyncClient(base_url=self.url, headers=headers, timeout=WAIT_SECONDS)


@contextmanager
def serving(url: str, **options: Any) -> Iterator[Server]:
    """The HTTP app for the database at `url` under a real uvicorn on a free loopback port.

    `options` go to `build_http_app`. Open event streams end as the server stops.
    """
    app = build_http_app(url, **options)
    with serve_in_thread(app) as base:
        yield Server(base, app)


def answer(response: httpx2.Response, status: int = 200) -> Any:
    """The JSON of a response that must have `status`."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json()


def refused(response: httpx2.Response, status: int, code: str, *fragments: str) -> dict[str, Any]:
    """An error answer with this status and code whose message or fix holds every fragment."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    body = response.json()
    assert body["error"] == code, body
    assert set(body) >= {"error", "message", "fix"}, body
    text = f"{body['message']} {body['fix']}"
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    return dict(body)


async def plan_shop(coord: Coordinator, *tasks: NewTask, name: str = "shop") -> list[int]:
    await coord.planning.create_project(OPERATOR, name=name)
    created = await coord.planning.create_tasks(OPERATOR, list(tasks), project=name)
    return [t.id for t in created]


async def register(
    coord: Coordinator,
    name: str,
    *,
    role: str = "worker",
    persona: str = "implementer",
    project: str = "shop",
) -> tuple[Caller, str]:
    """A registered agent as a caller, and its token."""
    registered = await coord.agents.register(
        OPERATOR,
        persona=persona,
        name=name,
        project=project,
        role=role,  # type: ignore[arg-type]
    )
    return agent_caller(registered.agent), registered.token


async def until(check: Any, what: str) -> Any:
    """Poll `check()` (async) until it returns something truthy; fail after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Frame:
    """One server-sent event (or a comment line, with `comment` set)."""

    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    comment: str | None = None
    retry: int | None = None


class EventReader:
    """Reads the frames of an open `text/event-stream` response."""

    def __init__(self, response: httpx2.Response) -> None:
        assert response.status_code == 200, response.status_code
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.aiter_lines()

    async def frame(self) -> Frame:
        return await asyncio.wait_for(self._frame(), WAIT_SECONDS)

    async def _frame(self) -> Frame:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line.startswith(":"):
                return Frame(comment=line[1:].strip())
            if not line:
                if fields:
                    break
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        else:
            raise EOFError("the event stream ended")
        return Frame(
            id=int(fields["id"]) if "id" in fields else None,
            event=fields.get("event"),
            data=json.loads(fields["data"]) if "data" in fields else None,
            retry=int(fields["retry"]) if "retry" in fields else None,
        )

    async def event(self) -> Frame:
        """The next event frame (comments and retry hints skipped)."""
        while True:
            frame = await self.frame()
            if frame.event is not None:
                return frame

    async def events_until(self, kind: str, task_id: int) -> list[Frame]:
        """Every event frame up to and including the first `kind` event of `task_id`."""
        got: list[Frame] = []
        while True:
            got.append(await self.event())
            data = got[-1].data
            if got[-1].event == kind and data is not None and data["task_id"] == task_id:
                return got


@asynccontextmanager
async def event_stream(
    client: httpx2.AsyncClient, params: dict[str, Any] | None = None, **headers: str
) -> AsyncIterator[EventReader]:
    """An open GET /api/events stream (its headers are sent, its first frame not yet read)."""
    wanted = {key.replace("_", "-"): value for key, value in headers.items()}
    async with client.stream("GET", "/api/events", params=params, headers=wanted) as response:
        if response.status_code != 200:
            await response.aread()
        yield EventReader(response)
