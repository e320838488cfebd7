"""Reads shared by the services: fetch records by id, scoped to a project when asked."""

from __future__ import annotations

from coordinator.errors import NotFound
from coordinator.records import Epic, Project, Task, TaskTest
from coordinator.storage.base import Tx


async def get_project(tx: Tx, project: int | str) -> Project:
    """A project by id or by name."""
    if isinstance(project, int) or (isinstance(project, str) and project.isdigit()):
        row = await tx.fetchrow("SELECT * FROM projects WHERE id = $1", int(project))
    else:
        row = await tx.fetchrow("SELECT * FROM projects WHERE name = $1", project)
    if row is None:
        names = [r["name"] for r in await tx.fetch("SELECT name FROM projects ORDER BY id LIMIT 20")]
        raise NotFound(
            f"project {project!r} does not exist",
            fix=f"use one of: {', '.join(names)}" if names else "create it first with create_project",
        )
    return Project.model_validate(row)


async def only_project(tx: Tx) -> Project | None:
    """The single project of this database, or None when there are none or several."""
    rows = await tx.fetch("SELECT * FROM projects WHERE status <> 'archived' ORDER BY id LIMIT 2")
    return Project.model_validate(rows[0]) if len(rows) == 1 else None


async def get_epic(tx: Tx, epic_id: int, *, project_id: int | None = None) -> Epic:
    row = await tx.fetchrow("SELECT * FROM epics WHERE id = $1", epic_id)
    if row is None or (project_id is not None and row["project_id"] != project_id):
        raise NotFound(f"epic {epic_id} does not exist in this project", fix="list epics with list_epics")
    return Epic.model_validate(row)


async def get_task(tx: Tx, task_id: int, *, project_id: int | None = None, for_update: bool = False) -> Task:
    lock = " FOR UPDATE" if for_update and tx.backend == "postgresql" else ""
    row = await tx.fetchrow(f"SELECT * FROM tasks WHERE id = $1{lock}", task_id)
    if row is None or (project_id is not None and row["project_id"] != project_id):
        raise NotFound(f"task {task_id} does not exist in this project", fix="list tasks with list_tasks")
    return Task.model_validate(row)


async def get_tasks_by_id(tx: Tx, task_ids: list[int]) -> list[Task]:
    """The tasks with these ids that exist, in id order."""
    if not task_ids:
        return []
    placeholders = ", ".join(f"${i}" for i in range(1, len(task_ids) + 1))
    rows = await tx.fetch(f"SELECT * FROM tasks WHERE id IN ({placeholders}) ORDER BY id", *task_ids)
    return [Task.model_validate(r) for r in rows]


async def list_tasks(
    tx: Tx,
    project_id: int,
    *,
    status: str | None = None,
    epic_id: int | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[Task]:
    clauses: list[str] = ["project_id = $1"]
    args: list[object] = [project_id]
    if status is not None:
        args.append(status)
        clauses.append(f"status = ${len(args)}")
    if epic_id is not None:
        args.append(epic_id)
        clauses.append(f"epic_id = ${len(args)}")
    args += [limit, offset]
    rows = await tx.fetch(
        f"SELECT * FROM tasks WHERE {' AND '.join(clauses)} ORDER BY id LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [Task.model_validate(r) for r in rows]


async def list_epics(tx: Tx, project_id: int) -> list[Epic]:
    rows = await tx.fetch("SELECT * FROM epics WHERE project_id = $1 ORDER BY priority, id", project_id)
    return [Epic.model_validate(r) for r in rows]


async def task_tests(tx: Tx, task_id: int) -> list[TaskTest]:
    rows = await tx.fetch("SELECT * FROM task_tests WHERE task_id = $1 ORDER BY id", task_id)
    return [TaskTest.model_validate(r) for r in rows]


async def depends_on_ids(tx: Tx, task_ids: list[int]) -> dict[int, list[int]]:
    """For each of these tasks that has dependencies, the ids of the tasks it depends on, in order."""
    if not task_ids:
        return {}
    marks = ", ".join(f"${i}" for i in range(1, len(task_ids) + 1))
    rows = await tx.fetch(
        f"SELECT task_id, depends_on_task_id FROM task_dependencies WHERE task_id IN ({marks}) "
        "ORDER BY task_id, depends_on_task_id",
        *task_ids,
    )
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(int(row["task_id"]), []).append(int(row["depends_on_task_id"]))
    return found
