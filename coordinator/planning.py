"""Planning: projects, epics, tasks, dependencies and tests, each change checked and audited.

The dependency graph is checked (cycles, unknown ids) before an edge is written, and the
claim order key `remaining_path` is kept current for every task of the project.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

from coordinator.context import Caller, Role, ServiceBase, require_role
from coordinator.errors import InvalidInput, NotFound
from coordinator.events import append_event
from coordinator.graph import DependencyGraph
from coordinator.queries import get_epic, get_project, get_task
from coordinator.records import DependencyKind, Epic, Project, Task, TaskTest
from coordinator.storage.base import IntegrityViolation, Tx, encode_json

_PLANNERS: tuple[Role, ...] = ("operator", "planner")


class NewTask(BaseModel):
    """What a planner gives to create one task."""

    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    action: str = ""
    epic_id: int | None = None
    priority: int = 0
    persona: str | None = None
    domain: str | None = None
    estimate: float = Field(default=1.0, gt=0, le=1e6)
    predicted_files: list[str] = Field(default_factory=list)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    local_key: str | None = None
    depends_on: list[int] = Field(default_factory=list)
    dependency_type: DependencyKind = "hard"


async def load_graph(tx: Tx, project_id: int) -> DependencyGraph:
    """The project's tasks, epics and edges as a graph (checked as it is built)."""
    graph = DependencyGraph()
    for row in await tx.fetch("SELECT id FROM epics WHERE project_id = $1 ORDER BY id", project_id):
        graph.add_epic(int(row["id"]))
    for row in await tx.fetch(
        "SELECT id, priority, estimate, epic_id FROM tasks WHERE project_id = $1 ORDER BY id", project_id
    ):
        graph.add_task(int(row["id"]), int(row["priority"]), float(row["estimate"]), epic=row["epic_id"])
    for row in await tx.fetch(
        "SELECT d.task_id, d.depends_on_task_id, d.kind FROM task_dependencies d JOIN tasks t ON t.id = d.task_id "
        "WHERE t.project_id = $1",
        project_id,
    ):
        graph.add_edge(int(row["depends_on_task_id"]), int(row["task_id"]), row["kind"])
    for row in await tx.fetch(
        "SELECT d.epic_id, d.depends_on_epic_id, d.kind FROM epic_dependencies d JOIN epics e ON e.id = d.epic_id "
        "WHERE e.project_id = $1",
        project_id,
    ):
        graph.add_epic_edge(int(row["depends_on_epic_id"]), int(row["epic_id"]), row["kind"])
    return graph


async def store_remaining_paths(tx: Tx, project_id: int, graph: DependencyGraph) -> None:
    """Write the claim order key of every task whose value changed."""
    current = {
        int(r["id"]): float(r["remaining_path"])
        for r in await tx.fetch("SELECT id, remaining_path FROM tasks WHERE project_id = $1", project_id)
    }
    changed = [
        (value, task_id)
        for task_id, value in graph.remaining_path().items()
        if task_id in current and not math.isclose(current[task_id], value)
    ]
    if changed:
        await tx.executemany("UPDATE tasks SET remaining_path = $1 WHERE id = $2", changed)


