"""The live event stream: the audit log as server-sent events, replayed from Last-Event-ID, then followed.

The log is the truth: each stream reads the events after its cursor, in log order, and waits
for the coordinator's wake-up (changes in this process; on PostgreSQL also every other server's
NOTIFY) or `poll_seconds`, whichever comes first. So every server on one database delivers
every event, once and in order, whoever wrote it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from pydantic import Field
from starlette.responses import Response, StreamingResponse

from coordinator.errors import StoreError
from coordinator.events import last_position, read_events
from coordinator.records import Event
from coordinator.rest.api import Call, RestContext, RouteTable
from coordinator.rest.errors import HttpError
from coordinator.rest.params import Cursor, Name, Strict
from coordinator.service import Coordinator

log = logging.getLogger(__name__)

STREAM = RouteTable("events")
_BATCH = 200
RETRY_MILLISECONDS = 2000


class StreamQuery(Strict):
    project: Name | None = Field(
        default=None, description="The project's name or id (default: the token's, or the only project)."
    )
    last_event_id: Cursor | None = Field(
        default=None,
        description="Replay the events after this position (for clients that cannot send the Last-Event-ID "
        "header; the header wins). Without either, the stream starts with the next new event.",
    )
    access_token: str | None = Field(
        default=None, description="An agent token, for clients that cannot send an Authorization header."
    )


@STREAM.get("/api/events", media_type="text/event-stream", token_in_query=True)
async def event_stream(call: Call, query: StreamQuery) -> Response:
    """The project's events as server-sent events: `id: <position>`, `event: <kind>`, `data: <event JSON>`.

    On connect, the events after `Last-Event-ID` are replayed, then new ones follow as they are
    written. A `: ping` comment keeps the connection open when nothing happens.
    """
    cursor = _last_event_id(call.request.headers.get("last-event-id"), query.last_event_id)
    async with call.coord.store.transaction(write=False) as tx:
        project = await call.coord.observe.resolve_project(tx, call.caller, query.project)
    if cursor is None:
        cursor = await last_position(call.coord.store, project_id=project.id)
    return StreamingResponse(
        follow(call.coord, call.context, project.id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def follow(
    coord: Coordinator, context: RestContext, project_id: int, cursor: int
) -> AsyncIterator[str]:
    """The stream's text: events after `cursor`, then each new one, with pings in the quiet."""
    context.open_streams += 1
    try:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        while not context.closing:
            try:
                events = await read_events(coord.store, project_id=project_id, after_id=cursor, limit=_BATCH)
            except StoreError as exc:  # the database is back soon, or the client reconnects elsewhere
                log.warning("event stream: %s; trying again", exc)
                events = []
            if events:
                yield "".join(frame(event) for event in events)
                cursor, quiet_since = events[-1].id, loop.time()
                if len(events) == _BATCH:
                    continue
            elif loop.time() - quiet_since >= context.heartbeat_seconds:
                yield ": ping\n\n"
                quiet_since = loop.time()
            await coord.wakeup.wait(context.poll_seconds)
    finally:
        context.open_streams -= 1


def frame(event: Event) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"


def _last_event_id(header: str | None, fallback: int | None) -> int | None:
    if header is None or not header.strip():
        return fallback
    if not header.strip().isdigit():
        raise HttpError(
            422,
            "invalid_input",
            f"Last-Event-ID: {header[:40]!r} is not an event position",
            fix="send the id of the last event received, or no header to start with new events",
            field="Last-Event-ID",
        )
    return int(header.strip())
