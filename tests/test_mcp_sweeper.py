"""The HTTP server sweeps in the background: expired leases and lost agents reach the event log unasked."""

from __future__ import annotations

import asyncio
import time

from mcp import Client

from tests.conftest import Database, ManualClock
from tests.test_mcp_support import http_client, make_project, ok, running_http_server

SWEEP_SECONDS = 0.05
PATIENCE_SECONDS = 60.0
"""Only a bound for giving up: the sweep normally shows up within a few intervals."""


async def _events_until(client: Client, wanted: set[str]) -> list[dict[str, object]]:
    """The event log, read again and again until it holds every kind in `wanted` (or patience runs out)."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        events = (await ok(client, "get_events", {"limit": 1000}))["events"]
        if wanted <= {event["kind"] for event in events} or time.monotonic() > deadline:
            return list(events)
        await asyncio.sleep(SWEEP_SECONDS)


async def test_expired_leases_and_lost_agents_appear_without_any_call(
    database: Database, clock: ManualClock
) -> None:
    with running_http_server(database.url, clock=clock, sweep_interval_seconds=SWEEP_SECONDS) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            task = await ok(operator, "create_task", {"title": "Slow"})
            token = (await ok(operator, "register_agent", {"name": "sleepy"}))["token"]
        async with http_client(f"{base}/mcp/worker", token=token) as worker:
            claimed = await ok(worker, "claim_task", {"ttl_seconds": 5})
            assert claimed["status"] == "claimed" and claimed["lease"]["ttl_seconds"] == 5

        async with http_client(f"{base}/mcp/observer") as observer:
            clock.advance(6)  # past the lease; nobody calls anything that would notice
            events = await _events_until(observer, {"lease_expired"})
            expired = [e for e in events if e["kind"] == "lease_expired"]
            assert [(e["task_id"], e["actor"]) for e in expired] == [(task["id"], "sweeper")]

            clock.advance(1000)  # past leases.agent_ttl_seconds (900 s) without a heartbeat
            events = await _events_until(observer, {"agent_lost"})
            assert "agent_lost" in {e["kind"] for e in events}
            agents = await ok(observer, "list_agents", {})
            assert [(a["name"], a["status"]) for a in agents["agents"]] == [("sleepy", "lost")]
            assert len([e for e in events if e["kind"] == "lease_expired"]) == 1, "each expiry is noted once"
    # Leaving the block shut the server down, background sweep included (running_http_server checks).
