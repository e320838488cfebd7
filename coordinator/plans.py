"""Plans as a whole: import a plan file, read the dependency graph, build and patch the execution plan.

The execution plan lives in the project's metadata (`execution_plan`); building it also
records each task's batch and its predicted files (which claims use to avoid leasing two
tasks that touch the same file at once).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from coordinator.config import ParallelConfig
from coordinator.context import Caller, Role, ServiceBase, require_role
from coordinator.errors import NotFound
from coordinator.events import append_event
from coordinator.execution_plan import ExecutionPlan, ExecutionPlanBuilder, PlanPatch
from coordinator.graph import CriticalPath, DependencyGraph, Edge, TaskNode, ValidationReport
from coordinator.graph_render import to_ascii, to_json, to_mermaid
from coordinator.plan_spec import ParsedPlan, SuggestedEdge, TaskRef, infer_dependencies, parse_plan
from coordinator.planning import NewTask, PlanWriter, check_persona, insert_project, load_graph
from coordinator.queries import get_project, list_epics, list_tasks
from coordinator.records import Project
from coordinator.storage.base import Tx, decode_json, encode_json

GraphFormat = Literal["json", "mermaid", "ascii"]
_PLANNERS: tuple[Role, ...] = ("operator", "planner")


class ImportedPlan(BaseModel):
    project: Project
    epic_ids: list[int]
    task_ids: dict[str, int]
    suggested_dependencies: list[SuggestedEdge]
    plan: ExecutionPlan


class PlanService(ServiceBase):
    async def import_plan(
        self,
        caller: Caller,
        text: str,
        *,
        project: int | str | None = None,
        format: Literal["json", "yaml"] | None = None,
    ) -> ImportedPlan:
        """Create a plan file's epics, tasks, dependencies and tests in one transaction, then plan it."""
        require_role(caller, _PLANNERS, "import plans")
        parsed = parse_plan(text, format=format)
        name = project if project is not None else parsed.spec.project
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self._import_target(tx, caller, name, now)
            writer = await PlanWriter.open(
                tx, target.id, now, caller.name, self.config.leases.max_attempts, self.config.learning.domains
            )
            epic_ids, task_ids = await _write_plan(tx, writer, parsed)
            await writer.finish()
            plan = await self._build(tx, target.id, caller.name, now)
            target = await get_project(tx, target.id)
        self.wakeup.notify()
        return ImportedPlan(
            project=target,
            epic_ids=epic_ids,
            task_ids={ref.path: task_id for ref, task_id in task_ids.items()},
            suggested_dependencies=infer_dependencies(parsed.spec),
            plan=plan,
        )

    async def _import_target(self, tx: Tx, caller: Caller, name: int | str | None, now: float) -> Project:
        """The named project, created when the operator imports into a new name."""
        if isinstance(name, str) and caller.agent is None and not name.isdigit():
            exists = await tx.fetchval("SELECT id FROM projects WHERE name = $1", name)
            if exists is None:
                return await insert_project(
                    tx, name=name, description="", spec="", repo_path=None, now=now, actor=caller.name
                )
        return await self.resolve_project(tx, caller, name)

    async def build(self, caller: Caller, *, project: int | str | None = None) -> ExecutionPlan:
        require_role(caller, _PLANNERS, "build the execution plan")
        async with self.store.transaction() as tx:
            target = await self.resolve_project(tx, caller, project)
            plan = await self._build(tx, target.id, caller.name, self.now())
        self.wakeup.notify()
        return plan

    async def get(self, caller: Caller, *, project: int | str | None = None) -> ExecutionPlan:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
        stored = target.metadata.get("execution_plan")
        if stored is None:
            raise NotFound(
                f"project {target.name!r} has no execution plan yet",
                fix="build it with build_execution_plan (or `yokeflow plan build`)",
            )
        return ExecutionPlan.model_validate(stored)

    async def patch(
        self, caller: Caller, patch: PlanPatch, *, project: int | str | None = None
    ) -> ExecutionPlan:
        """Apply manual adjustments (worktrees, forced order, pinned batches), validated, as one change."""
        require_role(caller, _PLANNERS, "change the execution plan")
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            stored = target.metadata.get("execution_plan")
            builder = await _builder(tx, target.id, self.config.parallel)
            current = ExecutionPlan.model_validate(stored) if stored else builder.build()
            result = builder.apply_patch(current, patch)
            writer = await PlanWriter.open(
                tx, target.id, now, caller.name, self.config.leases.max_attempts, self.config.learning.domains
            )
            for edge in result.edges_to_add:
                await writer.link(edge.before, edge.after, edge.kind, "sequential")
            await writer.finish()
            await _store_plan(tx, target.id, result.plan, now)
            append_event(
                tx,
                now=now,
                kind="plan_patched",
                actor=caller.name,
                project_id=target.id,
                payload={"patch": patch.model_dump(mode="json"), "edges_added": len(result.edges_to_add)},
            )
        self.wakeup.notify()
        return result.plan

    async def _build(self, tx: Tx, project_id: int, actor: str, now: float) -> ExecutionPlan:
        builder = await _builder(tx, project_id, self.config.parallel)
        project = await get_project(tx, project_id)
        previous = project.metadata.get("execution_plan")
        adjustments = ExecutionPlan.model_validate(previous).adjustments if previous else None
        plan = builder.build(adjustments)
        await _store_plan(tx, project_id, plan, now)
        append_event(
            tx,
            now=now,
            kind="plan_built",
            actor=actor,
            project_id=project_id,
            payload={
                "batches": len(plan.batches),
                "tasks": len(plan.tasks),
                "conflicts": len(plan.conflicts),
                "makespan": plan.makespan.model_dump(),
            },
        )
        return plan

    # ---------------------------------------------------------------------------- reading

    async def graph_view(
        self, caller: Caller, *, project: int | str | None = None, format: GraphFormat = "json"
    ) -> dict[str, Any] | str:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            graph = await load_graph(tx, target.id)
            tasks = await list_tasks(tx, target.id, limit=1_000_000)
        titles = {t.id: t.title for t in tasks}
        statuses = {t.id: t.status.value for t in tasks}
        if format == "mermaid":
            return to_mermaid(graph, titles=titles, statuses=statuses)
        if format == "ascii":
            return to_ascii(graph, titles=titles, statuses=statuses)
        return to_json(graph, titles=titles, statuses=statuses)

    async def batches(self, caller: Caller, *, project: int | str | None = None) -> list[list[int]]:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            return (await load_graph(tx, target.id)).batches()

    async def critical_path(self, caller: Caller, *, project: int | str | None = None) -> CriticalPath:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            return (await load_graph(tx, target.id)).critical_path()

    async def validate(self, caller: Caller, *, project: int | str | None = None) -> ValidationReport:
        """Cycles, unknown references, self-dependencies and duplicates in the stored dependencies."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            tasks = await list_tasks(tx, target.id, limit=1_000_000)
            edges, epic_edges = await _edges(tx, target.id)
            epics = [e.id for e in await list_epics(tx, target.id)]
        return DependencyGraph.validate(
            [TaskNode(t.id, t.priority, t.estimate, t.epic_id) for t in tasks],
            edges,
            epics=epics,
            epic_edges=epic_edges,
        )


async def _write_plan(tx: Tx, writer: PlanWriter, parsed: ParsedPlan) -> tuple[list[int], dict[TaskRef, int]]:
    """Write the plan's epics, tasks, tests and edges; return the new ids."""
    spec = parsed.spec
    epic_ids = [
        (await writer.add_epic(name=epic.name, description=epic.description, priority=epic.priority)).id
        for epic in spec.epics
    ]
    for epic_edge in parsed.epic_edges:
        await writer.link_epics(epic_ids[epic_edge.before], epic_ids[epic_edge.after])
    task_ids: dict[TaskRef, int] = {}
    for e, epic in enumerate(spec.epics):
        for t, task in enumerate(epic.tasks):
            ref = TaskRef(epic=e, task=t)
            await check_persona(tx, task.persona, f"{ref.path}.persona")
            created = await writer.add_task(
                NewTask(
                    title=task.title,
                    description=task.description,
                    action=task.action,
                    epic_id=epic_ids[e],
                    priority=task.priority,
                    persona=task.persona,
                    estimate=task.estimate,
                    predicted_files=task.predicted_files,
                    local_key=task.key,
                ),
                ref.path,
            )
            task_ids[ref] = created.id
            for test in task.tests:
                await writer.add_test(
                    created.id, description=test.description, category=test.category, steps=test.steps
                )
    for edge in parsed.edges:
        before = edge.before if isinstance(edge.before, int) else task_ids[edge.before]
        await writer.link(before, task_ids[edge.after], edge.kind, edge.location)
    return epic_ids, task_ids


