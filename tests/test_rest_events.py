"""The live event stream (GET /api/events) over real HTTP, on SQLite and PostgreSQL.

A client that disconnects and resumes with Last-Event-ID receives every event exactly once, in
log order; two servers on one database each deliver the events written through the other.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx2
import pytest

from coordinator.context import OPERATOR, Caller
from coordinator.events import read_events
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from coordinator.work import Claimed
from tests.conftest import Database
from tests.test_rest_support import (
    Frame,
    Server,
    answer,
    event_stream,
    plan_shop,
    refused,
    register,
    serving,
    until,
)


async def work_on(coord: Coordinator, worker: Caller) -> int:
    """Claim the next task, heartbeat, and complete it; its id."""
    claimed = await coord.work.claim(worker)
    assert isinstance(claimed, Claimed)
    lease = claimed.lease.lease_id
    await coord.work.heartbeat(worker, task_id=claimed.task.id, lease_id=lease, progress_note="half way")
    await coord.work.complete(worker, task_id=claimed.task.id, lease_id=lease, summary="done")
    return claimed.task.id


def check_frames(frames: list[Frame]) -> None:
    for frame in frames:
        assert frame.data is not None and frame.data["id"] == frame.id and frame.data["kind"] == frame.event


async def test_a_client_that_reconnects_with_last_event_id_gets_every_event_once_in_order(
    local: Coordinator, database: Database
) -> None:
    await plan_shop(local, NewTask(title="A", local_key="a"), NewTask(title="B", depends_on=["a"]))
    worker, _ = await register(local, "ann")
    with serving(database.url) as server:
        async with server.client() as http:
            start = answer(await http.get("/api/projects/shop"))["last_event_id"]
            async with event_stream(http, Last_Event_ID=str(start)) as stream:
                assert (await stream.frame()).retry == 2000
                first = await work_on(local, worker)
                seen = await stream.events_until("task_completed", first)
            await until(lambda: _closed(server), "the server to drop the disconnected stream")

            # While nobody listens: the next task, a test result and a cost.
            second = await work_on(local, worker)
            await local.costs.record(OPERATOR, model="sonnet", cost_usd=0.5, project="shop")
            async with event_stream(http, Last_Event_ID=str(seen[-1].id)) as stream:
                await stream.frame()  # retry
                seen += await stream.events_until("task_completed", second)
                seen.append(await stream.event())  # the cost, after the completion
    check_frames(seen)
    logged = await read_events(local.store, project_id=1, after_id=start, limit=1000)
    assert [f.id for f in seen] == [e.id for e in logged], "every event once, in log order"
    kinds = [f.event for f in seen]
    assert kinds.count("task_claimed") == 2 and kinds.count("lease_heartbeat") == 2
    assert kinds[-1] == "cost_recorded" and "task_ready" in kinds


async def _closed(server: Server) -> bool:
    return server.rest.open_streams == 0


async def test_pings_the_query_fallback_and_bad_cursors(local: Coordinator, database: Database) -> None:
    (task,) = await plan_shop(local, NewTask(title="A"))
    with serving(database.url) as server:
        server.rest.heartbeat_seconds = 0.0  # a ping whenever a poll finds nothing
        async with server.client() as http:
            async with event_stream(http, params={"last_event_id": 0}) as stream:
                assert (await stream.frame()).retry == 2000
                replayed = [await stream.event() for _ in range(2)]
                assert [f.event for f in replayed] == ["project_created", "task_created"]
                assert (await stream.frame()).comment == "ping"
            # The header wins over the query (EventSource keeps the URL and sends the header).
            async with event_stream(http, params={"last_event_id": 0}, Last_Event_ID="1") as stream:
                assert (await stream.event()).event == "task_created"
            # Without a cursor the stream starts with the next new event.
            async with event_stream(http) as stream:
                await stream.frame()
                answer(await http.patch(f"/api/tasks/{task}", json={"priority": 7}))
                changed = await stream.event()
                assert changed.event == "task_priority_changed" and changed.data is not None
                assert changed.data["payload"] == {"before": 0, "after": 7}
            refused(
                await http.get("/api/events", headers={"Last-Event-ID": "x"}),
                422,
                "invalid_input",
                "Last-Event-ID",
            )
            refused(await http.get("/api/events", params={"last_event_id": -5}), 422, "invalid_input")
            refused(await http.get("/api/events", params={"project": "nope"}), 404, "not_found")


async def test_a_token_in_the_query_serves_clients_that_cannot_send_headers(
    local: Coordinator, database: Database
) -> None:
    await plan_shop(local, NewTask(title="A"))
    _, token = await register(local, "eve", role="observer")
    with serving(database.url, require_token=True) as server:
        async with server.client() as http:
            refused(await http.get("/api/events"), 401, "unauthorized")
            refused(await http.get("/api/events", params={"access_token": "yf_wrong"}), 401, "unauthorized")
            async with event_stream(http, params={"access_token": token, "last_event_id": 0}) as stream:
                assert (await stream.event()).event == "project_created"
            refused(await http.get("/api/projects", params={"access_token": token}), 401, "unauthorized")


async def test_two_servers_on_one_database_each_deliver_what_the_other_wrote(
    local: Coordinator, database: Database
) -> None:
    a, b = await plan_shop(local, NewTask(title="A"), NewTask(title="B"))
    with serving(database.url) as first, serving(database.url) as second:
        async with first.client() as one, second.client() as two:
            start = answer(await one.get("/api/projects/shop"))["last_event_id"]
            async with (
                event_stream(one, Last_Event_ID=str(start)) as on_first,
                event_stream(two, Last_Event_ID=str(start)) as on_second,
            ):
                answer(await two.patch(f"/api/tasks/{a}", json={"parked": True}))
                answer(await one.patch(f"/api/tasks/{b}", json={"parked": True}))
                got_first = await on_first.events_until("task_parked", b)
                got_second = await on_second.events_until("task_parked", b)
    assert [(f.event, f.data and f.data["task_id"]) for f in got_first] == [
        ("task_parked", a),
        ("task_parked", b),
    ]
    assert [f.id for f in got_first] == [f.id for f in got_second]


async def test_a_stopping_server_ends_the_streams_still_open(local: Coordinator, database: Database) -> None:
    await plan_shop(local, NewTask(title="A"))
    async with AsyncExitStack() as open_client:
        with serving(database.url) as server:
            client = await open_client.enter_async_context(server.client())
            reader = await open_client.enter_async_context(event_stream(client, params={"last_event_id": 0}))
            assert (await reader.event()).event == "project_created"
            assert server.rest.open_streams == 1
        # `serving` checked that the server thread ended although the client never hung up.
        assert server.rest.open_streams == 0
        with pytest.raises((httpx2.HTTPError, EOFError)):
            while True:
                await reader.frame()
