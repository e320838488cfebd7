"""Read-only views for people and agents: project status, tasks, epics, tests, agents, events.

Nothing here changes the store. Every read is scoped the same way the writing services scope
their work: an agent sees only its own project; the local operator sees the project it names,
the server's default project, or the only project there is.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from coordinator.context import Caller, ServiceBase
from coordinator.events import last_position, latest_events, read_events
from coordinator.leasing import NO_FILE_CONFLICT, ready_condition
from coordinator.queries import depends_on_ids, get_epic, get_task, task_tests
from coordinator.records import Agent, Epic, Event, Merge, Project, Task, TaskStatus, TaskTest
from coordinator.sessions import SessionRecord, latest_sessions
from coordinator.storage.base import Tx

S = TaskStatus
OPEN_STATUSES: tuple[TaskStatus, ...] = (
    S.PENDING,
    S.IN_PROGRESS,
    S.MERGING,
    S.FAILED,
    S.CONFLICT,
    S.REJECTED,
)
"""States of a task that is not finished (done) or dropped (cancelled)."""

# Any persona when $3 is '', else tasks without a persona or for that persona.
_ANY_OR_PERSONA = "($3 = '' OR t.persona IS NULL OR t.persona = $3)"


class TaskSummary(BaseModel):
    """One line of a task list: enough to pick a task without its full text."""

    id: int
    project_id: int
    epic_id: int | None
    local_key: str | None
    title: str
    status: TaskStatus
    priority: int
    persona: str | None
    estimate: float
    attempts: int
    max_attempts: int
    lease_owner: int | None = Field(description="Id of the agent holding the lease, if any.")
    lease_expires_at: float | None
    depends_on: list[int] = Field(description="Ids of the tasks this one depends on (hard and soft).")
    updated_at: float

    @classmethod
    def of(cls, task: Task, depends_on: Sequence[int] = ()) -> TaskSummary:
        return cls.model_validate({**task.model_dump(), "depends_on": list(depends_on)})


class DependencyInfo(BaseModel):
    task_id: int
    title: str
    status: TaskStatus
    kind: str = Field(description="hard (blocks) or soft (orders only).")


class TaskDetail(BaseModel):
    task: Task
    epic: Epic | None
    dependencies: list[DependencyInfo] = Field(description="Tasks this task depends on.")
    dependents: list[DependencyInfo] = Field(description="Tasks that depend on this task.")
    blocked_by: list[int] = Field(description="Hard dependencies that are not done or cancelled yet.")
    tests: list[TaskTest]
    recent_events: list[Event] = Field(description="The task's latest events, oldest first.")


class TaskPage(BaseModel):
    tasks: list[TaskSummary]
    count: int = Field(description="Number of tasks in this page.")
    next_offset: int | None = Field(description="Offset of the next page, or null when this is the last.")


class EpicProgress(BaseModel):
    id: int
    project_id: int
    name: str
    description: str
    status: str
    priority: int
    total_tasks: int
    done_tasks: int
    cancelled_tasks: int
    open_tasks: int
    percent_done: float = Field(description="Done tasks out of those not cancelled, 0-100.")


class EpicDetail(BaseModel):
    epic: Epic
    progress: EpicProgress
    depends_on: list[int] = Field(description="Ids of the epics this epic depends on.")
    tasks: list[TaskSummary]


class TestCounts(BaseModel):
    total: int
    passing: int
    failing: int
    not_run: int


class AgentView(BaseModel):
    """An agent as others may see it (never its token or token hash)."""

    id: int
    project_id: int
    name: str
    persona: str
    role: str
    status: str
    capabilities: list[str]
    last_heartbeat_at: float
    worktree: str | None
    pid: int | None
    created_at: float
    leased_task_ids: list[int] = Field(default_factory=list, description="Tasks it holds a live lease on.")

    @classmethod
    def of(cls, agent: Agent, leased: Sequence[int] = ()) -> AgentView:
        return cls.model_validate(
            {**agent.model_dump(exclude={"token_hash"}), "leased_task_ids": list(leased)}
        )


class ProjectStatus(BaseModel):
    project: Project
    tasks: dict[str, int] = Field(description="Number of tasks in each state (every state is listed).")
    total_tasks: int
    ready_tasks: int = Field(description="Tasks a suitable agent could claim right now.")
    running_tasks: int = Field(description="Tasks under a live lease.")
    percent_done: float = Field(description="Done tasks out of those not cancelled, 0-100.")
    tests: TestCounts
    epics: list[EpicProgress]
    active_agents: list[AgentView]
    last_event_id: int = Field(
        description="Id of the project's latest event; get_events(after_id=…) continues."
    )


class EventPage(BaseModel):
    events: list[Event]
    next_after_id: int = Field(description="Pass as after_id to get the events that follow.")
    more: bool = Field(description="True when more events were waiting than the limit allowed.")


def _percent(done: int, total: int, cancelled: int) -> float:
    counted = total - cancelled
    return round(100.0 * done / counted, 1) if counted > 0 else (100.0 if total else 0.0)


def ready_tasks_sql(backend: str, *, avoid_file_conflicts: bool, select: str, order: bool) -> str:
    """Ready tasks of project $1 at time $2 for persona $3 ('' = any), as the claim sees them."""
    conflicts = NO_FILE_CONFLICT if avoid_file_conflicts else ""
    tail = " ORDER BY t.priority, t.remaining_path DESC, t.id LIMIT 1" if order else ""
    return f"SELECT {select} FROM tasks t WHERE {ready_condition(_ANY_OR_PERSONA)}{conflicts}{tail}"


class ObserverService(ServiceBase):
    """Read-only queries; any role may call them, each within the caller's project."""

    async def project_status(self, caller: Caller, *, project: int | str | None = None) -> ProjectStatus:
        async with self.store.transaction(write=False) as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            counts = {s.value: 0 for s in TaskStatus}
            for row in await tx.fetch(
                "SELECT status, COUNT(*) AS n FROM tasks WHERE project_id = $1 GROUP BY status", target.id
            ):
                counts[row["status"]] = int(row["n"])
            ready = await self._count_ready(tx, target.id, now)
            running = await tx.fetchval(
                "SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND status = 'in_progress' "
                "AND lease_expires_at >= $2",
                target.id,
                now,
            )
            tests = await tx.fetchrow(
                "SELECT COUNT(*) AS total, "
                "COALESCE(SUM(CASE WHEN tt.passes THEN 1 ELSE 0 END), 0) AS passing, "
                "COALESCE(SUM(CASE WHEN NOT tt.passes THEN 1 ELSE 0 END), 0) AS failing "
                "FROM task_tests tt JOIN tasks t ON t.id = tt.task_id WHERE t.project_id = $1",
                target.id,
            )
            assert tests is not None
            epics = await self._epic_progress(tx, target.id)
            agents = await self._agents(tx, target.id, now, status="active")
        total = sum(counts.values())
        total_tests, passing, failing = int(tests["total"]), int(tests["passing"]), int(tests["failing"])
        return ProjectStatus(
            project=target,
            tasks=counts,
            total_tasks=total,
            ready_tasks=ready,
            running_tasks=int(running),
            percent_done=_percent(counts[S.DONE], total, counts[S.CANCELLED]),
            tests=TestCounts(
                total=total_tests, passing=passing, failing=failing, not_run=total_tests - passing - failing
            ),
            epics=epics,
            active_agents=agents,
            last_event_id=await last_position(self.store, project_id=target.id),
        )

    async def list_tasks(
        self,
        caller: Caller,
        *,
        project: int | str | None = None,
        statuses: Sequence[TaskStatus] = (),
        epic_id: int | None = None,
        only_open: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> TaskPage:
        """Tasks by id, filtered as asked, one page at a time."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            clauses: list[str] = ["project_id = $1"]
            args: list[object] = [target.id]
            wanted = [s.value for s in statuses] or None
            if only_open:
                open_values = [s.value for s in OPEN_STATUSES]
                wanted = [s for s in wanted if s in open_values] if wanted else open_values
            if wanted is not None:
                if not wanted:
                    return TaskPage(tasks=[], count=0, next_offset=None)
                marks = ", ".join(f"${len(args) + i + 1}" for i in range(len(wanted)))
                clauses.append(f"status IN ({marks})")
                args += wanted
            if epic_id is not None:
                await get_epic(tx, epic_id, project_id=target.id)
                args.append(epic_id)
                clauses.append(f"epic_id = ${len(args)}")
            args += [limit + 1, offset]
            rows = await tx.fetch(
                f"SELECT * FROM tasks WHERE {' AND '.join(clauses)} ORDER BY id "
                f"LIMIT ${len(args) - 1} OFFSET ${len(args)}",
                *args,
            )
            tasks = [Task.model_validate(r) for r in rows[:limit]]
            deps = await depends_on_ids(tx, [t.id for t in tasks])
        return TaskPage(
            tasks=[TaskSummary.of(t, deps.get(t.id, [])) for t in tasks],
            count=len(tasks),
            next_offset=offset + limit if len(rows) > limit else None,
        )

    async def get_task(self, caller: Caller, *, task_id: int, events: int = 20) -> TaskDetail:
        async with self.store.transaction(write=False) as tx:
            task = await get_task(tx, task_id, project_id=caller.project_id)
            epic = await get_epic(tx, task.epic_id) if task.epic_id is not None else None
            dependencies = await self._neighbours(tx, task_id, upstream=True)
            dependents = await self._neighbours(tx, task_id, upstream=False)
            tests = await task_tests(tx, task_id)
        return TaskDetail(
            task=task,
            epic=epic,
            dependencies=dependencies,
            dependents=dependents,
            blocked_by=[
                d.task_id for d in dependencies if d.kind == "hard" and d.status not in (S.DONE, S.CANCELLED)
            ],
            tests=tests,
            recent_events=await latest_events(self.store, task_id=task_id, limit=events) if events else [],
        )

    async def list_epics(
        self, caller: Caller, *, project: int | str | None = None, needs_expansion: bool = False
    ) -> list[EpicProgress]:
        """The project's epics with their progress; `needs_expansion` keeps those without tasks."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            epics = await self._epic_progress(tx, target.id)
        return [e for e in epics if e.total_tasks == 0] if needs_expansion else epics

    async def list_merges(
        self, caller: Caller, *, project: int | str | None = None, limit: int = 100
    ) -> list[Merge]:
        """The merge queue of a project, newest first: waiting, running and finished merges."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            rows = await tx.fetch(
                "SELECT * FROM merges WHERE project_id = $1 ORDER BY id DESC LIMIT $2", target.id, limit
            )
        return [Merge.model_validate(r) for r in rows]

    async def get_epic(self, caller: Caller, *, epic_id: int) -> EpicDetail:
        async with self.store.transaction(write=False) as tx:
            epic = await get_epic(tx, epic_id, project_id=caller.project_id)
            progress = await self._epic_progress(tx, epic.project_id, epic_id=epic_id)
            depends_on = await tx.fetch(
                "SELECT depends_on_epic_id FROM epic_dependencies WHERE epic_id = $1 ORDER BY depends_on_epic_id",
                epic_id,
            )
            rows = await tx.fetch("SELECT * FROM tasks WHERE epic_id = $1 ORDER BY priority, id", epic_id)
            tasks = [Task.model_validate(r) for r in rows]
            deps = await depends_on_ids(tx, [t.id for t in tasks])
        return EpicDetail(
            epic=epic,
            progress=progress[0],
            depends_on=[int(r["depends_on_epic_id"]) for r in depends_on],
            tasks=[TaskSummary.of(t, deps.get(t.id, [])) for t in tasks],
        )

    async def list_tests(
        self, caller: Caller, *, task_id: int | None = None, project: int | str | None = None
    ) -> list[TaskTest]:
        """The tests of one task, or of every task of the project."""
        async with self.store.transaction(write=False) as tx:
            if task_id is not None:
                await get_task(tx, task_id, project_id=caller.project_id)
                return await task_tests(tx, task_id)
            target = await self.resolve_project(tx, caller, project)
            rows = await tx.fetch(
                "SELECT tt.* FROM task_tests tt JOIN tasks t ON t.id = tt.task_id WHERE t.project_id = $1 "
                "ORDER BY tt.task_id, tt.id",
                target.id,
            )
        return [TaskTest.model_validate(r) for r in rows]

    async def list_agents(
        self, caller: Caller, *, project: int | str | None = None, status: str | None = None
    ) -> list[AgentView]:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            return await self._agents(tx, target.id, self.now(), status=status)

    async def find_agent(
        self, caller: Caller, *, name: str, persona: str, capability: str, project: int | str | None = None
    ) -> Agent | None:
        """The oldest agent of the project with this name, persona and capability that is not stopped."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            rows = await tx.fetch(
                "SELECT * FROM agents WHERE project_id = $1 AND name = $2 AND persona = $3 "
                "AND status <> 'stopped' ORDER BY id",
                target.id,
                name,
                persona,
            )
        agents = [Agent.model_validate(r) for r in rows]
        return next((a for a in agents if capability in a.capabilities), None)

    async def agent(self, caller: Caller, *, agent_id: int) -> Agent | None:
        """An agent of the caller's project (any project for the operator), or None."""
        async with self.store.transaction(write=False) as tx:
            row = await tx.fetchrow("SELECT * FROM agents WHERE id = $1", agent_id)
        if row is None or (caller.project_id is not None and row["project_id"] != caller.project_id):
            return None
        return Agent.model_validate(row)

    async def dependency_ids(self, caller: Caller, task_ids: Sequence[int]) -> dict[int, list[int]]:
        """For each of these tasks (of the caller's project), the ids of the tasks it depends on."""
        if not task_ids:
            return {}
        async with self.store.transaction(write=False) as tx:
            project = await self.resolve_project(tx, caller, None) if caller.agent else None
            marks = ", ".join(f"${i}" for i in range(2, len(task_ids) + 2))
            rows = await tx.fetch(
                f"SELECT d.task_id, d.depends_on_task_id FROM task_dependencies d JOIN tasks t ON t.id = d.task_id "
                f"WHERE ($1 = 0 OR t.project_id = $1) AND d.task_id IN ({marks}) "
                "ORDER BY d.task_id, d.depends_on_task_id",
                project.id if project else 0,
                *task_ids,
            )
        found: dict[int, list[int]] = {}
        for row in rows:
            found.setdefault(int(row["task_id"]), []).append(int(row["depends_on_task_id"]))
        return found

    async def get_events(
        self,
        caller: Caller,
        *,
        project: int | str | None = None,
        after_id: int = 0,
        limit: int = 100,
        task_id: int | None = None,
    ) -> EventPage:
        """Events after `after_id`, oldest first: a cursor for catching up and following along."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
        events = await read_events(
            self.store, project_id=target.id, after_id=after_id, limit=limit + 1, task_id=task_id
        )
        page = events[:limit]
        return EventPage(
            events=page, next_after_id=page[-1].id if page else after_id, more=len(events) > limit
        )

    async def session_history(
        self, caller: Caller, *, project: int | str | None = None, limit: int = 10
    ) -> list[SessionRecord]:
        """The project's latest agent sessions (one per lease), newest first."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
        return await latest_sessions(self.store, project_id=target.id, limit=limit, now=self.now())

    async def next_ready_task(
        self, caller: Caller, *, project: int | str | None = None, persona: str | None = None
    ) -> Task | None:
        """The task a claim would lease next (for `persona`, or any persona), without leasing it."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            sql = ready_tasks_sql(
                tx.backend,
                avoid_file_conflicts=self.config.parallel.avoid_file_conflicts,
                select="t.*",
                order=True,
            )
            row = await tx.fetchrow(sql, target.id, self.now(), persona or "")
        return None if row is None else Task.model_validate(row)

    # ------------------------------------------------------------------------------ helpers

    async def _count_ready(self, tx: Tx, project_id: int, now: float) -> int:
        sql = ready_tasks_sql(tx.backend, avoid_file_conflicts=False, select="COUNT(*)", order=False)
        return int(await tx.fetchval(sql, project_id, now, ""))

    async def _epic_progress(
        self, tx: Tx, project_id: int, *, epic_id: int | None = None
    ) -> list[EpicProgress]:
        scope, args = ("", [project_id]) if epic_id is None else (" AND e.id = $2", [project_id, epic_id])
        rows = await tx.fetch(
            "SELECT e.*, COUNT(t.id) AS total, "
            "COALESCE(SUM(CASE WHEN t.status = 'done' THEN 1 ELSE 0 END), 0) AS done, "
            "COALESCE(SUM(CASE WHEN t.status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled "
            f"FROM epics e LEFT JOIN tasks t ON t.epic_id = e.id WHERE e.project_id = $1{scope} "
            "GROUP BY e.id ORDER BY e.priority, e.id",
            *args,
        )
        return [
            EpicProgress(
                id=r["id"],
                project_id=r["project_id"],
                name=r["name"],
                description=r["description"],
                status=r["status"],
                priority=r["priority"],
                total_tasks=int(r["total"]),
                done_tasks=int(r["done"]),
                cancelled_tasks=int(r["cancelled"]),
                open_tasks=int(r["total"]) - int(r["done"]) - int(r["cancelled"]),
                percent_done=_percent(int(r["done"]), int(r["total"]), int(r["cancelled"])),
            )
            for r in rows
        ]

    async def _agents(self, tx: Tx, project_id: int, now: float, *, status: str | None) -> list[AgentView]:
        scope, args = ("", [project_id]) if status is None else (" AND status = $2", [project_id, status])
        rows = await tx.fetch(f"SELECT * FROM agents WHERE project_id = $1{scope} ORDER BY id", *args)
        leases = await tx.fetch(
            "SELECT id, lease_owner FROM tasks WHERE project_id = $1 AND status = 'in_progress' "
            "AND lease_expires_at >= $2 ORDER BY id",
            project_id,
            now,
        )
        held: dict[int, list[int]] = {}
        for lease in leases:
            held.setdefault(int(lease["lease_owner"]), []).append(int(lease["id"]))
        agents = [Agent.model_validate(r) for r in rows]
        return [AgentView.of(a, held.get(a.id, [])) for a in agents]

    async def _neighbours(self, tx: Tx, task_id: int, *, upstream: bool) -> list[DependencyInfo]:
        mine, other = ("task_id", "depends_on_task_id") if upstream else ("depends_on_task_id", "task_id")
        rows = await tx.fetch(
            f"SELECT t.id, t.title, t.status, d.kind FROM task_dependencies d JOIN tasks t ON t.id = d.{other} "
            f"WHERE d.{mine} = $1 ORDER BY t.id",
            task_id,
        )
        return [
            DependencyInfo(task_id=r["id"], title=r["title"], status=r["status"], kind=r["kind"])
            for r in rows
        ]
