"""The audit log: every state change appends an event in the same transaction."""

from __future__ import annotations

from typing import Any

from coordinator.records import Event
from coordinator.storage.base import Tx, encode_json

NOTIFY_CHANNEL = "yokeflow_events"
_EVENT_ORDER_LOCK = 0x59F1E7E0


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

    Events are written last, under a transaction-scoped lock on PostgreSQL, so event ids
    follow commit order there too: a reader following `after_id` never skips an event whose
    transaction committed late. Being last, the lock is held only for the commit itself.
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
        if tx.backend == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _EVENT_ORDER_LOCK)
            await tx.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', $1)", str(project_id or 0))
        await tx.execute(
            "INSERT INTO events (project_id, task_id, agent_id, actor, kind, before_status, after_status, "
            "payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            *values,
        )

    tx.before_commit(write)


async def events_after(
    tx: Tx, *, project_id: int | None, after_id: int = 0, limit: int = 100, task_id: int | None = None
) -> list[Event]:
    """Events with id > after_id, oldest first (a cursor for replay and live feeds)."""
    clauses: list[str] = ["id > $1"]
    args: list[object] = [after_id]
    if project_id is not None:
        args.append(project_id)
        clauses.append(f"project_id = ${len(args)}")
    if task_id is not None:
        args.append(task_id)
        clauses.append(f"task_id = ${len(args)}")
    args.append(limit)
    rows = await tx.fetch(
        f"SELECT * FROM events WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ${len(args)}", *args
    )
    return [Event.model_validate(row) for row in rows]
