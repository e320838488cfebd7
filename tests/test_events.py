"""The audit log as a cursor: a reader following after_id never skips an event that commits late."""

from __future__ import annotations

import asyncio

from coordinator.events import append_event, read_events
from coordinator.storage import Store
from coordinator.storage.base import CommitHooks


async def test_a_late_commit_is_not_skipped_by_a_reader_that_moved_on(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await tx.fetchval(
            "INSERT INTO projects (name, created_at, updated_at) VALUES ('p', 0, 0) RETURNING id"
        )
    slow_inserted, slow_may_commit = asyncio.Event(), asyncio.Event()

    async def slow_writer() -> None:
        async with store.transaction() as tx:
            append_event(tx, now=0, kind="slow", actor="test", project_id=project_id)
            assert isinstance(tx, CommitHooks)
            await tx.run_before_commit()  # the event row exists, its transaction is still open
            slow_inserted.set()
            await slow_may_commit.wait()

    slow = asyncio.create_task(slow_writer())
    if store.backend == "postgresql":  # SQLite has one writer at a time: the slow one must finish first
        await slow_inserted.wait()
        async with store.transaction() as tx:
            append_event(tx, now=0, kind="fast", actor="test", project_id=project_id)
        first = await read_events(store, project_id=project_id)
        assert [e.kind for e in first] == ["fast"]
        slow_may_commit.set()
        await slow
        later = await read_events(store, project_id=project_id, after_id=first[-1].id)
        assert [e.kind for e in later] == ["slow"]
    else:
        slow_may_commit.set()
        await slow
        async with store.transaction() as tx:
            append_event(tx, now=0, kind="fast", actor="test", project_id=project_id)
        first = await read_events(store, project_id=project_id)
        assert [e.kind for e in first] == ["slow", "fast"]
    every = await read_events(store, project_id=project_id)
    assert len({e.id for e in every}) == 2 and [e.id for e in every] == sorted(e.id for e in every)


async def test_events_roll_back_with_their_transaction(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await tx.fetchval(
            "INSERT INTO projects (name, created_at, updated_at) VALUES ('p', 0, 0) RETURNING id"
        )
    try:
        async with store.transaction() as tx:
            append_event(tx, now=0, kind="doomed", actor="test", project_id=project_id)
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert await read_events(store, project_id=project_id) == []
