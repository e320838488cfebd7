"""Reads the REST API needs beyond `ObserverService`: projects, task cards, worktrees, one merge.

Each read is scoped like every other: an agent sees only its own project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from coordinator.context import Caller, ServiceBase
from coordinator.errors import NotFound
from coordinator.queries import depends_on_ids, get_epic
from coordinator.records import Merge, MergeStatus, TaskStatus
from coordinator.steering import SteeredTask
from coordinator.storage.base import Row


class ProjectSummary(BaseModel):
    id: int
    name: str
    description: str
    repo_path: str | None
    status: str
    created_at: float
    updated_at: float
    tasks: dict[str, int] = Field(description="Number of tasks in each state (every state is listed).")


class TaskCard(SteeredTask):
    """A task as a board shows it: every field, its steering, and what it depends on."""

    depends_on: list[int] = Field(description="Ids of the tasks this one depends on (hard and soft).")


class TaskCardPage(BaseModel):
    tasks: list[TaskCard]
    count: int = Field(description="Number of tasks in this page.")
    total: int = Field(description="Number of tasks that match the filters.")
    next_offset: int | None = Field(description="Offset of the next page, or null when this is the last.")


class AgentBrief(BaseModel):
    id: int
    name: str
    persona: str
    status: str
    last_heartbeat_at: float


class TaskBrief(BaseModel):
    id: int
    title: str
    status: TaskStatus
    attempts: int
    lease_expires_at: float | None
    branch: str | None


class WorktreeView(BaseModel):
    """One row of the `worktrees` table with its agent and the task that agent holds a lease on."""

    id: int
    name: str
    path: str
    branch: str | None
    status: str
    base_commit: str | None
    created_at: float
    updated_at: float
    agent: AgentBrief | None
    current_task: TaskBrief | None


class MergeDetail(BaseModel):
    merge: Merge
    task: TaskBrief


@dataclass(frozen=True)
class TaskFilter:
    statuses: Sequence[TaskStatus] = ()
    epic_id: int | None = None
    persona: str | None = None
    parked: bool | None = None


class RestReads(ServiceBase):
    async def projects(self, caller: Caller) -> list[ProjectSummary]:
        """Every project (the agent's own only, for an agent), with its task counts."""
        async with self.store.transaction(write=False) as tx:
            scope, args = ("", []) if caller.project_id is None else (" WHERE id = $1", [caller.project_id])
            rows = await tx.fetch(f"SELECT * FROM projects{scope} ORDER BY id", *args)
            counts = await tx.fetch(
                "SELECT project_id, status, COUNT(*) AS n FROM tasks GROUP BY project_id, status"
            )
        by_project: dict[int, dict[str, int]] = {}
        for row in counts:
            by_project.setdefault(int(row["project_id"]), {})[row["status"]] = int(row["n"])
        return [
            ProjectSummary.model_validate(
                {**row, "tasks": {s.value: by_project.get(row["id"], {}).get(s.value, 0) for s in TaskStatus}}
            )
            for row in rows
        ]

    async def task_cards(
        self, caller: Caller, project: str, wanted: TaskFilter, *, limit: int, offset: int
    ) -> TaskCardPage:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            if wanted.epic_id is not None:
                await get_epic(tx, wanted.epic_id, project_id=target.id)
            clauses: list[str] = ["project_id = $1"]
            args: list[object] = [target.id]
            if wanted.statuses:
                marks = ", ".join(f"${len(args) + i + 1}" for i in range(len(wanted.statuses)))
                clauses.append(f"status IN ({marks})")
                args += [s.value for s in wanted.statuses]
            for column, value in (
                ("epic_id", wanted.epic_id),
                ("persona", wanted.persona),
                ("parked", wanted.parked),
            ):
                if value is not None:
                    args.append(value)
                    clauses.append(f"{column} = ${len(args)}")
            where = " AND ".join(clauses)
            total = int(await tx.fetchval(f"SELECT COUNT(*) FROM tasks WHERE {where}", *args))
            rows = await tx.fetch(
                f"SELECT * FROM tasks WHERE {where} ORDER BY id LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
                *args,
                limit,
                offset,
            )
            depends = await depends_on_ids(tx, [int(r["id"]) for r in rows])
        cards = [TaskCard.model_validate({**r, "depends_on": depends.get(int(r["id"]), [])}) for r in rows]
        return TaskCardPage(
            tasks=cards,
            count=len(cards),
            total=total,
            next_offset=offset + len(cards) if offset + len(cards) < total else None,
        )

    async def worktrees(self, caller: Caller, project: str) -> list[WorktreeView]:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            rows = await tx.fetch(
                "SELECT w.*, a.name AS agent_name, a.persona AS agent_persona, a.status AS agent_status, "
                "a.last_heartbeat_at AS agent_heartbeat, t.id AS task_id, t.title AS task_title, "
                "t.status AS task_status, t.attempts AS task_attempts, t.lease_expires_at AS task_lease, "
                "t.branch AS task_branch FROM worktrees w LEFT JOIN agents a ON a.id = w.agent_id "
                "LEFT JOIN tasks t ON t.id = (SELECT MIN(l.id) FROM tasks l WHERE l.lease_owner = w.agent_id "
                "AND l.status = 'in_progress') WHERE w.project_id = $1 ORDER BY w.id",
                target.id,
            )
        return [_worktree(r) for r in rows]

    async def merge(self, caller: Caller, merge_id: int) -> MergeDetail:
        async with self.store.transaction(write=False) as tx:
            row = await tx.fetchrow("SELECT * FROM merges WHERE id = $1", merge_id)
            if row is None or (caller.project_id is not None and row["project_id"] != caller.project_id):
                raise NotFound(
                    f"merge {merge_id} does not exist in this project", fix="list the project's merges"
                )
            task = await tx.fetchrow("SELECT * FROM tasks WHERE id = $1", row["task_id"])
        return MergeDetail(merge=Merge.model_validate(row), task=TaskBrief.model_validate(task))

    async def merges(
        self, caller: Caller, project: str, statuses: Sequence[MergeStatus], limit: int
    ) -> list[Merge]:
        """The project's merges, newest first, in these states (any state when none are named)."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            marks = ", ".join(f"${i + 3}" for i in range(len(statuses)))
            scope = f" AND status IN ({marks})" if statuses else ""
            rows = await tx.fetch(
                f"SELECT * FROM merges WHERE project_id = $1{scope} ORDER BY id DESC LIMIT $2",
                target.id,
                limit,
                *(s.value for s in statuses),
            )
        return [Merge.model_validate(r) for r in rows]


def _worktree(row: Row) -> WorktreeView:
    agent = (
        None
        if row["agent_name"] is None
        else {
            "id": row["agent_id"],
            "name": row["agent_name"],
            "persona": row["agent_persona"],
            "status": row["agent_status"],
            "last_heartbeat_at": row["agent_heartbeat"],
        }
    )
    task = (
        None
        if row["task_id"] is None
        else {
            "id": row["task_id"],
            "title": row["task_title"],
            "status": row["task_status"],
            "attempts": row["task_attempts"],
            "lease_expires_at": row["task_lease"],
            "branch": row["task_branch"],
        }
    )
    return WorktreeView.model_validate({**row, "agent": agent, "current_task": task})
