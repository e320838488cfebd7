"""Planning: projects, epics, tasks, dependencies and tests, each change checked and audited.

The dependency graph is checked (cycles, unknown ids) before an edge is written, and the
claim order key `remaining_path` is kept current for every task of the project.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from pydantic import BaseModel, Field

from coordinator.config import DEFAULT_DOMAINS
from coordinator.context import Caller, Role, ServiceBase, require_role
from coordinator.domains import classify_domain
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
    depends_on: list[int | str] = Field(
        default_factory=list,
        description="task ids, or local keys of tasks of the same call or of the project",
    )
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


async def insert_project(
    tx: Tx, *, name: str, description: str, spec: str, repo_path: str | None, now: float, actor: str
) -> Project:
    if not name.strip():
        raise InvalidInput("name", "is empty", fix="give the project a name")
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
        actor=actor,
        project_id=project.id,
        payload={"name": project.name},
    )
    return project


class PlanWriter:
    """Writes epics, tasks, dependencies and tests of one project inside one transaction.

    The graph is checked as edges are added, so a cycle or an unknown id fails the whole
    transaction; `finish()` stores the new claim order keys.
    """

    def __init__(
        self,
        tx: Tx,
        *,
        project_id: int,
        graph: DependencyGraph,
        now: float,
        actor: str,
        max_attempts: int,
        domains: Sequence[str] = DEFAULT_DOMAINS,
    ) -> None:
        self.tx, self.project_id, self.graph, self.now = tx, project_id, graph, now
        self.actor, self.max_attempts, self.domains = actor, max_attempts, domains
        self.keys: dict[str, int] = {}

    @classmethod
    async def open(
        cls,
        tx: Tx,
        project_id: int,
        now: float,
        actor: str,
        max_attempts: int,
        domains: Sequence[str] = DEFAULT_DOMAINS,
    ) -> PlanWriter:
        """`domains`: learning.domains, which a task without a domain is classified into."""
        graph = await load_graph(tx, project_id)
        return cls(
            tx,
            project_id=project_id,
            graph=graph,
            now=now,
            actor=actor,
            max_attempts=max_attempts,
            domains=domains,
        )

    def note_event(self, kind: str, task_id: int | None = None, /, **payload: object) -> None:
        append_event(
            self.tx,
            now=self.now,
            kind=kind,
            actor=self.actor,
            project_id=self.project_id,
            task_id=task_id,
            after="pending" if kind == "task_created" else None,
            payload=payload,
        )

    async def add_epic(self, *, name: str, description: str = "", priority: int = 0) -> Epic:
        if not name.strip():
            raise InvalidInput("name", "is empty", fix="give the epic a name")
        row = await self.tx.fetchrow(
            "INSERT INTO epics (project_id, name, description, priority, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
            self.project_id,
            name.strip(),
            description,
            priority,
            self.now,
        )
        epic = Epic.model_validate(row)
        self.graph.add_epic(epic.id)
        self.note_event("epic_created", epic_id=epic.id, name=epic.name)
        return epic

    async def link_epics(self, before: int, after: int, kind: DependencyKind = "hard") -> None:
        """Epic `after` waits for epic `before` (every task of it)."""
        await get_epic(self.tx, before, project_id=self.project_id)
        self.graph.add_epic_edge(before, after, kind)
        await self.tx.execute(
            "INSERT INTO epic_dependencies (epic_id, depends_on_epic_id, kind, created_at) VALUES ($1, $2, $3, $4)",
            after,
            before,
            kind,
            self.now,
        )
        self.note_event("epic_dependency_added", epic_id=after, depends_on=before, kind=kind)

    async def add_task(self, spec: NewTask, field: str = "task") -> Task:
        if spec.epic_id is not None:
            await get_epic(self.tx, spec.epic_id, project_id=self.project_id)
        await check_persona(self.tx, spec.persona, f"{field}.persona")
        domain = spec.domain or classify_domain(
            spec.title, spec.description, spec.predicted_files, self.domains
        )
        try:
            row = await self.tx.fetchrow(
                "INSERT INTO tasks (project_id, epic_id, local_key, title, description, action, priority, "
                "persona, domain, predicted_files, estimate, remaining_path, max_attempts, created_at, "
                "updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $13) "
                "RETURNING *",
                self.project_id,
                spec.epic_id,
                spec.local_key,
                spec.title,
                spec.description,
                spec.action,
                spec.priority,
                spec.persona,
                domain,
                encode_json(spec.predicted_files),
                spec.estimate,
                spec.max_attempts or self.max_attempts,
                self.now,
            )
        except IntegrityViolation:
            raise InvalidInput(
                f"{field}.local_key",
                f"{spec.local_key!r} is already used in this project",
                fix="give each task a unique local key",
            ) from None
        task = Task.model_validate(row)
        self.graph.add_task(task.id, task.priority, task.estimate, epic=task.epic_id)
        if spec.predicted_files:
            await self.tx.executemany(
                "INSERT INTO task_files (task_id, path) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                [(task.id, path) for path in dict.fromkeys(spec.predicted_files)],
            )
        if task.local_key is not None:
            self.keys[task.local_key] = task.id
        depends_on = [
            await self.resolve(ref, f"{field}.depends_on[{i}]") for i, ref in enumerate(spec.depends_on)
        ]
        for before in depends_on:
            await self.link(before, task.id, spec.dependency_type, f"{field}.depends_on")
        self.note_event("task_created", task.id, title=task.title, depends_on=depends_on)
        return task

    async def resolve(self, ref: int | str, field: str) -> int:
        """The task id a dependency names: an id, or the local key of a task of this call or project."""
        if isinstance(ref, int):
            return ref
        if ref not in self.keys:
            found = await self.tx.fetchval(
                "SELECT id FROM tasks WHERE project_id = $1 AND local_key = $2", self.project_id, ref
            )
            if found is not None:
                self.keys[ref] = int(found)
            elif ref.isdigit():
                return int(ref)
            else:
                raise InvalidInput(
                    field,
                    f"{ref!r} is neither a task id nor the key of a task of this call or project",
                    fix="name an existing task by id or key (list_tasks shows both)",
                )
        return self.keys[ref]

    async def link(self, before: int, after: int, kind: DependencyKind, field: str = "depends_on") -> None:
        """Task `after` depends on task `before`; refused (naming it) if unknown or closing a cycle."""
        try:
            self.graph.add_edge(before, after, kind)
        except NotFound:
            missing = before if before not in {t.id for t in self.graph.tasks()} else after
            raise NotFound(
                f"{field}: task {missing} does not exist in this project", fix="list tasks with list_tasks"
            ) from None
        await self.tx.execute(
            "INSERT INTO task_dependencies (task_id, depends_on_task_id, kind, created_at) VALUES ($1, $2, $3, $4)",
            after,
            before,
            kind,
            self.now,
        )

    async def add_test(
        self, task_id: int, *, description: str, category: str, steps: Sequence[str]
    ) -> TaskTest:
        if not description.strip():
            raise InvalidInput("description", "is empty", fix="say what the test checks")
        row = await self.tx.fetchrow(
            "INSERT INTO task_tests (task_id, category, description, steps, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
            task_id,
            category,
            description,
            encode_json(list(steps)),
            self.now,
        )
        test = TaskTest.model_validate(row)
        self.note_event("test_created", task_id, test_id=test.id, description=description)
        return test

    async def finish(self) -> None:
        await store_remaining_paths(self.tx, self.project_id, self.graph)


def in_call_order(tasks: Sequence[NewTask], field: Callable[[int], str]) -> list[int]:
    """Positions of `tasks` such that a task comes after the tasks of the call whose keys it names."""
    keys: dict[str, int] = {}
    for i, spec in enumerate(tasks):
        if spec.local_key is not None:
            if spec.local_key in keys:
                raise InvalidInput(
                    f"{field(i)}.local_key",
                    f"{spec.local_key!r} is also the key of {field(keys[spec.local_key])}",
                    fix="give each task of the call its own key",
                )
            keys[spec.local_key] = i
    needs = {
        i: {keys[r] for r in spec.depends_on if isinstance(r, str) and r in keys}
        for i, spec in enumerate(tasks)
    }
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < len(tasks):
        ready = [i for i in range(len(tasks)) if i not in placed and needs[i] <= placed]
        if not ready:
            stuck = [i for i in range(len(tasks)) if i not in placed]
            names = ", ".join(f"{field(i)} ({tasks[i].local_key!r})" for i in stuck)
            raise InvalidInput(
                f"{field(stuck[0])}.depends_on",
                f"these tasks depend on each other in a cycle: {names}",
                fix="remove one of the dependencies between them",
            )
        order += ready
        placed.update(ready)
    return order


async def check_persona(tx: Tx, persona: str | None, field: str) -> None:
    if persona is not None and await tx.fetchval("SELECT 1 FROM personas WHERE name = $1", persona) is None:
        names = [r["name"] for r in await tx.fetch("SELECT name FROM personas ORDER BY name")]
        raise InvalidInput(
            field, f"persona {persona!r} does not exist", fix=f"use one of: {', '.join(names)}"
        )


class PlanningService(ServiceBase):
    """Creates and links the work; never moves a task between states (see WorkService)."""

    @asynccontextmanager
    async def _writing(
        self, caller: Caller, project: int | str | None, action: str
    ) -> AsyncIterator[PlanWriter]:
        require_role(caller, _PLANNERS, action)
        async with self.store.transaction() as tx:
            target = await self.resolve_project(tx, caller, project)
            writer = await PlanWriter.open(
                tx,
                target.id,
                self.now(),
                caller.name,
                self.config.leases.max_attempts,
                self.config.learning.domains,
            )
            yield writer
            await writer.finish()
        self.wakeup.notify()

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
        async with self.store.transaction() as tx:
            project = await insert_project(
                tx,
                name=name,
                description=description,
                spec=spec,
                repo_path=repo_path,
                now=self.now(),
                actor=caller.name,
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
        async with self._writing(caller, project, "create epics") as writer:
            epic = await writer.add_epic(name=name, description=description, priority=priority)
            for before in depends_on:
                await writer.link_epics(before, epic.id)
        return epic

    async def create_tasks(
        self, caller: Caller, tasks: Sequence[NewTask], *, project: int | str | None = None
    ) -> list[Task]:
        """Create tasks (and their dependencies) in one transaction: all of them or none."""

        def field(index: int) -> str:
            return f"tasks[{index}]"

        async with self._writing(caller, project, "create tasks") as writer:
            created = {i: await writer.add_task(tasks[i], field(i)) for i in in_call_order(tasks, field)}
            await writer.finish()
            rows = await writer.tx.fetch(
                "SELECT * FROM tasks WHERE project_id = $1 AND id >= $2 ORDER BY id",
                writer.project_id,
                min((t.id for t in created.values()), default=0),
            )
        by_id = {int(r["id"]): Task.model_validate(r) for r in rows}
        return [by_id[created[i].id] for i in range(len(tasks))]

    async def add_dependency(
        self, caller: Caller, *, task_id: int, depends_on: int, kind: DependencyKind = "hard"
    ) -> None:
        """Make `task_id` depend on `depends_on`; a cycle or an unknown task is refused, naming it."""
        async with self._writing(
            caller, await self._project_of_task(caller, task_id), "change dependencies"
        ) as writer:
            await writer.link(depends_on, task_id, kind)
            writer.note_event("dependency_added", task_id, depends_on=depends_on, kind=kind)

    async def remove_dependency(self, caller: Caller, *, task_id: int, depends_on: int) -> None:
        async with self._writing(
            caller, await self._project_of_task(caller, task_id), "change dependencies"
        ) as writer:
            removed = await writer.tx.execute(
                "DELETE FROM task_dependencies WHERE task_id = $1 AND depends_on_task_id = $2",
                task_id,
                depends_on,
            )
            if not removed:
                raise NotFound(
                    f"task {task_id} does not depend on task {depends_on}",
                    fix="see the task's dependencies with get_task",
                )
            writer.graph.remove_edge(depends_on, task_id)
            writer.note_event("dependency_removed", task_id, depends_on=depends_on)

    async def create_test(
        self,
        caller: Caller,
        *,
        task_id: int,
        description: str,
        category: str = "functional",
        steps: Sequence[str] = (),
    ) -> TaskTest:
        async with self._writing(
            caller, await self._project_of_task(caller, task_id), "create tests"
        ) as writer:
            return await writer.add_test(task_id, description=description, category=category, steps=steps)

    async def _project_of_task(self, caller: Caller, task_id: int) -> int:
        async with self.store.transaction(write=False) as tx:
            return (await get_task(tx, task_id, project_id=caller.project_id)).project_id

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