class PlanningService(ServiceBase):
    """Creates and links the work; never moves a task between states (see WorkService)."""

    async def create_project(
        self,
        caller: Caller,
        *,
        name: str,
        description: str = "",
        spec: str = "",
        repo_path: str | None = None,
    ) -> Project:
        require_role(caller, ("operator",), "create projects")
        if not name.strip():
            raise InvalidInput("name", "is empty", fix="give the project a name")
        async with self.store.transaction() as tx:
            now = self.now()
            try:
                row = await tx.fetchrow(
                    "INSERT INTO projects (name, description, spec, repo_path, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
                    name.strip(),
                    description,
                    spec,
                    repo_path,
                    now,
                )
            except IntegrityViolation:
                raise InvalidInput(
                    "name", f"a project named {name!r} already exists", fix="choose another name"
                ) from None
            project = Project.model_validate(row)
            append_event(
                tx,
                now=now,
                kind="project_created",
                actor=caller.name,
                project_id=project.id,
                payload={"name": project.name},
            )
        return project

    async def create_epic(
        self,
        caller: Caller,
        *,
        name: str,
        description: str = "",
        priority: int = 0,
        project: int | str | None = None,
        depends_on: Sequence[int] = (),
    ) -> Epic:
        require_role(caller, _PLANNERS, "create epics")
        if not name.strip():
            raise InvalidInput("name", "is empty", fix="give the epic a name")
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            row = await tx.fetchrow(
                "INSERT INTO epics (project_id, name, description, priority, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
                target.id,
                name.strip(),
                description,
                priority,
                now,
            )
            epic = Epic.model_validate(row)
            if depends_on:
                graph = await load_graph(tx, target.id)
                for before in depends_on:
                    await get_epic(tx, before, project_id=target.id)
                    graph.add_epic_edge(before, epic.id, "hard")
                    await tx.execute(
                        "INSERT INTO epic_dependencies (epic_id, depends_on_epic_id, kind, created_at) "
                        "VALUES ($1, $2, 'hard', $3)",
                        epic.id,
                        before,
                        now,
                    )
                await store_remaining_paths(tx, target.id, graph)
            append_event(
                tx,
                now=now,
                kind="epic_created",
                actor=caller.name,
                project_id=target.id,
                payload={"epic_id": epic.id, "name": epic.name, "depends_on": list(depends_on)},
            )
        return epic

    async def create_tasks(
        self, caller: Caller, tasks: Sequence[NewTask], *, project: int | str | None = None
    ) -> list[Task]:
        """Create tasks (and their dependencies) in one transaction: all of them or none."""
        require_role(caller, _PLANNERS, "create tasks")
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            graph = await load_graph(tx, target.id)
            created: list[Task] = []
            for index, spec in enumerate(tasks):
                field = f"tasks[{index}]" if len(tasks) > 1 else "task"
                if spec.epic_id is not None:
                    await get_epic(tx, spec.epic_id, project_id=target.id)
                await self._check_persona(tx, spec.persona, f"{field}.persona")
                try:
                    row = await tx.fetchrow(
                        "INSERT INTO tasks (project_id, epic_id, local_key, title, description, action, priority, "
                        "persona, domain, predicted_files, estimate, remaining_path, max_attempts, created_at, "
                        "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $13) "
                        "RETURNING *",
                        target.id,
                        spec.epic_id,
                        spec.local_key,
                        spec.title,
                        spec.description,
                        spec.action,
                        spec.priority,
                        spec.persona,
                        spec.domain,
                        encode_json(spec.predicted_files),
                        spec.estimate,
                        spec.max_attempts or self.config.leases.max_attempts,
                        now,
                    )
                except IntegrityViolation:
                    raise InvalidInput(
                        f"{field}.local_key",
                        f"{spec.local_key!r} is already used in this project",
                        fix="give each task a unique local key",
                    ) from None
                task = Task.model_validate(row)
                graph.add_task(task.id, task.priority, task.estimate, epic=task.epic_id)
                if spec.predicted_files:
                    await tx.executemany(
                        "INSERT INTO task_files (task_id, path) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        [(task.id, path) for path in dict.fromkeys(spec.predicted_files)],
                    )
                for before in spec.depends_on:
                    await self._link(
                        tx, graph, before, task.id, spec.dependency_type, now, f"{field}.depends_on"
                    )
                created.append(task)
                append_event(
                    tx,
                    now=now,
                    kind="task_created",
                    actor=caller.name,
                    project_id=target.id,
                    task_id=task.id,
                    after="pending",
                    payload={"title": task.title, "depends_on": spec.depends_on},
                )
            await store_remaining_paths(tx, target.id, graph)
            ids = [t.id for t in created]
            rows = (
                await tx.fetch(
                    f"SELECT * FROM tasks WHERE id IN ({', '.join(str(i) for i in ids)}) ORDER BY id"
                )
                if ids
                else []
            )
        self.wakeup.notify()
        return [Task.model_validate(r) for r in rows]

    async def add_dependency(
        self, caller: Caller, *, task_id: int, depends_on: int, kind: DependencyKind = "hard"
    ) -> None:
        """Make `task_id` depend on `depends_on`; a cycle or an unknown task is refused, naming it."""
        require_role(caller, _PLANNERS, "change dependencies")
        async with self.store.transaction() as tx:
            now = self.now()
            task = await get_task(tx, task_id, project_id=caller.project_id)
            graph = await load_graph(tx, task.project_id)
            await self._link(tx, graph, depends_on, task_id, kind, now, "depends_on")
            await store_remaining_paths(tx, task.project_id, graph)
            append_event(
                tx,
                now=now,
                kind="dependency_added",
                actor=caller.name,
                project_id=task.project_id,
                task_id=task_id,
                payload={"depends_on": depends_on, "kind": kind},
            )

    async def remove_dependency(self, caller: Caller, *, task_id: int, depends_on: int) -> None:
        require_role(caller, _PLANNERS, "change dependencies")
        async with self.store.transaction() as tx:
            now = self.now()
            task = await get_task(tx, task_id, project_id=caller.project_id)
            removed = await tx.execute(
                "DELETE FROM task_dependencies WHERE task_id = $1 AND depends_on_task_id = $2",
                task_id,
                depends_on,
            )
            if not removed:
                raise NotFound(
                    f"task {task_id} does not depend on task {depends_on}",
                    fix="see the task's dependencies with get_task",
                )
            await store_remaining_paths(tx, task.project_id, await load_graph(tx, task.project_id))
            append_event(
                tx,
                now=now,
                kind="dependency_removed",
                actor=caller.name,
                project_id=task.project_id,
                task_id=task_id,
                payload={"depends_on": depends_on},
            )
        self.wakeup.notify()

    async def _link(
        self,
        tx: Tx,
        graph: DependencyGraph,
        before: int,
        after: int,
        kind: DependencyKind,
        now: float,
        field: str,
    ) -> None:
        try:
            graph.add_edge(before, after, kind)
        except NotFound:
            raise NotFound(
                f"{field}: task {before} does not exist in this project", fix="list tasks with list_tasks"
            ) from None
        await tx.execute(
            "INSERT INTO task_dependencies (task_id, depends_on_task_id, kind, created_at) VALUES ($1, $2, $3, $4)",
            after,
            before,
            kind,
            now,
        )

    async def _check_persona(self, tx: Tx, persona: str | None, field: str) -> None:
        if (
            persona is not None
            and await tx.fetchval("SELECT 1 FROM personas WHERE name = $1", persona) is None
        ):
            names = [r["name"] for r in await tx.fetch("SELECT name FROM personas ORDER BY name")]
            raise InvalidInput(
                field, f"persona {persona!r} does not exist", fix=f"use one of: {', '.join(names)}"
            )

    async def create_test(
        self,
        caller: Caller,
        *,
        task_id: int,
        description: str,
        category: str = "functional",
        steps: Sequence[str] = (),
    ) -> TaskTest:
        require_role(caller, _PLANNERS, "create tests")
        if not description.strip():
            raise InvalidInput("description", "is empty", fix="say what the test checks")
        async with self.store.transaction() as tx:
            now = self.now()
            task = await get_task(tx, task_id, project_id=caller.project_id)
            row = await tx.fetchrow(
                "INSERT INTO task_tests (task_id, category, description, steps, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
                task_id,
                category,
                description,
                encode_json(list(steps)),
                now,
            )
            test = TaskTest.model_validate(row)
            append_event(
                tx,
                now=now,
                kind="test_created",
                actor=caller.name,
                project_id=task.project_id,
                task_id=task_id,
                payload={"test_id": test.id, "description": description},
            )
        return test

    async def update_test_result(
        self, caller: Caller, *, test_id: int, passes: bool, notes: str | None = None
    ) -> TaskTest:
        require_role(caller, ("operator", "planner", "worker"), "record test results")
        async with self.store.transaction() as tx:
            now = self.now()
            row = await tx.fetchrow(
                "SELECT tt.id, t.project_id, t.id AS task_id FROM task_tests tt JOIN tasks t ON t.id = tt.task_id "
                "WHERE tt.id = $1",
                test_id,
            )
            if row is None or (caller.project_id is not None and row["project_id"] != caller.project_id):
                raise NotFound(
                    f"test {test_id} does not exist in this project", fix="list tests with list_tests"
                )
            updated = await tx.fetchrow(
                "UPDATE task_tests SET passes = $2, notes = COALESCE($3, notes), updated_at = $4 WHERE id = $1 "
                "RETURNING *",
                test_id,
                passes,
                notes,
                now,
            )
            append_event(
                tx,
                now=now,
                kind="test_result",
                actor=caller.name,
                project_id=row["project_id"],
                task_id=row["task_id"],
                payload={"test_id": test_id, "passes": passes},
            )
        return TaskTest.model_validate(updated)

    async def set_project_status(self, caller: Caller, *, project: int | str | None, status: str) -> Project:
        """Pause, resume or mark a project complete."""
        require_role(caller, _PLANNERS, "change the project's status")
        if status not in ("active", "paused", "complete"):
            raise InvalidInput("status", f"{status!r} is not allowed", fix="use active, paused or complete")
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            await tx.execute(
                "UPDATE projects SET status = $2, updated_at = $3 WHERE id = $1", target.id, status, now
            )
            append_event(
                tx,
                now=now,
                kind="project_status",
                actor=caller.name,
                project_id=target.id,
                before=target.status,
                after=status,
            )
            updated = await get_project(tx, target.id)
        self.wakeup.notify()
        return updated