async def _builder(tx: Tx, project_id: int, parallel: ParallelConfig) -> ExecutionPlanBuilder:
    tasks = await list_tasks(tx, project_id, limit=1_000_000)
    epics = await list_epics(tx, project_id)
    edges, epic_edges = await _edges(tx, project_id)
    return ExecutionPlanBuilder(
        tasks, epics, edges, epic_edges, max_concurrency=parallel.max_concurrency, strategy=parallel.strategy
    )


async def _edges(tx: Tx, project_id: int) -> tuple[list[Edge], list[Edge]]:
    """The project's task dependencies and epic dependencies as graph edges."""
    tasks = await tx.fetch(
        "SELECT d.depends_on_task_id AS before, d.task_id AS after, d.kind FROM task_dependencies d "
        "JOIN tasks t ON t.id = d.task_id WHERE t.project_id = $1",
        project_id,
    )
    epics = await tx.fetch(
        "SELECT d.depends_on_epic_id AS before, d.epic_id AS after, d.kind FROM epic_dependencies d "
        "JOIN epics e ON e.id = d.epic_id WHERE e.project_id = $1",
        project_id,
    )
    return (
        [Edge(r["before"], r["after"], r["kind"]) for r in tasks],
        [Edge(r["before"], r["after"], r["kind"]) for r in epics],
    )


async def _store_plan(tx: Tx, project_id: int, plan: ExecutionPlan, now: float) -> None:
    """Keep the plan in the project's metadata, each task's batch, and its predicted files."""
    metadata = decode_json(await tx.fetchval("SELECT metadata FROM projects WHERE id = $1", project_id)) or {}
    metadata["execution_plan"] = plan.model_dump(mode="json")
    await tx.execute("UPDATE projects SET metadata = $2 WHERE id = $1", project_id, encode_json(metadata))
    await tx.executemany(
        "UPDATE tasks SET batch_number = $2 WHERE id = $1", [(t.id, t.batch) for t in plan.tasks]
    )
    files = [(t.id, path) for t in plan.tasks for path in t.predicted_files]
    if plan.tasks:
        await tx.execute(
            f"DELETE FROM task_files WHERE task_id IN ({', '.join(str(t.id) for t in plan.tasks)})"
        )
    if files:
        await tx.executemany(
            "INSERT INTO task_files (task_id, path) VALUES ($1, $2) ON CONFLICT DO NOTHING", files
        )
    await tx.execute("DELETE FROM parallel_batches WHERE project_id = $1", project_id)
    await tx.executemany(
        "INSERT INTO parallel_batches (project_id, batch_number, status, created_at) VALUES ($1, $2, 'pending', $3)",
        [(project_id, b.number, now) for b in plan.batches],
    )
