"""What the launcher and its runners do with a lease they hold: keep it alive, hand it back, fail it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

from launcher.mcp_client import AgentClient, ToolCallError


async def keep_lease(client: AgentClient, task_id: int, lease: Mapping[str, Any]) -> None:
    """Heartbeat `lease` on `task_id` every heartbeat interval while an agent works, until the lease
    is no longer ours (the task was completed, failed or released, or taken over): then return."""
    while True:
        await asyncio.sleep(float(lease["heartbeat_interval_seconds"]))
        try:
            await client.call("heartbeat", task_id=task_id, lease_id=lease["lease_id"])
        except ToolCallError as exc:
            if exc.error_code == "lease_lost":
                return
            raise


async def held(client: AgentClient, task_id: int, lease_id: str) -> bool:
    """Whether this lease still holds the task (the agent neither completed, failed nor released it)."""
    task = (await client.call("get_task", task_id=task_id, events=0))["task"]
    return bool(task["status"] == "in_progress" and task["lease_token"] == lease_id)


async def fail_if_held(client: AgentClient, task_id: int, lease_id: str, error: str) -> None:
    """Fail the task with `error` if this lease still holds it, so the next attempt knows why."""
    if await held(client, task_id, lease_id):
        await quietly_if_lost(
            client.call("fail_task", task_id=task_id, lease_id=lease_id, error=error, retryable=True)
        )


async def release_if_held(client: AgentClient, task_id: int, lease_id: str, note: str) -> None:
    """Hand the task back untouched if this lease still holds it."""
    if await held(client, task_id, lease_id):
        await quietly_if_lost(client.call("release_task", task_id=task_id, lease_id=lease_id, note=note))


async def quietly_if_lost(call: Awaitable[dict[str, Any]]) -> None:
    """Await a call that holds a lease; if the lease expired in between, the next holder carries on."""
    try:
        await call
    except ToolCallError as exc:
        if exc.error_code != "lease_lost":
            raise
