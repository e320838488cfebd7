"""What follows in the same transaction when a task ends: its status, ready dependents, its epic and batch."""

from __future__ import annotations

from coordinator.batches import note_batch_finished
from coordinator.events import append_event
from coordinator.records import Task, TaskStatus
from coordinator.storage.base import Tx


async def set_status(
    tx: Tx,
    task: Task,
    status: TaskStatus,
    now: float,
    *,
    completed: bool = False,
    error: str | None = None,
) -> None:
    """Write a task's new status (and, with `completed`, its completion time; with `error`, its last error)."""
    await tx.execute(
        "UPDATE tasks SET status = $2, updated_at = $3, completed_at = CASE WHEN $4 THEN $3 ELSE completed_at END, "
        "last_error = COALESCE($5, last_error) WHERE id = $1",
        task.id,
        status,
        now,
        completed,
        error,
    )


async def after_finish(tx: Tx, task: Task, now: float, actor: str, *, has_dependents: bool = True) -> None:
    """Announce dependents that became ready and close the epic when its last task ended.

    `has_dependents`: False when the caller knows that no task depends on this one.
    """
    ready = (
        []
        if not has_dependents
        else await tx.fetch(
            "SELECT t.id FROM task_dependencies d JOIN tasks t ON t.id = d.task_id "
            "WHERE d.depends_on_task_id = $1 AND d.kind = 'hard' AND t.status = 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM task_dependencies d2 JOIN tasks p ON p.id = d2.depends_on_task_id "
            "WHERE d2.task_id = t.id AND d2.kind = 'hard' AND p.status NOT IN ('done', 'cancelled'))",
            task.id,
        )
    )
    for row in ready:
        append_event(
            tx,
            now=now,
            kind="task_ready",
            actor=actor,
            project_id=task.project_id,
            task_id=row["id"],
            payload={"unblocked_by": task.id},
        )
    # Row locks go tasks, epics, batches, agents everywhere, as in the claim.
    if task.epic_id is not None:
        closed = await tx.fetchval(
            "UPDATE epics SET status = 'done', completed_at = $2, updated_at = $2 WHERE id = $1 "
            "AND status <> 'done' AND NOT EXISTS (SELECT 1 FROM tasks WHERE epic_id = $1 "
            "AND status NOT IN ('done', 'cancelled')) RETURNING id",
            task.epic_id,
            now,
        )
        if closed is not None:
            append_event(
                tx,
                now=now,
                kind="epic_completed",
                actor=actor,
                project_id=task.project_id,
                payload={"epic_id": task.epic_id},
            )
    await note_batch_finished(tx, task, now, actor)
