"""Agent sessions, read from the audit log, on both backends: one per lease, ending as the lease did."""

from __future__ import annotations

import pytest

from coordinator.context import OPERATOR
from coordinator.errors import PermissionDenied
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from coordinator.sessions import SessionRecord
from tests.conftest import ManualClock
from tests.test_coordination import claimed, worker


async def sessions(coord: Coordinator, limit: int = 50) -> list[SessionRecord]:
    return await coord.observe.session_history(OPERATOR, project="p", limit=limit)


async def tasks(coord: Coordinator, *titles: str) -> list[int]:
    created = await coord.planning.create_tasks(OPERATOR, [NewTask(title=t) for t in titles], project="p")
    return [t.id for t in created]


async def test_each_lease_is_a_session_that_ends_as_the_lease_did(
    coord: Coordinator, clock: ManualClock
) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    done, failed, released, running = await tasks(coord, "done", "failed", "released", "running")
    ada, bob = await worker(coord, name="ada"), await worker(coord, name="bob")

    lease = (await claimed(coord, ada)).lease.lease_id
    clock.advance(30)
    await coord.work.complete(ada, task_id=done, lease_id=lease, summary="built it")
    clock.advance(1)  # the Claude runner records the cost after completing
    await coord.costs.record(ada, model="sonnet", cost_usd=0.25, task_id=done)
    await coord.costs.record(bob, model="sonnet", cost_usd=5.0, task_id=done)  # someone else's
    lease = (await claimed(coord, ada)).lease.lease_id
    await coord.work.fail(ada, task_id=failed, lease_id=lease, error="tests are red")
    lease = (await claimed(coord, bob)).lease.lease_id
    await coord.work.release(bob, task_id=released, lease_id=lease, note="out of time")
    assert (await claimed(coord, bob)).task.id == released
    assert (await claimed(coord, ada)).task.id == running

    newest_first = await sessions(coord)
    assert [(s.task_title, s.agent_name, s.status, s.attempt) for s in newest_first] == [
        ("running", "ada", "running", 1),
        ("released", "bob", "running", 1),  # a release gives the attempt back
        ("released", "bob", "released", 1),
        ("failed", "ada", "failed", 1),
        ("done", "ada", "completed", 1),
    ]
    first = newest_first[-1]
    assert first.summary == "built it" and first.cost_usd == 0.25
    assert first.ended_at is not None and first.ended_at - first.started_at == 30
    assert newest_first[-2].summary == "tests are red"
    assert newest_first[-3].summary == "out of time"
    assert all(s.ended_at is None and s.summary is None for s in newest_first[:2])
    assert [s.task_id for s in await sessions(coord, limit=2)] == [running, released]

    # The failed task comes back after its backoff: a second attempt, a second session.
    clock.advance(3600)
    retried = await claimed(coord, ada)
    assert retried.task.id == failed
    latest = (await sessions(coord, limit=1))[0]
    assert (latest.task_id, latest.attempt, latest.status) == (failed, 2, "running")


async def test_an_expired_lease_ends_its_session_whether_or_not_it_was_noted(
    coord: Coordinator, clock: ManualClock
) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    taken_over, swept, forgotten = await tasks(coord, "taken over", "swept", "forgotten")
    ada, bob = await worker(coord, name="ada"), await worker(coord, name="bob")
    for _ in range(3):
        await claimed(coord, ada)
    clock.advance(coord.config.leases.ttl_seconds + 1)
    expired_at = clock.now - 1

    # Nobody noted it yet: the lease ran out at its expiry time.
    by_task = {s.task_id: s for s in await sessions(coord)}
    assert {s.status for s in by_task.values()} == {"expired"}
    assert {s.ended_at for s in by_task.values()} == {expired_at}

    takeover = await claimed(coord, bob)  # takes the first task over
    assert takeover.task.id == taken_over
    await coord.work.sweep()  # notes the other two
    clock.advance(5)
    await coord.planning.create_project(OPERATOR, name="q")  # moves nothing in p

    history = await sessions(coord)
    assert [(s.task_id, s.agent_name, s.status, s.attempt) for s in history] == [
        (taken_over, "bob", "running", 2),
        (forgotten, "ada", "expired", 1),
        (swept, "ada", "expired", 1),
        (taken_over, "ada", "expired", 1),
    ]
    assert history[-1].ended_at == clock.now - 5  # the take-over's claim ended it


async def test_a_planner_cancelling_or_reopening_a_running_task_ends_its_session(
    coord: Coordinator,
) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    dropped, redone = await tasks(coord, "dropped", "redone")
    ada = await worker(coord, name="ada")
    await claimed(coord, ada)
    await claimed(coord, ada)
    await coord.work.cancel(OPERATOR, task_id=dropped, reason="not needed")
    await coord.work.reopen(OPERATOR, task_id=redone, reason="spec changed")
    by_task = {s.task_id: (s.status, s.summary) for s in await sessions(coord)}
    assert by_task == {dropped: ("cancelled", "not needed"), redone: ("reopened", "spec changed")}


async def test_sessions_stay_in_their_project(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    await coord.planning.create_project(OPERATOR, name="q")
    await tasks(coord, "mine")
    ada = await worker(coord, name="ada")
    outsider = await worker(coord, project="q", name="eve")
    await claimed(coord, ada)
    assert await coord.observe.session_history(OPERATOR, project="q") == []
    assert [s.agent_name for s in await coord.observe.session_history(ada)] == ["ada"]
    with pytest.raises(PermissionDenied, match="belongs to project"):
        await coord.observe.session_history(outsider, project="p")
