"""Every state change of a task: claim, heartbeat, complete, fail, release, cancel, reopen, sweep.

Each operation is one transaction that checks the current state, changes it, and appends
an audit event. The allowed transitions are the table `TRANSITIONS`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Literal, NoReturn

from pydantic import BaseModel

from coordinator.batches import note_batch_started
from coordinator.config import Config
from coordinator.context import Caller, ServiceBase, Wakeup, require_role
from coordinator.costs import spent_usd
from coordinator.errors import InvalidInput, NotFound, StateConflict, YokeflowError
from coordinator.events import append_event, task_event
from coordinator.expertise_files import sync_files
from coordinator.expertise_hooks import expertise_context, learn_from_outcome, task_domain
from coordinator.finishing import after_finish
from coordinator.leasing import (
    CLAIMED_ROW,
    DOMAIN_HAS_EXPERTISE,
    BackoffPolicy,
    ClaimedRow,
    claim_one,
    has_ready_task_for_other_personas,
    leased_task,
)
from coordinator.model_selection import TaskFacts, recommend_model
from coordinator.queries import get_task, task_tests
from coordinator.records import Agent, Task, TaskStatus, TaskTest
from coordinator.storage.base import Store, Tx, decode_json, encode_json
from coordinator.workspaces import MergeTicket, Workspaces

log = logging.getLogger(__name__)
S = TaskStatus
TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.PENDING: frozenset({S.IN_PROGRESS, S.CANCELLED}),
    S.IN_PROGRESS: frozenset({S.PENDING, S.MERGING, S.DONE, S.FAILED, S.CANCELLED}),
    S.MERGING: frozenset({S.DONE, S.CONFLICT, S.REJECTED}),
    S.DONE: frozenset({S.PENDING}),
    S.FAILED: frozenset({S.PENDING, S.CANCELLED}),
    # done: a follow-up's merge resolved it (or a person did); merging: its merge was retried
    S.CONFLICT: frozenset({S.PENDING, S.MERGING, S.DONE, S.CANCELLED}),
    S.REJECTED: frozenset({S.PENDING, S.MERGING, S.DONE, S.CANCELLED}),
    S.CANCELLED: frozenset({S.PENDING}),
}
MAX_WAIT_SECONDS = 300.0
_CLAIM_QUEUE_LOCK = 0x59F1
_AGENT_TOUCH_SECONDS = 15.0
# One round trip: the lock is only taken when project $2 has predicted files.
_TAKE_CLAIM_TURN_IF_FILES = (
    "SELECT pg_advisory_xact_lock($1, $2) WHERE EXISTS (SELECT 1 FROM task_files f "
    "JOIN tasks t ON t.id = f.task_id WHERE t.project_id = $2)"
)


def _holds_lease(token: int, owner: int, project: int) -> str:
    """The row condition of a task whose current lease is parameter `token`, held by agent `owner` of `project`."""
    return f"status = 'in_progress' AND lease_token = ${token} AND lease_owner = ${owner} AND project_id = ${project}"


def check_transition(task: Task, target: TaskStatus, action: str) -> None:
    if target not in TRANSITIONS[task.status]:
        raise StateConflict(
            f"cannot {action} task {task.id}: it is {task.status.value}",
            fix=f"a {task.status.value} task can only become "
            + (", ".join(sorted(s.value for s in TRANSITIONS[task.status])) or "nothing else"),
        )


class Lease(BaseModel):
    lease_id: str
    attempt: int
    expires_at: float
    ttl_seconds: float
    heartbeat_interval_seconds: float


class DependencyContext(BaseModel):
    task_id: int
    title: str
    kind: str
    status: str
    summary: str | None
    result: str | None
    files_changed: list[str]
    commit: str | None


class ClaimContext(BaseModel):
    dependencies: list[DependencyContext]
    tests: list[TaskTest]
    handoff_note: str | None
    previous_error: str | None
    expertise: str | None = None
    model_recommendation: dict[str, Any] | None = None


class Claimed(BaseModel):
    status: Literal["claimed"] = "claimed"
    task: Task
    lease: Lease
    context: ClaimContext
    worktree: str | None = None
    target_branch: str | None = None
    resumed: bool = False
    """The agent already held this lease: its worktree works one task at a time."""


NoWorkReason = Literal[
    "all_done",
    "waiting",
    "blocked_by_failures",
    "other_personas",
    "budget_exhausted",
    "paused",
    "task_not_ready",
]


class NoWork(BaseModel):
    status: Literal["no_task"] = "no_task"
    reason: NoWorkReason
    message: str
    counts: dict[str, int]
    retry_after_seconds: float | None


class WorkService(ServiceBase):
    """Leases and task transitions, for workers and planners alike."""

    def __init__(
        self,
        store: Store,
        config: Config,
        wakeup: Wakeup,
        workspaces: Workspaces | None,
        merges_queued: Wakeup,
    ) -> None:
        super().__init__(store, config, wakeup)
        self.workspaces = workspaces
        self.merges_queued = merges_queued
        """Wakes this process's merge queue when a completion queues a merge (it polls for the others)."""

    #: how often a waiting claim looks again for changes made by other processes; changes
    #: made in this process (and, on PostgreSQL, NOTIFYs from others) wake it at once
    poll_seconds = 1.0

    @property
    def backoff(self) -> BackoffPolicy:
        leases = self.config.leases
        return BackoffPolicy(leases.backoff_base_seconds, leases.backoff_max_seconds, leases.backoff_jitter)

    def _ttl(self, ttl_seconds: float | None) -> float:
        if ttl_seconds is None:
            return float(self.config.leases.ttl_seconds)
        if not math.isfinite(ttl_seconds) or not 5 <= ttl_seconds <= 86400:
            raise InvalidInput(
                "ttl_seconds", f"{ttl_seconds!r} is out of range", fix="give between 5 and 86400 seconds"
            )
        return float(ttl_seconds)

    def _lease(self, task: Task, ttl: float) -> Lease:
        assert task.lease_token is not None and task.lease_expires_at is not None
        return Lease(
            lease_id=task.lease_token,
            attempt=task.attempts,
            expires_at=task.lease_expires_at,
            ttl_seconds=ttl,
            heartbeat_interval_seconds=min(float(self.config.leases.heartbeat_interval_seconds), ttl / 3),
        )

    # ------------------------------------------------------------------------------------- claim

    async def claim(
        self,
        caller: Caller,
        *,
        wait_seconds: float = 0.0,
        ttl_seconds: float | None = None,
        task_id: int | None = None,
    ) -> Claimed | NoWork:
        """Lease the best ready task (or exactly `task_id`, if it is ready) to the calling agent.

        Waits up to `wait_seconds` for one to become ready.
        """
        require_role(caller, ("worker",), "claim tasks")
        if not math.isfinite(wait_seconds) or not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise InvalidInput(
                "wait_seconds",
                f"{wait_seconds!r} is out of range",
                fix=f"give 0 to {MAX_WAIT_SECONDS:g} seconds",
            )
        ttl = self._ttl(ttl_seconds)
        agent = _agent_of(caller, "claim tasks")
        if self.workspaces is not None and await self.workspaces.of_project(agent.project_id) is not None:
            held = await self._resume(caller, agent, ttl, task_id)
            if held is not None:
                return held
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            outcome = await self._claim_once(caller, ttl, task_id)
            if isinstance(outcome, Claimed):
                return await self._start_workspace(caller, outcome)
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or outcome.reason in ("all_done", "budget_exhausted"):
                return outcome
            await self.wakeup.wait(min(remaining, self.poll_seconds))

    async def _resume(self, caller: Caller, agent: Agent, ttl: float, task_id: int | None) -> Claimed | None:
        """The live lease the agent already holds, extended as a heartbeat would; None if it holds none.

        An agent's one worktree is on that task's branch, with its work in progress: a second task
        would switch it away. So a claim answers the task in hand (a restarted agent picks up where
        it was) until the agent completes, fails or releases it.
        """
        assert self.workspaces is not None
        async with self.store.transaction() as tx:
            now = self.now()
            # The conditions stand twice: PostgreSQL checks the outer ones again on a row changed meanwhile.
            live = (
                "project_id = $1 AND lease_owner = $2 AND status = 'in_progress' AND lease_expires_at >= $3"
            )
            row = await tx.fetchrow(
                f"UPDATE tasks SET lease_ttl = $4, lease_expires_at = $3 + $4, updated_at = $3 WHERE {live} "
                f"AND id = (SELECT id FROM tasks WHERE {live} ORDER BY id LIMIT 1) RETURNING {CLAIMED_ROW}",
                agent.project_id,
                agent.id,
                now,
                ttl,
            )
            if row is None:
                return None
            held = ClaimedRow.of(row)
            task = held.task
            if task_id is not None and task_id != task.id:
                raise StateConflict(
                    f"you still hold task {task.id}, and your worktree works on one task at a time",
                    fix=f"complete, fail or release task {task.id} before you start task {task_id}",
                )
            worktree = await tx.fetchval("SELECT worktree FROM agents WHERE id = $1", agent.id)
            limit = self.config.cost.budget_limit_usd
            spent = None if limit is None else await spent_usd(tx, agent.project_id)
            await self._touch_agent(tx, agent, now)
            task_event(
                tx,
                now,
                "lease_heartbeat",
                caller,
                task,
                None,
                {"expires_at": task.lease_expires_at, "resumed": True},
            )
            context = await self._claim_context(tx, held, spent)
        ws = await self.workspaces.of_project(agent.project_id)
        return Claimed(
            task=task,
            lease=self._lease(task, ttl),
            context=context,
            worktree=worktree,
            target_branch=await ws.worktrees.target() if ws else None,
            resumed=True,
        )

    async def _start_workspace(self, caller: Caller, claimed: Claimed) -> Claimed:
        """Put the agent's worktree on the task's branch; if git refuses, hand the task back."""
        if self.workspaces is None:
            return claimed
        agent, task = _agent_of(caller, "claim tasks"), claimed.task
        try:
            place = await self.workspaces.start_task(agent, task)
        except YokeflowError as exc:
            await self.release(
                caller,
                task_id=task.id,
                lease_id=claimed.lease.lease_id,
                note=f"its branch could not be prepared: {exc}",
            )
            raise
        if place is None:
            return claimed
        async with self.store.transaction() as tx:
            now = self.now()
            await tx.execute(
                f"UPDATE tasks SET branch = $2, updated_at = $3 WHERE id = $1 AND {_holds_lease(4, 5, 6)}",
                task.id,
                place.branch,
                now,
                claimed.lease.lease_id,
                agent.id,
                agent.project_id,
            )
            payload = {"branch": place.branch, "worktree": place.worktree, "base_commit": place.base_commit}
            if place.stashed:
                payload["stashed"] = place.stashed
            task_event(tx, now, "task_branch_ready", caller, task, S.IN_PROGRESS, payload)
        return claimed.model_copy(
            update={
                "task": task.model_copy(update={"branch": place.branch}),
                "worktree": place.worktree,
                "target_branch": place.target_branch,
            }
        )

    async def _claim_once(self, caller: Caller, ttl: float, task_id: int | None) -> Claimed | NoWork:
        agent = caller.agent
        assert agent is not None
        async with self.store.transaction() as tx:
            now = self.now()
            outcome = await self._claim_in(tx, caller, agent, ttl, now, task_id)
            # Rows are locked in one order everywhere (tasks, epics, then agents), so claims,
            # completions and the sweep cannot deadlock on PostgreSQL.
            await self._touch_agent(tx, agent, now)
        return outcome

    async def _claim_in(
        self, tx: Tx, caller: Caller, agent: Agent, ttl: float, now: float, task_id: int | None
    ) -> Claimed | NoWork:
        project_id = agent.project_id
        limit = self.config.cost.budget_limit_usd
        spent = None if limit is None else await spent_usd(tx, project_id)
        if limit is not None and spent is not None and spent >= limit:
            return await self._no_work(tx, project_id, agent.persona, now, budget=True)
        if tx.backend == "postgresql" and self.config.parallel.avoid_file_conflicts:
            # Claims of a project with predicted files take turns on PostgreSQL, or two of them
            # could each miss the other's new lease on a shared file; other projects keep fully
            # parallel SKIP LOCKED claims.
            await tx.execute(_TAKE_CLAIM_TURN_IF_FILES, _CLAIM_QUEUE_LOCK, project_id)
        claimed = await claim_one(
            tx,
            project_id=project_id,
            agent_id=agent.id,
            persona=agent.persona,
            now=now,
            ttl=ttl,
            avoid_file_conflicts=self.config.parallel.avoid_file_conflicts,
            task_id=task_id,
        )
        if claimed is None:
            status = await tx.fetchval("SELECT status FROM projects WHERE id = $1", project_id)
            if status is None:
                raise NotFound(
                    f"project {project_id} of this agent no longer exists", fix="register the agent again"
                )
            if status == "paused":
                return await self._no_work(tx, project_id, agent.persona, now, paused=True)
            await self._expire_leases(tx, now, project_id)
            if task_id is not None:
                return await self._why_not_ready(tx, task_id, agent, now)
            return await self._no_work(tx, project_id, agent.persona, now)
        task = claimed.task
        before = S.IN_PROGRESS if task.expired_owner is not None else S.PENDING
        append_event(
            tx,
            now=now,
            kind="task_claimed",
            actor=caller.name,
            project_id=project_id,
            task_id=task.id,
            agent_id=agent.id,
            before=before,
            after=S.IN_PROGRESS,
            payload={
                "attempt": task.attempts,
                "lease_id": task.lease_token,
                "expires_at": task.lease_expires_at,
                "took_over_from_agent": task.expired_owner,
            },
        )
        if task.epic_id is not None:
            await tx.execute(
                "UPDATE epics SET status = 'in_progress', updated_at = $2 WHERE id = $1 AND status = 'pending'",
                task.epic_id,
                now,
            )
        await note_batch_started(tx, task, now, caller.name)
        context = await self._claim_context(tx, claimed, spent)
        return Claimed(task=task, lease=self._lease(task, ttl), context=context)

    async def _claim_context(self, tx: Tx, claimed: ClaimedRow, spent: float | None) -> ClaimContext:
        task = claimed.task
        rows = (
            []
            if not claimed.dependencies
            else await tx.fetch(
                "SELECT p.id, p.title, d.kind, p.status, p.summary, p.result, p.files_changed, p.commit_sha "
                "FROM task_dependencies d JOIN tasks p ON p.id = d.depends_on_task_id "
                "WHERE d.task_id = $1 ORDER BY p.id",
                task.id,
            )
        )
        dependencies = [
            DependencyContext(
                task_id=r["id"],
                title=r["title"],
                kind=r["kind"],
                status=r["status"],
                summary=r["summary"],
                result=r["result"],
                files_changed=decode_json(r["files_changed"]),
                commit=r["commit_sha"],
            )
            for r in rows
        ]
        return ClaimContext(
            dependencies=dependencies,
            tests=await task_tests(tx, task.id) if claimed.has_tests else [],
            handoff_note=task.progress_note,
            previous_error=task.last_error,
            model_recommendation=(
                await recommend_model(
                    tx,
                    task=task,
                    config=self.config,
                    facts=TaskFacts(
                        dependencies=claimed.dependencies,
                        epic_priority=claimed.epic_priority,
                        spent_usd=spent,
                        has_cost_history=claimed.has_cost_history,
                    ),
                )
            ).model_dump(),
            expertise=await expertise_context(tx, project_id=task.project_id, domain=task.domain)
            if self.config.learning.enabled and claimed.has_expertise
            else None,
        )

    async def _why_not_ready(self, tx: Tx, task_id: int, agent: Agent, now: float) -> NoWork:
        """Why one named task could not be leased (it is not in the project: NotFound)."""
        task = await get_task(tx, task_id, project_id=agent.project_id)
        blocked = await tx.fetch(
            "SELECT p.id FROM task_dependencies d JOIN tasks p ON p.id = d.depends_on_task_id "
            "WHERE d.task_id = $1 AND d.kind = 'hard' AND p.status NOT IN ('done', 'cancelled') ORDER BY p.id",
            task_id,
        )
        if task.status == S.IN_PROGRESS and (task.lease_expires_at or 0) >= now:
            why = f"task {task_id} is being worked on (attempt {task.attempts})"
        elif task.status not in (S.PENDING, S.IN_PROGRESS):
            why = f"task {task_id} is {task.status.value}"
        elif blocked:
            why = f"task {task_id} waits on unfinished dependencies {[r['id'] for r in blocked]}"
        elif task.available_at > now:
            why = f"task {task_id} waits {task.available_at - now:.0f} more seconds before its retry"
        elif task.persona not in (None, agent.persona):
            why = f"task {task_id} is for the {task.persona} persona, not {agent.persona}"
        else:
            why = f"task {task_id} shares predicted files with a task being worked on, or its epic waits on another"
        return NoWork(reason="task_not_ready", message=why + ".", counts={}, retry_after_seconds=None)

    async def _no_work(
        self, tx: Tx, project_id: int, persona: str, now: float, *, paused: bool = False, budget: bool = False
    ) -> NoWork:
        rows = await tx.fetch(
            "SELECT status, COUNT(*) AS n, "
            "SUM(CASE WHEN status = 'pending' AND available_at > $2 THEN 1 ELSE 0 END) AS backoff, "
            "SUM(CASE WHEN status = 'in_progress' AND lease_expires_at >= $2 THEN 1 ELSE 0 END) AS live, "
            "SUM(CASE WHEN status = 'pending' AND (parked OR assigned_agent IS NOT NULL) THEN 1 ELSE 0 END) AS held "
            "FROM tasks WHERE project_id = $1 GROUP BY status",
            project_id,
            now,
        )
        counts = {s.value: 0 for s in TaskStatus}
        backoff = live = held = 0
        for r in rows:
            counts[r["status"]] = int(r["n"])
            backoff += int(r["backoff"] or 0)
            live += int(r["live"] or 0)
            held += int(r["held"] or 0)
        counts["running"], counts["in_backoff"] = live, backoff
        open_tasks = sum(
            counts[s.value] for s in (S.PENDING, S.IN_PROGRESS, S.MERGING, S.CONFLICT, S.REJECTED)
        )
        retry = float(self.config.leases.heartbeat_interval_seconds)
        if budget:
            return NoWork(
                reason="budget_exhausted",
                counts=counts,
                retry_after_seconds=None,
                message="the project's budget (cost.budget_limit_usd) is spent; no more tasks are "
                "handed out. Stop working, or ask a person to raise the budget.",
            )
        if paused:
            return NoWork(
                reason="paused",
                counts=counts,
                retry_after_seconds=retry,
                message="claiming is paused for this project; wait and try again later.",
            )
        if open_tasks == 0 and counts[S.FAILED] == 0:
            return NoWork(
                reason="all_done",
                counts=counts,
                retry_after_seconds=None,
                message="nothing is left to do in this project; you can stop.",
            )
        if open_tasks == 0:
            return NoWork(
                reason="blocked_by_failures",
                counts=counts,
                retry_after_seconds=None,
                message=f"only {counts[S.FAILED]} failed tasks are left; a planner must reopen or "
                "cancel them.",
            )
        if await has_ready_task_for_other_personas(tx, project_id=project_id, persona=persona, now=now):
            return NoWork(
                reason="other_personas",
                counts=counts,
                retry_after_seconds=retry,
                message=f"the ready tasks are for other personas than {persona!r}; "
                "wait for tasks that suit you.",
            )
        steered = f"{held} pending tasks are parked or assigned to a particular agent; " if held else ""
        if live or backoff or counts[S.MERGING] or counts[S.IN_PROGRESS]:
            return NoWork(
                reason="waiting",
                counts=counts,
                retry_after_seconds=retry,
                message=f"{counts[S.PENDING]} tasks wait on {live} running ones"
                f"{f' and {backoff} in retry backoff' if backoff else ''}; {steered}"
                "claim again with wait_seconds to be woken when one is ready.",
            )
        if held:
            return NoWork(
                reason="waiting",
                counts=counts,
                retry_after_seconds=retry,
                message=f"{steered}wait until a person unparks or reassigns them.",
            )
        return NoWork(
            reason="blocked_by_failures",
            counts=counts,
            retry_after_seconds=None,
            message=f"the {open_tasks} remaining tasks are blocked by {counts[S.FAILED]} failed or "
            "conflicting tasks; a planner must reopen or cancel them.",
        )

    async def _touch_agent(self, tx: Tx, agent: Agent, now: float) -> None:
        """Record that the agent is alive, at most every few seconds (its record says when it last was)."""
        window = min(_AGENT_TOUCH_SECONDS, self.config.leases.agent_ttl_seconds / 4)
        fresh = agent.status == "active" and now - agent.last_heartbeat_at < window
        if not fresh:
            await tx.execute(
                "UPDATE agents SET last_heartbeat_at = $2, status = 'active' WHERE id = $1", agent.id, now
            )

    # --------------------------------------------------------------------- leased operations

    async def heartbeat(
        self,
        caller: Caller,
        *,
        task_id: int,
        lease_id: str,
        progress_note: str | None = None,
        ttl_seconds: float | None = None,
    ) -> Lease:
        """Extend a live lease (by its own ttl unless given) and keep the progress note as a hand-off."""
        requested = None if ttl_seconds is None else self._ttl(ttl_seconds)
        agent = _agent_of(caller, "heartbeat")
        async with self.store.transaction() as tx:
            now = self.now()
            row = await tx.fetchrow(
                "UPDATE tasks SET lease_ttl = COALESCE($5, lease_ttl, $6), lease_expires_at = $4 + COALESCE($5, "
                "lease_ttl, $6), progress_note = COALESCE($3, progress_note), updated_at = $4 "
                f"WHERE id = $1 AND {_holds_lease(2, 7, 8)} "
                "RETURNING *",
                task_id,
                lease_id,
                progress_note,
                now,
                requested,
                float(self.config.leases.ttl_seconds),
                agent.id,
                agent.project_id,
            )
            if row is None:
                await _refuse_lease(tx, task_id, lease_id, agent)
            ttl = float(row["lease_ttl"])
            await self._touch_agent(tx, agent, now)
            append_event(
                tx,
                now=now,
                kind="lease_heartbeat",
                actor=caller.name,
                project_id=agent.project_id,
                task_id=task_id,
                agent_id=agent.id,
                payload={"expires_at": row["lease_expires_at"], "note": progress_note},
            )
        return self._lease(Task.model_validate(row), ttl)

    async def complete(
        self,
        caller: Caller,
        *,
        task_id: int,
        lease_id: str,
        result: str | None = None,
        summary: str | None = None,
        files_changed: list[str] | None = None,
        commit: str | None = None,
    ) -> Task:
        """Finish a leased task: record its result and unblock its dependents, in one transaction."""
        agent = _agent_of(caller, "complete tasks")
        ticket = await self._merge_ticket(task_id, lease_id, agent, commit)
        merging = ticket is not None and self.config.parallel.done_when == "merged"
        status = S.MERGING if merging else S.DONE
        async with self.store.transaction() as tx:
            now = self.now()
            # The usual case is one statement; when it changes nothing, find out why.
            done = await tx.fetchrow(
                "UPDATE tasks SET status = $10, result = $2, summary = $3, files_changed = $4, commit_sha = $5, "
                "lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, completed_at = $6, updated_at = $6 "
                f"WHERE id = $1 AND {_holds_lease(7, 8, 9)} "
                "AND NOT EXISTS (SELECT 1 FROM task_tests WHERE task_id = $1 AND passes = FALSE) "
                "RETURNING *, EXISTS (SELECT 1 FROM task_dependencies WHERE depends_on_task_id = $1) AS has_dependents, "
                f"{DOMAIN_HAS_EXPERTISE} AS has_expertise",
                task_id,
                result,
                summary,
                encode_json(files_changed or []),
                ticket.head if ticket else commit,
                now,
                lease_id,
                agent.id,
                agent.project_id,
                status,
            )
            if done is None:
                await self._refuse_completion(tx, task_id, lease_id, agent)
            task = Task.model_validate({**done, "status": S.IN_PROGRESS})
            task_event(
                tx,
                now,
                "task_completed",
                caller,
                task,
                status,
                {"summary": summary, "files_changed": files_changed or [], "commit": commit},
            )
            if ticket is not None:
                await self._enqueue_merge(tx, task, ticket, now, caller.name)
            if not merging:
                await after_finish(tx, task, now, caller.name, has_dependents=bool(done["has_dependents"]))
            learned = await learn_from_outcome(
                tx,
                task=task,
                failed=False,
                error=None,
                summary=summary,
                files=files_changed or [],
                now=now,
                config=self.config,
                domain_has_expertise=bool(done["has_expertise"]),
            )
        self.wakeup.notify()
        if ticket is not None:
            self.merges_queued.notify()
        await self._sync_expertise(task, learned)
        return task.model_copy(update={"status": status})

    async def _sync_expertise(self, task: Task, learned: bool) -> None:
        """Write the changed expertise to the repository's `.claude/` files (after the commit)."""
        if not learned or self.workspaces is None:
            return
        ws = await self.workspaces.of_project(task.project_id)
        try:
            await sync_files(
                self.store,
                ws.root if ws else None,
                task.project_id,
                task_domain(task, self.config.learning.domains),
                config=self.config,
            )
        except YokeflowError as exc:  # the store holds the expertise; the files catch up next time
            log.warning("could not write the expertise files of task %s: %s", task.id, exc)

    async def _merge_ticket(
        self, task_id: int, lease_id: str, agent: Agent, commit: str | None
    ) -> MergeTicket | None:
        """The branch a completion hands to the merge queue, checked before anything is written."""
        if self.workspaces is None or await self.workspaces.of_project(agent.project_id) is None:
            return None
        async with self.store.transaction(write=False) as tx:
            task = await get_task(tx, task_id, project_id=agent.project_id)
        if task.lease_token != lease_id or task.lease_owner != agent.id:
            return None  # the completion itself then says why it cannot be taken
        return await self.workspaces.merge_ticket(task, commit)

    async def _enqueue_merge(self, tx: Tx, task: Task, ticket: MergeTicket, now: float, actor: str) -> None:
        merge_id = await tx.fetchval(
            "INSERT INTO merges (project_id, task_id, branch, target_branch, head_commit, queued_at) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            task.project_id,
            task.id,
            ticket.branch,
            ticket.target,
            ticket.head,
            now,
        )
        append_event(
            tx,
            now=now,
            kind="merge_queued",
            actor=actor,
            project_id=task.project_id,
            task_id=task.id,
            payload={
                "merge_id": merge_id,
                "branch": ticket.branch,
                "target": ticket.target,
                "head": ticket.head,
                "commits": ticket.ahead,
            },
        )

    async def _refuse_completion(self, tx: Tx, task_id: int, lease_id: str, agent: Agent) -> NoReturn:
        """Raise the reason a completion changed nothing: no such task, a lost lease, or failing tests."""
        await leased_task(
            tx, task_id=task_id, lease_id=lease_id, agent_id=agent.id, project_id=agent.project_id
        )
        failing = [t for t in await task_tests(tx, task_id) if t.passes is False]
        names = "; ".join(f"#{t.id} {t.description}" for t in failing)
        raise StateConflict(
            f"task {task_id} has failing tests: {names}",
            fix="fix them and record update_test_result(passes=true), or call fail_task",
        )

    async def fail(
        self, caller: Caller, *, task_id: int, lease_id: str, error: str, retryable: bool = True
    ) -> Task:
        """Give up on an attempt: retry later with backoff, or fail the task for good."""
        if not error.strip():
            raise InvalidInput(
                "error", "is empty", fix="say what went wrong, so the next attempt can avoid it"
            )
        agent = _agent_of(caller, "fail tasks")
        async with self.store.transaction() as tx:
            now = self.now()
            task = await leased_task(
                tx, task_id=task_id, lease_id=lease_id, agent_id=agent.id, project_id=agent.project_id
            )
            retry = retryable and task.attempts < task.max_attempts
            delay = self.backoff.delay(task.attempts) if retry else 0.0
            target = S.PENDING if retry else S.FAILED
            updated = await tx.fetchrow(
                "UPDATE tasks SET status = $2, last_error = $3, available_at = $4, lease_owner = NULL, "
                "lease_token = NULL, lease_expires_at = NULL, updated_at = $5 WHERE id = $1 RETURNING *",
                task_id,
                target,
                error,
                now + delay,
                now,
            )
            task_event(
                tx,
                now,
                "task_retry_scheduled" if retry else "task_failed",
                caller,
                task,
                target,
                {
                    "error": error,
                    "attempt": task.attempts,
                    "max_attempts": task.max_attempts,
                    "retryable": retryable,
                    "retry_in_seconds": delay if retry else None,
                },
            )
            learned = await learn_from_outcome(
                tx, task=task, failed=True, error=error, summary=None, files=[], now=now, config=self.config
            )
        self.wakeup.notify()
        await self._sync_expertise(task, learned)
        return Task.model_validate(updated)

    async def release(self, caller: Caller, *, task_id: int, lease_id: str, note: str | None = None) -> Task:
        """Hand a leased task back untouched; this does not use up an attempt."""
        agent = _agent_of(caller, "release tasks")
        async with self.store.transaction() as tx:
            now = self.now()
            task = await leased_task(
                tx, task_id=task_id, lease_id=lease_id, agent_id=agent.id, project_id=agent.project_id
            )
            updated = await tx.fetchrow(
                "UPDATE tasks SET status = 'pending', attempts = attempts - 1, progress_note = COALESCE($2, "
                "progress_note), lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, updated_at = $3 "
                "WHERE id = $1 RETURNING *",
                task_id,
                note,
                now,
            )
            task_event(tx, now, "task_released", caller, task, S.PENDING, {"note": note})
        self.wakeup.notify()
        return Task.model_validate(updated)

    # ------------------------------------------------------------------------ planner actions

    async def cancel(self, caller: Caller, *, task_id: int, reason: str = "") -> Task:
        return await self._planner_transition(
            caller, task_id, S.CANCELLED, "cancel", "task_cancelled", reason
        )

    async def reopen(
        self,
        caller: Caller,
        *,
        task_id: int,
        reason: str = "",
        only_from: tuple[TaskStatus, ...] | None = None,
    ) -> Task:
        """Make the task pending again (attempts start over); `only_from` limits the states it may be in."""
        return await self._planner_transition(
            caller, task_id, S.PENDING, "reopen", "task_reopened", reason, sources=only_from
        )

    async def resolve(self, caller: Caller, *, task_id: int, reason: str = "") -> Task:
        """Mark a conflict or rejected task done after a person merged its branch by hand."""
        return await self._planner_transition(
            caller, task_id, S.DONE, "resolve", "task_resolved", reason, sources=(S.CONFLICT, S.REJECTED)
        )

    async def _planner_transition(
        self,
        caller: Caller,
        task_id: int,
        target: TaskStatus,
        action: str,
        kind: str,
        reason: str,
        sources: tuple[TaskStatus, ...] | None = None,
    ) -> Task:
        require_role(caller, ("operator", "planner"), f"{action} tasks")
        async with self.store.transaction() as tx:
            now = self.now()
            project = await self.resolve_project(tx, caller, None) if caller.agent else None
            task = await get_task(tx, task_id, project_id=project.id if project else None, for_update=True)
            if sources is not None and task.status not in sources:
                raise StateConflict(
                    f"cannot {action} task {task_id}: it is {task.status.value}",
                    fix=f"this applies to {' or '.join(s.value for s in sources)} tasks only",
                )
            check_transition(task, target, action)
            reset = ", attempts = 0, available_at = 0, last_error = NULL" if target == S.PENDING else ""
            updated = await tx.fetchrow(
                f"UPDATE tasks SET status = $2, lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, "
                f"completed_at = $4, updated_at = $3{reset} WHERE id = $1 RETURNING *",
                task_id,
                target,
                now,
                now if target == S.DONE else None,
            )
            task_event(tx, now, kind, caller, task, target, {"reason": reason})
            if target != S.PENDING:
                await after_finish(tx, task, now, caller.name)
            elif task.epic_id is not None:
                await tx.execute(
                    "UPDATE epics SET status = 'in_progress', completed_at = NULL, updated_at = $2 "
                    "WHERE id = $1 AND status = 'done'",
                    task.epic_id,
                    now,
                )
        self.wakeup.notify()
        return Task.model_validate(updated)

    # ------------------------------------------------------------------------------ shared

    async def sweep(self, *, project_id: int | None = None) -> dict[str, int]:
        """Record expired leases as events, dead-letter tasks out of attempts, mark silent agents lost.

        Nothing depends on this running on a schedule: expired leases are claimable by the
        claim itself, and a claim that finds nothing runs the lease part for its project.
        """
        async with self.store.transaction() as tx:
            now = self.now()
            expired = await self._expire_leases(tx, now, project_id)
            lost = await self._mark_lost_agents(tx, now, project_id)
        if expired:
            self.wakeup.notify()
        return {"expired": expired, "agents_lost": lost}

    async def _expire_leases(self, tx: Tx, now: float, project_id: int | None) -> int:
        """Note each newly expired lease once; a task on its last attempt becomes failed."""
        scope, args = ("", [now]) if project_id is None else (" AND project_id = $2", [now, project_id])
        expired = await tx.fetch(
            "UPDATE tasks SET expiry_noted = lease_token, "
            "status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE status END, "
            "lease_token = CASE WHEN attempts >= max_attempts THEN NULL ELSE lease_token END, "
            "lease_expires_at = CASE WHEN attempts >= max_attempts THEN NULL ELSE lease_expires_at END, "
            "last_error = CASE WHEN attempts >= max_attempts THEN 'lease expired on the last attempt' "
            "ELSE last_error END "
            "WHERE status = 'in_progress' AND lease_expires_at < $1 "
            f"AND (expiry_noted IS NULL OR expiry_noted <> lease_token){scope} RETURNING *",
            *args,
        )
        for row in expired:
            task = Task.model_validate(row)
            append_event(
                tx,
                now=now,
                kind="lease_expired",
                actor="sweeper",
                project_id=task.project_id,
                task_id=task.id,
                agent_id=task.lease_owner,
                before=S.IN_PROGRESS,
                after=task.status,
                payload={
                    "attempt": task.attempts,
                    "lease_id": task.expiry_noted,
                    "dead_lettered": task.status == S.FAILED,
                },
            )
            if task.status == S.FAILED:
                append_event(
                    tx,
                    now=now,
                    kind="task_failed",
                    actor="sweeper",
                    project_id=task.project_id,
                    task_id=task.id,
                    before=S.IN_PROGRESS,
                    after=S.FAILED,
                    payload={
                        "error": task.last_error,
                        "attempt": task.attempts,
                        "max_attempts": task.max_attempts,
                    },
                )
        return len(expired)

    async def _mark_lost_agents(self, tx: Tx, now: float, project_id: int | None) -> int:
        scope, args = ("", []) if project_id is None else (" AND project_id = $2", [project_id])
        lost = await tx.fetch(
            f"UPDATE agents SET status = 'lost' WHERE status = 'active' AND last_heartbeat_at < $1{scope} "
            "RETURNING id, project_id, name",
            now - self.config.leases.agent_ttl_seconds,
            *args,
        )
        for row in lost:
            append_event(
                tx,
                now=now,
                kind="agent_lost",
                actor="sweeper",
                project_id=row["project_id"],
                agent_id=row["id"],
                payload={"name": row["name"]},
            )
        return len(lost)


async def _refuse_lease(tx: Tx, task_id: int, lease_id: str, agent: Agent) -> NoReturn:
    """Raise why a statement conditioned on this lease changed nothing (NotFound or LeaseLost)."""
    await leased_task(tx, task_id=task_id, lease_id=lease_id, agent_id=agent.id, project_id=agent.project_id)
    raise StateConflict(f"task {task_id} changed while this call ran", fix="call get_task and try again")


def _agent_of(caller: Caller, action: str) -> Agent:
    require_role(caller, ("worker",), action)
    assert caller.agent is not None
    return caller.agent
