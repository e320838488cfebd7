"""The token → agent cache of the HTTP server: fewer reads, and still no access for a wrong or stopped token."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.records import Agent
from coordinator.service import Coordinator
from tests.conftest import ManualClock
from tests.test_mcp_support import connect, make_project, ok, refused, worker_token
from tools.token_cache import TokenCache


def _agent(agent_id: int) -> Agent:
    return Agent.model_validate(
        {
            "id": agent_id,
            "project_id": 1,
            "name": f"a{agent_id}",
            "persona": "implementer",
            "role": "worker",
            "capabilities": "[]",
            "token_hash": "x",
            "status": "active",
            "last_heartbeat_at": 0.0,
            "worktree": None,
            "pid": None,
            "created_at": 0.0,
        }
    )


def test_entries_expire_can_be_forgotten_and_stay_bounded() -> None:
    clock = ManualClock(0.0)
    cache = TokenCache(5, max_entries=3, clock=clock)
    cache.put("yf_a", _agent(1))
    cache.put("yf_b", _agent(2))
    assert cache.get("yf_a") == _agent(1) and cache.get("yf_other") is None
    assert "yf_a" not in str(cache._entries), "keys are hashes, not tokens"
    clock.advance(4.9)
    assert cache.get("yf_b") is not None
    clock.advance(0.2)
    assert cache.get("yf_a") is None and cache.get("yf_b") is None
    cache.put("yf_a", _agent(1))
    cache.forget(1)
    assert cache.get("yf_a") is None
    for n in range(10):
        cache.put(f"yf_{n}", _agent(n))
        assert len(cache._entries) <= 3


@pytest.fixture
def reads(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the coordinator is asked to authenticate."""
    seen: list[str] = []
    authenticate = coord.agents.authenticate

    async def counting(token: str) -> Any:
        seen.append(token)
        return await authenticate(token)

    monkeypatch.setattr(coord.agents, "authenticate", counting)
    return seen


async def test_a_cached_token_skips_the_read_until_it_expires(
    coord: Coordinator, reads: list[str], make_clock: Any
) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
        await ok(operator, "create_task", {"title": "A"})
        token = await worker_token(operator)
    clock = make_clock(0.0)
    cache = TokenCache(5, clock=clock)
    async with connect(coord, "worker", token=token, tokens=cache) as worker:
        claimed = await ok(worker, "claim_task", {})
        await ok(
            worker, "heartbeat", {"task_id": claimed["task"]["id"], "lease_id": claimed["lease"]["lease_id"]}
        )
        assert reads == [token], "one read for two calls"

        # Stopped behind the server's back (no such tool yet): still accepted while the entry lives…
        async with coord.store.transaction() as tx:
            await tx.execute("UPDATE agents SET status = 'stopped'")
        await ok(worker, "get_task", {"task_id": claimed["task"]["id"]})
        clock.advance(5)
        # …and refused once it expired.
        await refused(
            worker, "get_task", {"task_id": 1}, "the bearer token is not valid (its agent was stopped)"
        )
        await refused(worker, "get_task", {"task_id": 1}, "not valid")
        assert reads == [token, token, token], "a refused token is not remembered"


async def test_forget_drops_an_agent_at_once(coord: Coordinator, reads: list[str]) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
        token = await worker_token(operator)
    cache = TokenCache(60)
    async with connect(coord, "worker", token=token, tokens=cache) as worker:
        first = await ok(worker, "claim_task", {})
        await ok(worker, "claim_task", {})
        assert len(reads) == 1
        cache.forget(first["agent_id"])
        await ok(worker, "claim_task", {})
        assert len(reads) == 2


async def test_wrong_tokens_are_read_every_time(coord: Coordinator, reads: list[str]) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
    async with connect(coord, token="yf_wrong", tokens=TokenCache(60)) as stranger:
        for _ in range(2):
            await refused(stranger, "project_status", {}, "permission denied: the bearer token is not valid")
    assert reads == ["yf_wrong", "yf_wrong"]
