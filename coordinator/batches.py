"""Progress of the execution plan's batches: started with their first claim, done with their last task.

Batches are a planning view, not a barrier (agents pull any ready task), so these only record
what happened, as `batch_started` and `batch_completed` events for the live feed.
"""

from __future__ import annotations

from coordinator.events import append_event
from coordinator.records import Task
from coordinator.storage.base import Tx


async def note_batch_started(tx: Tx, task: Task, now: float, actor: str) -> None:
    """Mark the claimed task's batch running, announcing it the first time."""
    if task.batch_number is None:
        return
    started = await tx.execute(
        "UPDATE parallel_batches SET status = 'running', started_at = $3 "
        "WHERE project_id = $1 AND batch_number = $2 AND status = 'pending'",
        task.project_id,
        task.batch_number,
        now,
    )
    if started:
        append_event(
            tx,
            now=now,
            kind="batch_started",
            actor=actor,
            project_id=task.project_id,
            task_id=task.id,
            payload={"batch": task.batch_number},
        )


async def note_batch_finished(tx: Tx, task: Task, now: float, actor: str) -> None:
    """Mark the finished task's batch done when no task of it is left unfinished."""
    if task.batch_number is None:
        return
    done = await tx.execute(
        "UPDATE parallel_batches SET status = 'done', completed_at = $3 "
        "WHERE project_id = $1 AND batch_number = $2 AND status <> 'done' AND NOT EXISTS ("
        "SELECT 1 FROM tasks WHERE project_id = $1 AND batch_number = $2 AND status NOT IN ('done', 'cancelled'))",
        task.project_id,
        task.batch_number,
        now,
    )
    if done:
        append_event(
            tx,
            now=now,
            kind="batch_completed",
            actor=actor,
            project_id=task.project_id,
            task_id=task.id,
            payload={"batch": task.batch_number},
        )
