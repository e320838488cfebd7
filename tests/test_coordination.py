"""The coordination core on both backends: claims, leases, fencing, retries, scoping, audit."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.errors import InvalidInput, LeaseLost, NotFound, PermissionDenied, StateConflict
from coordinator.events import NOTIFY_CHANNEL, read_events
from coordinator.planning import NewTask
from coordinator.records import TaskStatus
from coordinator.service import Coordinator
from coordinator.work import Claimed, NoWork
from tests.conftest import ManualClock


async def worker(
    coord: Coordinator, project: str = "p", persona: str = "implementer", name: str = "w"
) -> Caller:
    registered = await coord.agents.register(OPERATOR, persona=persona, project=project, name=name)
    return agent_caller(registered.agent)


async def claimed(coord: Coordinator, caller: Caller) -> Claimed:
    outcome = await coord.work.claim(caller)
    assert isinstance(outcome, Claimed), outcome
    return outcome


async def setup_chain(coord: Coordinator) -> list[int]:
    """Project p: a -> b -> c (hard), plus an independent d of low priority."""
    await coord.planning.create_project(OPERATOR, name="p")
    (a,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="a")], project="p")
    (b,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="b", depends_on=[a.id])], project="p")
    (c,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="c", depends_on=[b.id])], project="p")
    (d,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="d", priority=5)], project="p")
    return [a.id, b.id, c.id, d.id]


async def test_claim_follows_dependencies_priority_and_critical_path(coord: Coordinator) -> None:
    a, _, _, d = await setup_chain(coord)
    (e_task,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="e")], project="p")
    e = e_task.id
    w1, w2, w3 = [await worker(coord, name=f"w{i}") for i in range(3)]
    # a heads the longest chain (3), so it goes before e (1); d has a lower priority (5).
    assert (await claimed(coord, w1)).task.id == a
    assert (await claimed(coord, w2)).task.id == e
    assert (await claimed(coord, w3)).task.id == d
    outcome = await coord.work.claim(w3)
    assert isinstance(outcome, NoWork) and outcome.reason == "waiting"
    assert "running" in outcome.message


async def test_complete_unblocks_dependents_and_closes_the_epic(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    epic = await coord.planning.create_epic(OPERATOR, name="api", project="p")
    first, second = await coord.planning.create_tasks(
        OPERATOR,
        [NewTask(title="schema", epic_id=epic.id), NewTask(title="routes", epic_id=epic.id)],
        project="p",
    )
    await coord.planning.add_dependency(OPERATOR, task_id=second.id, depends_on=first.id)
    w = await worker(coord)
    c1 = await claimed(coord, w)
    assert c1.task.id == first.id
    await coord.work.complete(
        w,
        task_id=first.id,
        lease_id=c1.lease.lease_id,
        summary="tables made",
        files_changed=["schema.sql"],
        commit="abc123",
    )
    c2 = await claimed(coord, w)
    assert c2.task.id == second.id
    assert [(d.task_id, d.summary, d.files_changed, d.commit) for d in c2.context.dependencies] == [
        (first.id, "tables made", ["schema.sql"], "abc123")
    ]
    await coord.work.complete(w, task_id=second.id, lease_id=c2.lease.lease_id)
    async with coord.store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT status FROM epics WHERE id = $1", epic.id) == "done"
        kinds = [e.kind for e in await read_events(coord.store, project_id=None)]
    assert kinds.count("task_completed") == 2 and "task_ready" in kinds and kinds[-1] == "epic_completed"
    outcome = await coord.work.claim(w)
    assert isinstance(outcome, NoWork) and outcome.reason == "all_done"


async def test_heartbeat_extends_and_stale_leases_are_rejected(
    coord: Coordinator, clock: ManualClock
) -> None:
    a, *_ = await setup_chain(coord)
    w1, w2 = await worker(coord, name="w1"), await worker(coord, name="w2")
    first = await claimed(coord, w1)
    assert first.lease.lease_id.endswith("-a1") and first.lease.attempt == 1
    clock.advance(200)
    lease = await coord.work.heartbeat(w1, task_id=a, lease_id=first.lease.lease_id, progress_note="half way")
    assert lease.expires_at == clock.now + 300
    clock.advance(250)  # 450 s after the claim, still alive thanks to the heartbeat
    outcome = await coord.work.claim(w2)
    assert isinstance(outcome, Claimed) and outcome.task.id != a
    clock.advance(100)  # now expired
    second = await coord.work.claim(w2)
    assert isinstance(second, Claimed) and second.task.id == a
    assert second.lease.attempt == 2 and second.lease.lease_id.endswith("-a2")
    assert second.context.handoff_note == "half way"
    for call in (
        coord.work.heartbeat(w1, task_id=a, lease_id=first.lease.lease_id),
        coord.work.complete(w1, task_id=a, lease_id=first.lease.lease_id, summary="late"),
        coord.work.fail(w1, task_id=a, lease_id=first.lease.lease_id, error="late"),
        coord.work.release(w1, task_id=a, lease_id=first.lease.lease_id),
    ):
        with pytest.raises(LeaseLost) as caught:
            await call
        assert "lease lost" in str(caught.value) and "attempt 2" in str(caught.value)
    # another agent's current lease id is no good to w1 either
    with pytest.raises(LeaseLost):
        await coord.work.complete(w1, task_id=a, lease_id=second.lease.lease_id)
    async with coord.store.transaction(write=False) as tx:
        row = await tx.fetchrow("SELECT status, summary, lease_owner FROM tasks WHERE id = $1", a)
    assert row == {"status": "in_progress", "summary": None, "lease_owner": w2.agent.id}  # type: ignore[union-attr]
    done = await coord.work.complete(w2, task_id=a, lease_id=second.lease.lease_id, summary="ok")
    assert done.status == TaskStatus.DONE and done.attempts == 2


async def test_retries_back_off_then_dead_letter(coord: Coordinator, clock: ManualClock) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    (task,) = await coord.planning.create_tasks(
        OPERATOR, [NewTask(title="flaky", max_attempts=3)], project="p"
    )
    w = await worker(coord)
    delays = []
    for attempt in (1, 2, 3):
        c = await claimed(coord, w)
        assert c.lease.attempt == attempt
        failed = await coord.work.fail(w, task_id=task.id, lease_id=c.lease.lease_id, error=f"boom {attempt}")
        if attempt < 3:
            assert failed.status == TaskStatus.PENDING
            delays.append(failed.available_at - clock.now)
            blocked = await coord.work.claim(w)
            assert isinstance(blocked, NoWork) and blocked.counts["in_backoff"] == 1
            clock.advance(delays[-1] + 0.01)
        else:
            assert failed.status == TaskStatus.FAILED and failed.last_error == "boom 3"
    assert 0 < delays[0] < delays[1]  # 5 s then 10 s, each within ±20 %
    assert 4 <= delays[0] <= 6 and 8 <= delays[1] <= 12
    outcome = await coord.work.claim(w)
    assert isinstance(outcome, NoWork) and outcome.reason == "blocked_by_failures"
    reopened = await coord.work.reopen(OPERATOR, task_id=task.id, reason="fixed the flake")
    assert reopened.status == TaskStatus.PENDING and reopened.attempts == 0
    assert (await claimed(coord, w)).task.id == task.id


async def test_non_retryable_failure_and_release(coord: Coordinator) -> None:
    a, *_ = await setup_chain(coord)
    w = await worker(coord)
    first = await claimed(coord, w)
    released = await coord.work.release(w, task_id=a, lease_id=first.lease.lease_id, note="need a break")
    assert released.status == TaskStatus.PENDING and released.attempts == 0
    again = await claimed(coord, w)
    assert again.task.id == a and again.lease.attempt == 1 and again.context.handoff_note == "need a break"
    failed = await coord.work.fail(
        w, task_id=a, lease_id=again.lease.lease_id, error="spec is wrong", retryable=False
    )
    assert failed.status == TaskStatus.FAILED
    with pytest.raises(LeaseLost):  # failing twice
        await coord.work.fail(w, task_id=a, lease_id=again.lease.lease_id, error="again")


async def test_expired_lease_on_last_attempt_is_dead_lettered_by_the_sweep(
    coord: Coordinator, clock: ManualClock
) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    (task,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="x", max_attempts=1)], project="p")
    w = await worker(coord)
    await claimed(coord, w)
    clock.advance(301)
    assert await coord.work.sweep() == {"expired": 1, "agents_lost": 0}
    assert await coord.work.sweep() == {"expired": 0, "agents_lost": 0}
    outcome = await coord.work.claim(w)
    assert isinstance(outcome, NoWork) and outcome.reason == "blocked_by_failures"
    async with coord.store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT status FROM tasks WHERE id = $1", task.id) == "failed"
        kinds = [e.kind for e in await read_events(coord.store, project_id=None, task_id=task.id)]
    assert kinds == ["task_created", "task_claimed", "lease_expired", "task_failed"]


async def test_a_claim_that_finds_nothing_dead_letters_expired_last_attempts(
    coord: Coordinator, clock: ManualClock
) -> None:
    """Without any sweep scheduled, the claim itself notices a lease that expired on the last attempt."""
    await coord.planning.create_project(OPERATOR, name="p")
    _ = await coord.planning.create_tasks(OPERATOR, [NewTask(title="x", max_attempts=1)], project="p")
    w = await worker(coord)
    await claimed(coord, w)
    clock.advance(301)
    outcome = await coord.work.claim(w)
    assert isinstance(outcome, NoWork) and outcome.reason == "blocked_by_failures", outcome
    assert outcome.counts["failed"] == 1


async def test_agents_never_see_another_projects_tasks(coord: Coordinator) -> None:
    for name in ("alpha", "beta"):
        await coord.planning.create_project(OPERATOR, name=name)
        await coord.planning.create_tasks(
            OPERATOR, [NewTask(title=f"{name}-{i}") for i in range(3)], project=name
        )
    wa = await worker(coord, project="alpha")
    wb = await worker(coord, project="beta")
    seen: dict[str, set[int]] = {"alpha": set(), "beta": set()}
    for caller, name in ((wa, "alpha"), (wb, "beta")):
        for _ in range(3):
            c = await claimed(coord, caller)
            assert c.task.title.startswith(name)
            seen[name].add(c.task.id)
            await coord.work.complete(caller, task_id=c.task.id, lease_id=c.lease.lease_id)
        assert (await coord.work.claim(caller)).reason == "all_done"  # type: ignore[union-attr]
    beta_task = next(iter(seen["beta"]))
    with pytest.raises(NotFound):
        await coord.work.heartbeat(wa, task_id=beta_task, lease_id="x-a1")
    with pytest.raises(PermissionDenied):
        await coord.agents.list_agents(wa, project="beta")


async def test_persona_matching(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    (review,) = await coord.planning.create_tasks(
        OPERATOR, [NewTask(title="review", persona="reviewer", priority=-1)], project="p"
    )
    (general,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="general")], project="p")
    implementer = await worker(coord, persona="implementer")
    reviewer = await worker(coord, persona="reviewer")
    assert (await claimed(coord, implementer)).task.id == general.id
    outcome = await coord.work.claim(implementer)
    assert isinstance(outcome, NoWork) and outcome.reason == "other_personas"
    assert (await claimed(coord, reviewer)).task.id == review.id


async def test_tasks_sharing_a_predicted_file_are_not_leased_at_once(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    one, two, three = await coord.planning.create_tasks(
        OPERATOR,
        [
            NewTask(title="one", predicted_files=["api/users.py"]),
            NewTask(title="two", predicted_files=["api/users.py", "api/auth.py"]),
            NewTask(title="three", predicted_files=["web/app.js"]),
        ],
        project="p",
    )
    w1, w2, w3 = [await worker(coord, name=f"w{i}") for i in range(3)]
    first = await claimed(coord, w1)
    assert first.task.id == one.id
    assert (await claimed(coord, w2)).task.id == three.id
    assert isinstance(await coord.work.claim(w3), NoWork)
    await coord.work.complete(w1, task_id=one.id, lease_id=first.lease.lease_id)
    assert (await claimed(coord, w3)).task.id == two.id


async def test_budget_exhausted_stops_claims(database, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    from coordinator.config import Config

    config = Config.model_validate({"cost": {"budget_limit_usd": 1.0}})
    coord = await Coordinator.open(database.url, config, clock=clock)
    try:
        await coord.planning.create_project(OPERATOR, name="p")
        await coord.planning.create_tasks(OPERATOR, [NewTask(title="x")], project="p")
        w = await worker(coord)
        async with coord.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO agent_costs (project_id, model, cost_usd, created_at) VALUES (1, 'sonnet', 1.0, 0)"
            )
        outcome = await coord.work.claim(w, wait_seconds=5)
        assert isinstance(outcome, NoWork) and outcome.reason == "budget_exhausted"
        assert "cost.budget_limit_usd" in outcome.message
    finally:
        await coord.close()


async def test_complete_refuses_while_a_test_fails(coord: Coordinator) -> None:
    a, *_ = await setup_chain(coord)
    test = await coord.planning.create_test(OPERATOR, task_id=a, description="login works")
    w = await worker(coord)
    c = await claimed(coord, w)
    await coord.planning.update_test_result(w, test_id=test.id, passes=False, notes="500 on POST")
    with pytest.raises(StateConflict) as caught:
        await coord.work.complete(w, task_id=a, lease_id=c.lease.lease_id)
    assert "login works" in str(caught.value)
    await coord.planning.update_test_result(w, test_id=test.id, passes=True)
    assert (await coord.work.complete(w, task_id=a, lease_id=c.lease.lease_id)).status == TaskStatus.DONE


async def test_bad_input_is_refused_and_changes_nothing(coord: Coordinator) -> None:
    a, b, *_ = await setup_chain(coord)
    w = await worker(coord)
    async with coord.store.transaction(write=False) as tx:
        before = await tx.fetchval("SELECT COUNT(*) FROM events")
    with pytest.raises(NotFound):
        await coord.work.heartbeat(w, task_id=9999, lease_id="nope")
    with pytest.raises(LeaseLost):  # completing a task that is not leased
        await coord.work.complete(w, task_id=a, lease_id="nope-a1")
    for ttl in (-1, 0, 1e9, float("nan")):
        with pytest.raises(InvalidInput) as caught:
            await coord.work.claim(w, ttl_seconds=ttl)
        assert "ttl_seconds" in str(caught.value)
    with pytest.raises(InvalidInput):
        await coord.work.claim(w, wait_seconds=-3)
    with pytest.raises(NotFound) as persona_error:
        await coord.agents.register(OPERATOR, persona="wizard", project="p")
    assert "implementer" in str(persona_error.value)
    with pytest.raises(PermissionDenied):
        await coord.planning.create_tasks(w, [NewTask(title="sneaky")])
    with pytest.raises(PermissionDenied):
        await coord.work.claim(OPERATOR)
    from coordinator.errors import CycleError

    with pytest.raises(CycleError) as cycle:
        await coord.planning.add_dependency(OPERATOR, task_id=a, depends_on=b)
    assert f"{a} -> {b} -> {a}" in str(cycle.value) or f"{b} -> {a} -> {b}" in str(cycle.value)
    with pytest.raises(NotFound):
        await coord.planning.add_dependency(OPERATOR, task_id=a, depends_on=424242)
    with pytest.raises(NotFound) as unknown:
        await coord.planning.create_tasks(
            OPERATOR, [NewTask(title="ok"), NewTask(title="bad", depends_on=[777])], project="p"
        )
    assert "tasks[1].depends_on: task 777" in str(unknown.value)
    async with coord.store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM events") == before
        assert await tx.fetchval("SELECT COUNT(*) FROM tasks WHERE title = 'ok'") == 0


async def test_long_poll_wakes_when_work_becomes_ready(coord: Coordinator) -> None:
    a, b, *_ = await setup_chain(coord)
    w1, w2 = await worker(coord, name="w1"), await worker(coord, name="w2")
    first = await claimed(coord, w1)
    d_claim = await claimed(coord, w2)  # d
    waiting = asyncio.create_task(coord.work.claim(w2, wait_seconds=30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await coord.work.complete(w1, task_id=a, lease_id=first.lease.lease_id)
    outcome = await asyncio.wait_for(waiting, 10)
    assert isinstance(outcome, Claimed) and outcome.task.id == b
    assert d_claim.task.id != b


async def test_every_transition_is_audited_in_order(coord: Coordinator) -> None:
    a, *_ = await setup_chain(coord)
    w = await worker(coord)
    c = await claimed(coord, w)
    await coord.work.heartbeat(w, task_id=a, lease_id=c.lease.lease_id, progress_note="n")
    await coord.work.complete(w, task_id=a, lease_id=c.lease.lease_id)
    events = await read_events(coord.store, project_id=None, task_id=a)
    page = await read_events(coord.store, project_id=None, after_id=events[1].id, task_id=a)
    assert [(e.kind, e.before_status, e.after_status) for e in events] == [
        ("task_created", None, "pending"),
        ("task_claimed", "pending", "in_progress"),
        ("lease_heartbeat", None, None),
        ("task_completed", "in_progress", "done"),
    ]
    assert [e.id for e in page] == [e.id for e in events[2:]]
    assert events[1].actor.startswith("agent:") and events[1].agent_id == w.agent.id  # type: ignore[union-attr]


async def test_a_waiting_claim_is_woken_by_another_process(database, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """Two coordinators on one database: a completion in one wakes a long-poll in the other.

    Polling is switched off (an hour), so only the cross-process signal can wake the claim:
    LISTEN/NOTIFY on PostgreSQL. SQLite has no such signal and relies on polling.
    """
    if database.backend == "sqlite":
        pytest.skip("SQLite has no cross-process notification; waiting claims poll instead")
    first = await Coordinator.open(database.url, clock=clock)
    second = await Coordinator.open(database.url, clock=clock)
    try:
        a, b, *_ = await setup_chain(first)
        w1 = await worker(first, name="w1")
        w2 = agent_caller((await second.agents.register(OPERATOR, persona="implementer", name="w2")).agent)
        lease = await claimed(first, w1)
        await claimed(second, w2)  # d, the only other ready task
        second.work.poll_seconds = 3600
        waiting = asyncio.create_task(second.work.claim(w2, wait_seconds=60))
        await asyncio.sleep(0.1)
        await first.work.complete(w1, task_id=a, lease_id=lease.lease.lease_id)
        outcome = await asyncio.wait_for(waiting, 120)
        assert isinstance(outcome, Claimed) and outcome.task.id == b
    finally:
        await first.close()
        await second.close()


async def test_claims_and_heartbeats_send_no_notify_but_completions_do(database, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL a NOTIFY wakes claims waiting in other processes; events that cannot make a
    task claimable do without it. Markers sent around the calls make the check exact: the
    notifications of one channel arrive in commit order."""
    if database.backend == "sqlite":
        pytest.skip("SQLite has no cross-process notification")
    import asyncpg

    received: list[str] = []
    marked = {"first": asyncio.Event(), "second": asyncio.Event()}

    def heard(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        received.append(payload)
        if payload in marked:
            marked[payload].set()

    listener = await asyncpg.connect(database.url)
    await listener.add_listener(NOTIFY_CHANNEL, heard)
    coord = await Coordinator.open(database.url, clock=clock)
    try:
        a, *_ = await setup_chain(coord)
        w = await worker(coord)
        await listener.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'first'")
        await asyncio.wait_for(marked["first"].wait(), 60)
        received.clear()
        held = await claimed(coord, w)
        await coord.work.heartbeat(w, task_id=a, lease_id=held.lease.lease_id)
        await coord.work.complete(w, task_id=a, lease_id=held.lease.lease_id)
        await listener.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'second'")
        await asyncio.wait_for(marked["second"].wait(), 60)
        assert received == [str(held.task.project_id), "second"]
    finally:
        await coord.close()
        await listener.close()


async def test_heartbeats_keep_the_lease_length_the_claim_asked_for(
    coord: Coordinator, clock: ManualClock
) -> None:
    a, *_ = await setup_chain(coord)
    w = await worker(coord)
    short = await coord.work.claim(w, ttl_seconds=30)
    assert isinstance(short, Claimed) and short.lease.ttl_seconds == 30
    clock.advance(10)
    lease = await coord.work.heartbeat(w, task_id=a, lease_id=short.lease.lease_id)
    assert lease.expires_at == clock.now + 30 and lease.ttl_seconds == 30
    longer = await coord.work.heartbeat(w, task_id=a, lease_id=short.lease.lease_id, ttl_seconds=600)
    assert longer.expires_at == clock.now + 600
    again = await coord.work.heartbeat(w, task_id=a, lease_id=short.lease.lease_id)
    assert again.ttl_seconds == 600


async def test_the_background_sweeper_notes_expiries_and_lost_agents(
    coord: Coordinator, clock: ManualClock
) -> None:
    await setup_chain(coord)
    w = await worker(coord)
    await claimed(coord, w)
    clock.advance(1000)  # past the lease (300 s) and the agent ttl (900 s)
    sweeper = asyncio.create_task(coord.sweep_forever(0.01))
    try:
        for _ in range(500):
            kinds = {e.kind for e in await read_events(coord.store, project_id=None, limit=1000)}
            if {"lease_expired", "agent_lost"} <= kinds:
                break
            await asyncio.sleep(0.01)
        assert {"lease_expired", "agent_lost"} <= kinds
    finally:
        sweeper.cancel()
    async with coord.store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT status FROM agents WHERE id = $1", w.agent.id) == "lost"  # type: ignore[union-attr]
    # the lost agent comes back as soon as it calls again
    assert isinstance(await coord.work.claim(w), Claimed)
    async with coord.store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT status FROM agents WHERE id = $1", w.agent.id) == "active"  # type: ignore[union-attr]


async def test_claiming_one_named_task_says_why_it_is_not_ready(coord: Coordinator) -> None:
    a, b, _, d = await setup_chain(coord)
    w1, w2 = await worker(coord, name="w1"), await worker(coord, name="w2")
    waiting = await coord.work.claim(w1, task_id=b)
    assert isinstance(waiting, NoWork) and waiting.reason == "task_not_ready"
    assert f"waits on unfinished dependencies [{a}]" in waiting.message
    took = await coord.work.claim(w1, task_id=d)  # not the first in claim order, but ready
    assert isinstance(took, Claimed) and took.task.id == d
    busy = await coord.work.claim(w2, task_id=d)
    assert isinstance(busy, NoWork) and "being worked on" in busy.message
    with pytest.raises(NotFound):
        await coord.work.claim(w2, task_id=4242)
