"""Dependencies and the execution plan: the graph, batches, critical path, validation, edges, the plan."""

from __future__ import annotations

from pydantic import BaseModel, Field

from coordinator.execution_plan import ExecutionPlan, PlanPatch
from coordinator.graph import CriticalPath, Issue
from coordinator.graph_render import GraphData
from coordinator.records import DependencyKind
from coordinator.rest.api import Call, RouteTable
from coordinator.rest.params import Id, ProjectPath, Strict

GRAPH = RouteTable("dependencies")


class Batches(BaseModel):
    batches: list[list[int]] = Field(description="Task ids that may run in parallel, batch by batch.")


class Validation(BaseModel):
    ok: bool
    issues: list[Issue]


class DependencyBody(Strict):
    task_id: Id = Field(description="The task that waits.")
    depends_on: Id = Field(description="The task it waits for.")
    kind: DependencyKind = Field(
        default="hard",
        description="hard: blocks until that task is done (this is 'force sequential'); soft: orders only.",
    )


class DependencyRef(Strict):
    task_id: Id
    depends_on: Id


class Dependency(BaseModel):
    task_id: int
    depends_on: int
    kind: DependencyKind | None = Field(description="Null when the dependency was removed.")
    removed: bool = False


@GRAPH.get("/api/projects/{project}/graph")
async def graph(call: Call, path: ProjectPath) -> GraphData:
    """The dependency graph: nodes with status, batch and critical-path flags, edges, batches, critical path."""
    view = await call.coord.plans.graph_view(call.caller, project=path.project, format="json")
    return GraphData.model_validate(view)


@GRAPH.get("/api/projects/{project}/batches")
async def batches(call: Call, path: ProjectPath) -> Batches:
    """The parallel batches: each batch's tasks depend only on tasks of earlier batches."""
    return Batches(batches=await call.coord.plans.batches(call.caller, project=path.project))


@GRAPH.get("/api/projects/{project}/critical-path")
async def critical_path(call: Call, path: ProjectPath) -> CriticalPath:
    """The longest chain of tasks by estimates, in dependency order."""
    return await call.coord.plans.critical_path(call.caller, project=path.project)


@GRAPH.post("/api/projects/{project}/dependencies/validate", write=False)
async def validate(call: Call, path: ProjectPath) -> Validation:
    """Check the stored dependencies: cycles, unknown tasks, self-dependencies, duplicates (reads only)."""
    report = await call.coord.plans.validate(call.caller, project=path.project)
    return Validation(ok=report.ok, issues=report.issues)


@GRAPH.post("/api/dependencies", status=201)
async def add_dependency(call: Call, body: DependencyBody) -> Dependency:
    """Make `task_id` wait for `depends_on`.

    An edge that would close a cycle is refused with code `cycle` and the cycle's task ids;
    nothing is written.
    """
    await call.coord.planning.add_dependency(
        call.caller, task_id=body.task_id, depends_on=body.depends_on, kind=body.kind
    )
    return Dependency(task_id=body.task_id, depends_on=body.depends_on, kind=body.kind)


@GRAPH.delete("/api/dependencies")
async def remove_dependency(call: Call, query: DependencyRef) -> Dependency:
    """Remove the dependency of `task_id` on `depends_on` (both given as query parameters)."""
    await call.coord.planning.remove_dependency(
        call.caller, task_id=query.task_id, depends_on=query.depends_on
    )
    return Dependency(task_id=query.task_id, depends_on=query.depends_on, kind=None, removed=True)


@GRAPH.get("/api/projects/{project}/execution-plan")
async def get_plan(call: Call, path: ProjectPath) -> ExecutionPlan:
    """The stored execution plan: batches, worktrees, predicted file conflicts, makespan."""
    return await call.coord.plans.get(call.caller, project=path.project)


@GRAPH.post("/api/projects/{project}/execution-plan")
async def build_plan(call: Call, path: ProjectPath) -> ExecutionPlan:
    """Build (or rebuild) the execution plan from the current tasks, keeping manual adjustments."""
    return await call.coord.plans.build(call.caller, project=path.project)


class PlanPatchBody(PlanPatch, Strict):
    """Manual adjustments; `sequential` pairs become hard dependencies (a cycle is refused, nothing written)."""


@GRAPH.patch("/api/projects/{project}/execution-plan")
async def patch_plan(call: Call, path: ProjectPath, body: PlanPatchBody) -> ExecutionPlan:
    """Adjust the plan: pin tasks to batches, move them between worktrees, force pairs sequential."""
    return await call.coord.plans.patch(call.caller, body, project=path.project)
