"""Streamable HTTP under a real uvicorn: many agents at once, tokens, host protection, `yokeflow serve --http`."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from typing import Any

import httpx2
import pytest
from mcp import Client

from coordinator.errors import ConfigError, InvalidInput
from coordinator.service import Coordinator
from launcher.cli import main as cli_main
from launcher.serve import check_exposure, parse_listen
from tests.conftest import Database
from tests.test_mcp_support import free_port, http_client, make_project, ok, refused, running_http_server

AGENTS = 16
TASKS = 48


def _graph(rng: random.Random) -> list[dict[str, Any]]:
    """TASKS tasks in layers; each depends on up to three tasks of earlier layers (by key)."""
    tasks: list[dict[str, Any]] = []
    for index in range(TASKS):
        layer = index // 8
        earlier = [f"t{i}" for i in range(layer * 8)]
        depends_on = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3)))
        tasks.append(
            {
                "key": f"t{index}",
                "title": f"Task {index}",
                "depends_on": depends_on,
                "priority": rng.randint(0, 3),
            }
        )
    return tasks


async def _work(url: str, token: str, done: list[int], *, legacy: bool) -> None:
    """One agent session: claim → heartbeat → complete until nothing is left."""
    async with http_client(url, token=token) if not legacy else _legacy(url, token) as client:
        while True:
            claimed = await ok(client, "claim_task", {"wait_seconds": 5})
            if claimed["status"] == "no_task":
                assert claimed["reason"] in ("all_done", "waiting"), claimed
                if claimed["reason"] == "all_done":
                    return
                continue
            task_id, lease = claimed["task"]["id"], claimed["lease"]["lease_id"]
            for dependency in claimed["context"]["dependencies"]:
                assert dependency["status"] == "done", "a task was leased before its dependencies were done"
            await ok(client, "heartbeat", {"task_id": task_id, "lease_id": lease, "progress_note": "working"})
            await ok(
                client, "complete_task", {"task_id": task_id, "lease_id": lease, "summary": f"did {task_id}"}
            )
            done.append(task_id)


def _legacy(url: str, token: str) -> Any:
    """A handshake-era client (stateful session with an Mcp-Session-Id), as older IDEs use."""
    from contextlib import asynccontextmanager

    from mcp.client.streamable_http import streamable_http_client

    @asynccontextmanager
    async def opened() -> Any:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
        ):
            yield client

    return opened()


@pytest.mark.slow
async def test_sixteen_agents_over_http_finish_a_dependency_graph_once_each(database: Database) -> None:
    with running_http_server(database.url) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            epic = await ok(operator, "create_epic", {"name": "Graph"})
            created = await ok(
                operator, "expand_epic", {"epic_id": epic["id"], "tasks": _graph(random.Random(7))}
            )
            tokens = [
                (await ok(operator, "register_agent", {"name": f"agent-{i}"}))["token"] for i in range(AGENTS)
            ]
        done: list[int] = []
        started = time.monotonic()
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    _work(f"{base}/mcp/worker", token, done, legacy=i % 4 == 0)
                    for i, token in enumerate(tokens)
                )
            ),
            timeout=240,
        )
        assert time.monotonic() - started < 240
        async with http_client(f"{base}/mcp/observer") as observer:
            status = await ok(observer, "project_status", {})
            assert status["tasks"]["done"] == TASKS and status["percent_done"] == 100.0

    ids = [t["id"] for t in created["tasks"]]
    assert sorted(done) == sorted(ids), "every task is done exactly once"
    coord = await Coordinator.open(database.url)
    try:
        async with coord.store.transaction(write=False) as tx:
            events = await tx.fetch("SELECT id, kind, task_id FROM events ORDER BY id")
            edges = await tx.fetch("SELECT task_id, depends_on_task_id FROM task_dependencies")
        completed = Counter(e["task_id"] for e in events if e["kind"] == "task_completed")
        assert set(completed.values()) == {1} and len(completed) == TASKS
        claimed_at = {e["task_id"]: e["id"] for e in events if e["kind"] == "task_claimed"}
        completed_at = {e["task_id"]: e["id"] for e in events if e["kind"] == "task_completed"}
        for edge in edges:
            assert completed_at[edge["depends_on_task_id"]] < claimed_at[edge["task_id"]]
        assert await coord.store.integrity_problems() == []
    finally:
        await coord.close()


async def test_http_identity_and_host_protection(database: Database) -> None:
    with running_http_server(database.url) as base:
        async with httpx2.AsyncClient() as http:
            health = (await http.get(f"{base}/api/health")).json()
            assert health["status"] == "ok" and "/mcp/worker" in health["mcp"]
            rebinding = await http.post(f"{base}/mcp", headers={"Host": "evil.example"}, json={})
            assert rebinding.status_code == 421
        async with http_client(f"{base}/mcp") as operator:  # loopback without a token: the operator
            await make_project(operator)
            await ok(operator, "create_task", {"title": "A"})
            token = (await ok(operator, "register_agent", {}))["token"]
        async with http_client(f"{base}/mcp/worker", token=token) as worker:
            claimed = await ok(worker, "claim_task", {})
            assert claimed["status"] == "claimed"
            await refused(
                worker, "complete_task", {"task_id": claimed["task"]["id"], "lease_id": "x-a1"}, "lease lost"
            )
        async with http_client(f"{base}/mcp", token=token) as worker:
            await refused(
                worker, "create_task", {"title": "B"}, "permission denied: a worker may not create tasks"
            )
        async with http_client(f"{base}/mcp/worker") as tokenless:  # a worker set up without its token
            await refused(tokenless, "claim_task", {}, "permission denied", "claim tasks", "Fix:")
        async with http_client(f"{base}/mcp", token="yf_wrong") as stranger:
            await refused(stranger, "project_status", {}, "the bearer token is not valid")


async def test_a_waiting_claim_returns_the_task_its_dependency_unblocks(database: Database) -> None:
    with running_http_server(database.url) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            first = await ok(operator, "create_task", {"title": "First"})
            second = await ok(operator, "create_task", {"title": "Second", "depends_on": [first["id"]]})
            tokens = [(await ok(operator, "register_agent", {}))["token"] for _ in range(2)]
        async with (
            http_client(f"{base}/mcp/worker", token=tokens[0]) as ada,
            http_client(f"{base}/mcp/worker", token=tokens[1]) as bob,
        ):
            held = await ok(ada, "claim_task", {})
            waiting = asyncio.create_task(ok(bob, "claim_task", {"wait_seconds": 60}))
            await asyncio.sleep(1)  # bob's call reaches the server, finds nothing ready and waits
            assert not waiting.done()
            await ok(ada, "complete_task", {"task_id": first["id"], "lease_id": held["lease"]["lease_id"]})
            claimed = await asyncio.wait_for(waiting, 30)  # one call: it waited, then got the task
        assert claimed["status"] == "claimed" and claimed["task"]["id"] == second["id"]


async def test_a_server_requiring_tokens_refuses_calls_without_one(database: Database) -> None:
    coord = await Coordinator.open(database.url)
    try:
        from coordinator.context import OPERATOR

        await coord.planning.create_project(OPERATOR, name="p")
        token = (await coord.agents.register(OPERATOR, persona="implementer")).token
    finally:
        await coord.close()
    with running_http_server(database.url, require_token=True) as base:
        async with httpx2.AsyncClient() as http:
            anonymous = await http.post(
                f"{base}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Accept": "application/json, text/event-stream"},
            )
            assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]
            assert "fix" in anonymous.json()
        async with http_client(f"{base}/mcp/observer", token=token) as agent:
            assert (await ok(agent, "project_status", {}))["project"]["name"] == "p"


def test_listening_beyond_loopback_needs_tokens() -> None:
    check_exposure("127.0.0.1", False)
    check_exposure("::1", False)
    check_exposure("0.0.0.0", True)
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0"):
        check_exposure("0.0.0.0", False)
    with pytest.raises(ConfigError, match="--require-token"):
        check_exposure("192.168.1.20", False)
    assert parse_listen(None) == ("127.0.0.1", 8765)
    assert parse_listen("9000") == ("127.0.0.1", 9000)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:8765") == ("::1", 8765)
    with pytest.raises(InvalidInput, match="--http"):
        parse_listen("host:port")


def test_cli_refuses_to_serve_http_on_all_interfaces_without_tokens(tmp_path: Any, capsys: Any) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert cli_main(["--database", url, "serve", "--http", "0.0.0.0:8765"]) == 1
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err


async def test_yokeflow_serve_http_command(tmp_path: Any) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *(
            "-m",
            "launcher.cli",
            "--database",
            url,
            "serve",
            "--http",
            f"127.0.0.1:{port}",
            "--project",
            "demo",
        ),
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient() as http:
            deadline = time.monotonic() + 30
            while True:
                if process.returncode is not None:
                    pytest.fail(f"yokeflow serve --http stopped: {(await process.communicate())[1].decode()}")
                try:
                    if (await http.get(f"{base}/api/health")).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < deadline, "yokeflow serve --http did not come up"
                await asyncio.sleep(0.1)
        async with http_client(f"{base}/mcp") as client:
            await ok(client, "create_project", {"name": "other"})
            await ok(client, "create_project", {"name": "demo"})
            task = await ok(client, "create_task", {"title": "in the default project"})  # --project demo
            assert (await ok(client, "project_status", {}))["project"]["name"] == "demo"
            assert task["project_id"] == 2
        async with http_client(f"{base}/mcp/yokeflow") as client:
            assert (await ok(client, "get_next_task", {}))["task"]["task"]["id"] == task["id"]
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
