"""The audit log: every state change appends an event in the same transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from coordinator.records import Event
from coordinator.storage.base import Store, Tx, encode_json

if TYPE_CHECKING:
    from coordinator.context import Caller
    from coordinator.records import Task, TaskStatus

NOTIFY_CHANNEL = "yokeflow_events"
_EVENT_ORDER_LOCK = 0x59F1E7E0
_COLUMNS = "project_id, task_id, agent_id, actor, kind, before_status, after_status, payload, created_at"
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_INSERT_POSTGRES = (
    f"INSERT INTO events ({_COLUMNS}) SELECT $1::bigint, $2::bigint, $3::bigint, $4::text, $5::text, "
    "$6::text, $7::text, $8::jsonb, $9::double precision"
)
_INSERT_POSTGRES_NOTIFY = (  # the NOTIFY rides along in the same round trip
    f"{_INSERT_POSTGRES} FROM pg_notify('{NOTIFY_CHANNEL}', $10)"
)
QUIET_KINDS = frozenset({"task_claimed", "lease_heartbeat", "task_branch_ready", "cost_recorded"})
"""Events that cannot make a task claimable: on PostgreSQL they send no NOTIFY.

A NOTIFY is a wake-up hint for claims waiting in other processes, and costs PostgreSQL about
as much as the rest of a small transaction; claims and heartbeats are the most frequent events.
Event streams in other processes still see these within their poll interval.
"""
# Readers give committed events their positions one batch at a time, under a lock: an
# event that commits after a batch can only get a later position than every event in it.
_SEQUENCE = (
    "UPDATE events e SET seq = base.top + r.n "
    "FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM events WHERE seq IS NULL) r, "
    "(SELECT COALESCE(MAX(seq), 0) AS top FROM events) base WHERE e.id = r.id"
)


def append_event(
    tx: Tx,
    *,
    now: float,
    kind: str,
    actor: str,
    project_id: int | None,
    task_id: int | None = None,
    agent_id: int | None = None,
    before: str | None = None,
    after: str | None = None,
    payload: dict[str, Any] | None = None,
) -> None:
    """Append one event to the log as the transaction commits (or not at all).

    Events are written last in the transaction. On PostgreSQL a NOTIFY goes with them (a
    wake-up hint for other processes), unless their kind is in `QUIET_KINDS`, and their
    position in the log is given later by `read_events`, in commit order.
    """
    values = (
        project_id,
        task_id,
        agent_id,
        actor,
        kind,
        before,
        after,
        encode_json(payload or {}),
        now,
    )

    async def write() -> None:
        if tx.backend != "postgresql":
            await tx.execute(_INSERT, *values)
        elif kind in QUIET_KINDS:
            await tx.execute(_INSERT_POSTGRES, *values)
        else:
            await tx.execute(_INSERT_POSTGRES_NOTIFY, *values, str(project_id or 0))

    tx.before_commit(write)


def task_event(
    tx: Tx,
    now: float,
    kind: str,
    caller: Caller,
    task: Task,
    after: TaskStatus | None,
    payload: dict[str, Any],
) -> None:
    """The audit event of something `caller` did to `task` (as it was before): with `after`, a
    transition from its status to `after`; with None, a change that leaves the status alone."""
    append_event(
        tx,
        now=now,
        kind=kind,
        actor=caller.name,
        project_id=task.project_id,
        task_id=task.id,
        agent_id=caller.agent.id if caller.agent else None,
        before=task.status if after is not None else None,
        after=after,
        payload=payload,
    )


@asynccontextmanager
async def positioned(store: Store) -> AsyncIterator[tuple[Tx, str]]:
    """A transaction in which every committed event has its position, and that position's column.

    SQLite writes one transaction at a time, so row ids already follow commit order. PostgreSQL
    draws ids before commit, so a late commit could land behind a reader's cursor; there the
    newly committed events first get their positions (`seq`), in one batch under a lock.
    """
    postgres = store.backend == "postgresql"
    async with store.transaction(write=postgres) as tx:
        if postgres:
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _EVENT_ORDER_LOCK)
            await tx.execute(_SEQUENCE)
        yield tx, "seq" if postgres else "id"


async def read_events(
    store: Store, *, project_id: int | None, after_id: int = 0, limit: int = 100, task_id: int | None = None
) -> list[Event]:
    """Events after the cursor `after_id`, oldest first: the audit log and the live feed.

    An event's `id` is its position in the log, which follows commit order on both backends.
    """
    async with positioned(store) as (tx, position):
        clauses: list[str] = [f"{position} > $1"]
        args: list[object] = [after_id]
        if project_id is not None:
            args.append(project_id)
            clauses.append(f"project_id = ${len(args)}")
        if task_id is not None:
            args.append(task_id)
            clauses.append(f"task_id = ${len(args)}")
        args.append(limit)
        rows = await tx.fetch(
            f"SELECT {position} AS id, {_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            f"ORDER BY {position} LIMIT ${len(args)}",
            *args,
        )
    return [Event.model_validate(row) for row in rows]


async def latest_events(store: Store, *, task_id: int, limit: int) -> list[Event]:
    """The task's last `limit` events, oldest first."""
    async with positioned(store) as (tx, position):
        rows = await tx.fetch(
            # an event committed after this transaction's numbering has no position yet: leave it out
            f"SELECT {position} AS id, {_COLUMNS} FROM events WHERE task_id = $1 AND {position} IS NOT NULL "
            f"ORDER BY {position} DESC LIMIT $2",
            task_id,
            limit,
        )
    return [Event.model_validate(row) for row in reversed(rows)]


async def last_position(store: Store, *, project_id: int) -> int:
    """The position of the project's latest event (0 when there is none): where a live reader starts."""
    async with positioned(store) as (tx, position):
        return int(
            await tx.fetchval(
                f"SELECT COALESCE(MAX({position}), 0) FROM events WHERE project_id = $1", project_id
            )
        )
