"""`yokeflow serve` over stdio: two server processes on one database, used by two clients at once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from mcp import Client, StdioServerParameters

from coordinator.service import Coordinator
from tests.conftest import Database
from tests.test_mcp_support import make_project, ok

TASKS = 20


def _server(url: str, cwd: Path, *args: str, token: str | None = None) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if k != "YOKEFLOW_TOKEN"}
    if token is not None:
        env["YOKEFLOW_TOKEN"] = token
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "launcher.cli", "--database", url, "serve", *args],
        env=env,
        cwd=cwd,
    )


async def _drain_as_operator(client: Client, done: list[int]) -> None:
    """YokeFlow style: claim_next_task(worker_id) then update_task_status(done=true)."""
    while True:
        claimed = await ok(client, "claim_next_task", {"worker_id": "stdio-a", "wait_seconds": 2})
        if claimed["status"] == "no_task":
            if claimed["reason"] == "all_done":
                return
            continue
        await ok(client, "update_task_status", {"task_id": claimed["task"]["id"], "done": True})
        done.append(claimed["task"]["id"])


async def _drain_as_worker(client: Client, done: list[int]) -> None:
    while True:
        claimed = await ok(client, "claim_task", {"wait_seconds": 2})
        if claimed["status"] == "no_task":
            if claimed["reason"] == "all_done":
                return
            continue
        task_id, lease = claimed["task"]["id"], claimed["lease"]["lease_id"]
        await ok(client, "heartbeat", {"task_id": task_id, "lease_id": lease})
        await ok(client, "complete_task", {"task_id": task_id, "lease_id": lease})
        done.append(task_id)


async def test_two_stdio_servers_share_one_database(database: Database, tmp_path: Path) -> None:
    url = database.url  # one SQLite file, or one PostgreSQL schema
    async with Client(_server(url, tmp_path, "--profile", "all")) as first:
        await make_project(first)
        chain = [
            {"key": f"k{i}", "title": f"T{i}", "depends_on": [f"k{i - 2}"] if i >= 2 else []}
            for i in range(TASKS)
        ]
        epic = await ok(first, "create_epic", {"name": "E"})
        await ok(first, "expand_epic", {"epic_id": epic["id"], "tasks": chain})
        token = (await ok(first, "register_agent", {"name": "stdio-b"}))["token"]

        async with Client(_server(url, tmp_path, "--profile", "worker", token=token)) as second:
            tools = {t.name for t in (await second.list_tools()).tools}
            assert "claim_task" in tools and "create_task" not in tools
            # The second process sees the first one's plan, and the first sees the second's lease.
            claimed = await ok(second, "claim_task", {})
            seen = await ok(first, "get_task", {"task_id": claimed["task"]["id"]})
            assert (
                seen["task"]["status"] == "in_progress" and seen["task"]["lease_owner"] == claimed["agent_id"]
            )
            await ok(
                second,
                "release_task",
                {"task_id": claimed["task"]["id"], "lease_id": claimed["lease"]["lease_id"]},
            )

            by_first: list[int] = []
            by_second: list[int] = []
            await asyncio.wait_for(
                asyncio.gather(_drain_as_operator(first, by_first), _drain_as_worker(second, by_second)),
                timeout=120,
            )
            status = await ok(first, "project_status", {})
            assert status["tasks"]["done"] == TASKS
            assert sorted(by_first + by_second) == list(range(1, TASKS + 1)), "every task done exactly once"

    coord = await Coordinator.open(url)
    try:
        async with coord.store.transaction(write=False) as tx:
            kinds = await tx.fetch("SELECT task_id FROM events WHERE kind = 'task_completed'")
        assert set(Counter(r["task_id"] for r in kinds).values()) == {1}
        assert await coord.store.integrity_problems() == []
    finally:
        await coord.close()


def test_a_stdio_server_with_a_wrong_token_stops_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    finished = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "--database", url, "serve", "--token", "yf_wrong"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert finished.returncode == 1
    assert "the bearer token is not valid" in finished.stderr and "Fix:" in finished.stderr
    assert finished.stdout == "", "stdout belongs to the protocol"
