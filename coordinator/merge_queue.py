"""The merge queue: completed task branches land on the target branch one at a time per project.

A merge goes queued → checking (pre-detection with `git merge-tree`, no working tree touched) →
testing (the merge commit exists; the test gate runs on it in the integration worktree) →
merged, or ends as conflict / rejected / failed. The runner holds a lease on the merge and
stores each step, so a crash at any point is recovered by whoever takes the merge next: the
target branch either already points at the merge commit (merged) or it does not (start again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from coordinator.config import Config
from coordinator.errors import StateConflict, YokeflowError
from coordinator.events import append_event
from coordinator.merge_outcomes import MERGE_QUEUE, MergeOutcomeService
from coordinator.merging import Conflict, NothingToMerge
from coordinator.records import Merge
from coordinator.storage.base import Store
from coordinator.workspaces import MergeResult, Workspace, Workspaces

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_SECONDS = 30.0
_LAND_ATTEMPTS = 3
_MERGE_LOCK = 0x59F2
_ACTIVE = "('checking', 'merging', 'testing')"
# The oldest queued merge of a project with no live merge, or a merge whose runner stopped
# renewing its lease (taken over as it is, so its stored step can be recovered).
_TAKE = f"""
UPDATE merges SET status = CASE WHEN status = 'queued' THEN 'checking' ELSE status END,
    runner = $2, lease_expires_at = $3, started_at = COALESCE(started_at, $1)
WHERE id = (
    SELECT m.id FROM merges m
    WHERE (m.status = 'queued' AND NOT EXISTS (
              SELECT 1 FROM merges a WHERE a.project_id = m.project_id
              AND a.status IN {_ACTIVE} AND a.lease_expires_at >= $1))
       OR (m.status IN {_ACTIVE} AND m.lease_expires_at < $1)
    ORDER BY CASE WHEN m.status = 'queued' THEN 1 ELSE 0 END, m.id
    LIMIT 1)
