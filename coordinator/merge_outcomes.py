"""What a merge's end does to its task: done, or conflict / rejected with a reviewer follow-up; retries.

The merge queue (`coordinator/merge_queue.py`) runs merges; this service records their outcome in
one transaction each, and lets a person queue a failed merge again.
"""

from __future__ import annotations

from typing import Any

from coordinator.config import Config
from coordinator.context import Caller, ServiceBase, Wakeup, require_role
from coordinator.errors import NotFound, StateConflict
from coordinator.events import task_event
from coordinator.finishing import after_finish, set_status
from coordinator.planning import NewTask, PlanWriter
from coordinator.queries import get_task
from coordinator.records import Merge, Task, TaskStatus
from coordinator.storage.base import Store, Tx, encode_json
from coordinator.work import check_transition
from coordinator.workspaces import MergeResult

S = TaskStatus
MAX_FOLLOW_UP_ROUNDS = 3
"""Reviewer follow-ups of one task stop after this many rounds (a person takes over)."""
MERGE_QUEUE = Caller(name="merge-queue", role="operator")


class MergeOutcomeService(ServiceBase):
    """Records what the merge queue did with a task's branch, and queues failed merges again."""

    def __init__(self, store: Store, config: Config, wakeup: Wakeup, merges_queued: Wakeup) -> None:
        super().__init__(store, config, wakeup)
        self.merges_queued = merges_queued

    async def finish_merge(self, merge: Merge, outcome: MergeResult) -> Task:
        """Record what the merge queue did with a task's branch, in one transaction.

        Merged: the task is done and its dependents become ready (and so is the task a follow-up
        resolved). A conflict or red tests: the task becomes conflict or rejected, and unless
        `parallel.on_merge_failure` is manual a reviewer follow-up is created on the same branch.
        """
        async with self.store.transaction() as tx:
            now = self.now()
            task = await get_task(tx, merge.task_id, for_update=True)
            finished = await tx.execute(
                "UPDATE merges SET status = $3, conflict_files = $4, test_output = $5, "
                "merge_commit = COALESCE($6, merge_commit), error = $7, finished_at = $8, lease_expires_at = NULL "
                "WHERE id = $1 AND runner = $2 AND status IN ('checking', 'merging', 'testing')",
                merge.id,
                merge.runner,
                outcome.status,
                encode_json(outcome.conflict_files),
                outcome.test_output,
                outcome.merge_commit,
                outcome.error,
                now,
            )
            if not finished:
                raise StateConflict(
                    f"merge {merge.id} is no longer held by this runner",
                    fix="another server took it over after its lease ran out; nothing was recorded here",
                )
            payload = {
                "merge_id": merge.id,
                "branch": merge.branch,
                "target": merge.target_branch,
                "merge_commit": outcome.merge_commit,
                "conflict_files": outcome.conflict_files,
                "error": outcome.error,
            }
            if outcome.status == "merged":
                await self._merged(tx, task, payload, now)
            else:
                await self._merge_refused(tx, task, merge, outcome, payload, now)
        self.wakeup.notify()
        async with self.store.transaction(write=False) as tx:
            return await get_task(tx, merge.task_id)

    async def _merged(self, tx: Tx, task: Task, payload: dict[str, Any], now: float) -> None:
        if task.status == S.MERGING:
            await set_status(tx, task, S.DONE, now, completed=True)
        task_event(
            tx,
            now,
            "task_merged",
            MERGE_QUEUE,
            task,
            S.DONE if task.status == S.MERGING else task.status,
            payload,
        )
        if task.status == S.MERGING:
            await after_finish(tx, task, now, MERGE_QUEUE.name)
        # A follow-up's merge also settles the task it resolves, and that one's, up the chain.
        resolves = task.metadata.get("resolves")
        while resolves is not None:
            resolved = await get_task(tx, int(resolves), for_update=True)
            if resolved.status in (S.CONFLICT, S.REJECTED):
                await set_status(tx, resolved, S.DONE, now, completed=True)
                task_event(
                    tx, now, "task_merged", MERGE_QUEUE, resolved, S.DONE, {**payload, "via_task": task.id}
                )
                await after_finish(tx, resolved, now, MERGE_QUEUE.name)
            resolves = resolved.metadata.get("resolves")

    async def _merge_refused(
        self, tx: Tx, task: Task, merge: Merge, outcome: MergeResult, payload: dict[str, Any], now: float
    ) -> None:
        target = S.CONFLICT if outcome.status == "conflict" else S.REJECTED
        why = outcome.describe()
        if task.status == S.MERGING:
            await set_status(tx, task, target, now, error=why)
        kind = "task_merge_conflict" if target == S.CONFLICT else "task_merge_rejected"
        task_event(
            tx, now, kind, MERGE_QUEUE, task, target if task.status == S.MERGING else task.status, payload
        )
        rounds = int(task.metadata.get("follow_up_round", 0))
        if self.config.parallel.on_merge_failure == "manual" or rounds >= MAX_FOLLOW_UP_ROUNDS:
            return
        await self._create_follow_up(tx, task, merge, outcome, rounds + 1, now)

    async def _create_follow_up(
        self, tx: Tx, task: Task, merge: Merge, outcome: MergeResult, round_: int, now: float
    ) -> None:
        """A reviewer task that resolves the conflict (or the red tests) on the same branch."""
        root = int(task.metadata.get("follow_up_of", task.id))
        root_title = task.title if root == task.id else (await get_task(tx, root)).title
        reviewer = await tx.fetchval("SELECT name FROM personas WHERE name = 'reviewer'")
        writer = await PlanWriter.open(
            tx,
            task.project_id,
            now,
            MERGE_QUEUE.name,
            self.config.leases.max_attempts,
            self.config.learning.domains,
        )
        verb = "Resolve the merge conflict of" if outcome.status == "conflict" else "Make the tests pass for"
        follow_up = await writer.add_task(
            NewTask(
                title=f"{verb} task {root}: {root_title}"[:500],
                description=f"{outcome.describe()}\n\nWork on branch {merge.branch}: merge {merge.target_branch} into it, "
                f"resolve, run the tests, commit, and complete this task; the merge queue then merges it.",
                epic_id=task.epic_id,
                priority=task.priority - 1,
                persona=reviewer,
                domain=task.domain,
            )
        )
        await tx.execute(
            "UPDATE tasks SET branch = $2, metadata = $3 WHERE id = $1",
            follow_up.id,
            merge.branch,
            encode_json(
                {"resolves": task.id, "follow_up_of": root, "merge_id": merge.id, "follow_up_round": round_}
            ),
        )

    async def retry_merge(self, caller: Caller, *, merge_id: int) -> Merge:
        """Queue a failed, conflicting or rejected merge again, from its branch's current head.

        The task goes back to merging; a person (or a pushed fix) has changed the branch or the
        target since. Refused while a follow-up task still works on the same branch.
        """
        require_role(caller, ("operator", "planner"), "retry merges")
        async with self.store.transaction() as tx:
            now = self.now()
            lock = " FOR UPDATE" if tx.backend == "postgresql" else ""
            row = await tx.fetchrow(f"SELECT * FROM merges WHERE id = $1{lock}", merge_id)
            if row is None or (caller.project_id is not None and row["project_id"] != caller.project_id):
                raise NotFound(
                    f"merge {merge_id} does not exist in this project", fix="list the project's merges"
                )
            merge = Merge.model_validate(row)
            task = await get_task(tx, merge.task_id, for_update=True)
            await self._check_retry(tx, merge, task)
            check_transition(task, S.MERGING, "retry the merge of")
            requeued = await tx.fetchrow(
                "UPDATE merges SET status = 'queued', runner = NULL, lease_expires_at = NULL, conflict_files = '[]', "
                "test_output = NULL, merge_commit = NULL, target_before = NULL, head_commit = NULL, error = NULL, "
                "queued_at = $2, started_at = NULL, finished_at = NULL WHERE id = $1 RETURNING *",
                merge_id,
                now,
            )
            await set_status(tx, task, S.MERGING, now)
            task_event(
                tx,
                now,
                "merge_retried",
                caller,
                task,
                S.MERGING,
                {
                    "merge_id": merge_id,
                    "previous_status": merge.status.value,
                    "conflict_files": merge.conflict_files,
                    "error": merge.error,
                },
            )
        self.wakeup.notify()
        self.merges_queued.notify()
        return Merge.model_validate(requeued)

    async def _check_retry(self, tx: Tx, merge: Merge, task: Task) -> None:
        if merge.status not in ("failed", "conflict", "rejected"):
            raise StateConflict(
                f"merge {merge.id} is {merge.status.value}",
                fix="only a failed, conflict or rejected merge is retried",
            )
        newest = await tx.fetchval("SELECT MAX(id) FROM merges WHERE task_id = $1", task.id)
        if newest != merge.id:
            raise StateConflict(
                f"merge {merge.id} is not the latest merge of task {task.id} (that is merge {newest})",
                fix=f"retry merge {newest}",
            )
        follow_up = await tx.fetchval(
            "SELECT id FROM tasks WHERE project_id = $1 AND branch = $2 AND id <> $3 "
            "AND status IN ('pending', 'in_progress', 'merging') ORDER BY id LIMIT 1",
            task.project_id,
            merge.branch,
            task.id,
        )
        if follow_up is not None:
            raise StateConflict(
                f"task {follow_up} is still working on branch {merge.branch}",
                fix=f"let it finish (its merge settles task {task.id} too), or cancel task {follow_up} first",
            )