AND (status = 'queued' OR lease_expires_at < $1)
RETURNING *"""


@dataclass(frozen=True)
class MergeRun:
    """One merge the queue took: how it ended, or why it went back to the queue."""

    merge: Merge
    outcome: MergeResult | None
    blocked: str | None


class MergeQueue:
    """Takes queued merges and runs them through pre-detection, the test gate and the ref move."""

    #: how often an idle queue looks for merges queued by other processes (merges queued in this
    #: process wake it at once; other events do not, so an idle queue costs one query a second)
    poll_seconds = 1.0

    def __init__(
        self, store: Store, config: Config, workspaces: Workspaces, outcomes: MergeOutcomeService
    ) -> None:
        self.store, self.config, self.workspaces, self.outcomes = store, config, workspaces, outcomes
        self.runner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    async def take(self) -> Merge | None:
        """Lease the next merge to run, in one statement (serialised across servers on PostgreSQL)."""
        async with self.store.transaction() as tx:
            now = self.store.clock()
            if tx.backend == "postgresql":
                await tx.execute("SELECT pg_advisory_xact_lock($1)", _MERGE_LOCK)
            row = await tx.fetchrow(_TAKE, now, self.runner, now + LEASE_SECONDS)
            if row is None:
                return None
            merge = Merge.model_validate(row)
            if merge.error is None:  # a merge put back for a reason was announced already
                append_event(
                    tx,
                    now=now,
                    kind="merge_started" if merge.merge_commit is None else "merge_taken_over",
                    actor=MERGE_QUEUE.name,
                    project_id=merge.project_id,
                    task_id=merge.task_id,
                    payload={"merge_id": merge.id, "branch": merge.branch, "target": merge.target_branch},
                )
        return merge

    async def process_next(self) -> MergeRun | None:
        """Run the next merge to its end (or put it back when it cannot go on); None when there is none."""
        merge = await self.take()
        if merge is None:
            return None
        try:
            outcome = await self._run(merge)
        except _Blocked as blocked:
            await self._put_back(merge, str(blocked))
            return MergeRun(merge, None, str(blocked))
        except YokeflowError as exc:
            outcome = MergeResult("failed", error=str(exc))
        await self.outcomes.finish_merge(merge, outcome)
        return MergeRun(merge, outcome, None)

    async def drain(self) -> list[MergeRun]:
        """Run merges until none is left to take or one is blocked; what ran."""
        runs: list[MergeRun] = []
        while (run := await self.process_next()) is not None:
            runs.append(run)
            if run.blocked:
                break
        return runs

    async def run_forever(self) -> None:
        """Merge as work arrives until cancelled (servers run this in the background)."""
        while True:
            try:
                run = await self.process_next()
                if run is not None and not run.blocked:
                    continue
            except YokeflowError as exc:
                log.warning("merge queue: %s; will retry", exc)
            await self.outcomes.merges_queued.wait(self.poll_seconds)

    # --------------------------------------------------------------------------------- steps

    async def _run(self, merge: Merge) -> MergeResult:
        ws = await self.workspaces.of_project(merge.project_id)
        if ws is None:
            return MergeResult("failed", error="the project has no git repository any more")
        async with ws.merge_lock:
            if merge.merge_commit is not None:
                if await ws.engine.is_landed(merge.target_branch, merge.merge_commit):
                    return MergeResult("merged", merge_commit=merge.merge_commit)
                await ws.engine.clean_integration()  # what the interrupted run left behind
            if self.config.parallel.test_command:  # only the test gate uses the integration worktree
                try:
                    await ws.engine.ensure_integration()
                except StateConflict as exc:
                    raise _Blocked(str(exc)) from exc
            for _ in range(_LAND_ATTEMPTS):
                outcome = await self._attempt(ws, merge)
                if outcome is not None:
                    return outcome
        raise _Blocked(f"the target branch {merge.target_branch} kept moving while merging; trying again")

    async def _attempt(self, ws: Workspace, merge: Merge) -> MergeResult | None:
        """One pass: pre-detect and build, test, move the ref; None when the target moved meanwhile."""
        message = f"Merge task {merge.task_id} ({merge.branch}) into {merge.target_branch}"
        prepared = await ws.engine.prepare(
            merge.target_branch,
            merge.branch,
            source=merge.head_commit,  # what was completed, not what the branch holds by now
            strategy=self.config.parallel.merge_strategy,
            message=message,
        )
        if isinstance(prepared, Conflict):
            return MergeResult("conflict", conflict_files=list(prepared.files))
        if isinstance(prepared, NothingToMerge):  # its commits reached the target another way
            return MergeResult("merged", merge_commit=prepared.target_head)
        await self._record_step(
            merge, "testing", merge_commit=prepared.commit, target_before=prepared.target_before
        )
        parallel = self.config.parallel
        gate = await self._keeping_lease(
            merge,
            ws.engine.run_gate(
                prepared.commit, parallel.test_command, timeout_seconds=parallel.test_timeout_seconds
            ),
        )
        if not gate.passed:
            tail = gate.output_tail
            if gate.timed_out:
                tail = f"(stopped after {parallel.test_timeout_seconds} s)\n{tail}"
            return MergeResult("rejected", test_output=tail)
        await self._record_step(
            merge, "merging", merge_commit=prepared.commit, target_before=prepared.target_before
        )
        if await ws.engine.land(merge.target_branch, prepared.commit, prepared.target_before):
            return MergeResult("merged", merge_commit=prepared.commit)
        return None

    async def _record_step(self, merge: Merge, status: str, *, merge_commit: str, target_before: str) -> None:
        async with self.store.transaction() as tx:
            now = self.store.clock()
            changed = await tx.execute(
                "UPDATE merges SET status = $3, merge_commit = $4, target_before = $5, lease_expires_at = $6 "
                "WHERE id = $1 AND runner = $2",
                merge.id,
                self.runner,
                status,
                merge_commit,
                target_before,
                now + LEASE_SECONDS,
            )
        if not changed:
            raise _Blocked(f"merge {merge.id} was taken over by another runner")

    async def _keeping_lease(self, merge: Merge, step: Awaitable[T]) -> T:
        """Await `step` while renewing the merge's lease, so a long test gate is not taken over."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(LEASE_SECONDS / 3)
                async with self.store.transaction() as tx:
                    await tx.execute(
                        "UPDATE merges SET lease_expires_at = $3 WHERE id = $1 AND runner = $2",
                        merge.id,
                        self.runner,
                        self.store.clock() + LEASE_SECONDS,
                    )

        renewing = asyncio.create_task(renew())
        try:
            return await step
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _put_back(self, merge: Merge, why: str) -> None:
        """Return a merge that cannot run now to the queue, saying why (once per reason)."""
        async with self.store.transaction() as tx:
            now = self.store.clock()
            await tx.execute(
                "UPDATE merges SET status = 'queued', runner = NULL, lease_expires_at = NULL, error = $2 "
                "WHERE id = $1 AND runner = $3",
                merge.id,
                why,
                self.runner,
            )
            if merge.error != why:
                append_event(
                    tx,
                    now=now,
                    kind="merge_blocked",
                    actor=MERGE_QUEUE.name,
                    project_id=merge.project_id,
                    task_id=merge.task_id,
                    payload={"merge_id": merge.id, "reason": why},
                )
        log.warning("merge %s waits: %s", merge.id, why)


class _Blocked(Exception):
    """The merge cannot go on now for a reason outside the task (it goes back to the queue)."""
