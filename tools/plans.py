"""Planner tools over the plan service: check and view the dependency graph, build and adjust the execution plan.

`validate_dependencies`, `get_dependency_graph` and `get_parallel_batches` also serve YokeFlow's
task manager under the same names: called without arguments they answer for the default project
(as the old server's PROJECT_ID did), and `epic_id` limits them to one epic.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

from coordinator.errors import CycleError, InvalidInput, NotFound
from coordinator.execution_plan import ExecutionPlan, PlanPatch
from coordinator.graph import CriticalPath
from coordinator.plans import GraphFormat
from tools.arguments import Id, Name, ProjectRef
from tools.auth import session
from tools.plan_views import (
    DependencyCheck,
    DependencyGraphView,
    ParallelBatches,
    draw,
    epic_graph,
    epic_scope,
    graph_result,
    stored_cycles_explained,
)
from tools.registry import ToolSet
from tools.runtime import ToolContext

TOOLS = ToolSet()

EpicFilter = Annotated[
    Id | None,
    Field(
        description="Only this epic: its tasks and the dependencies among them (YokeFlow's filter). "
        "The epic names its project."
    ),
]
FormatArg = Annotated[
    GraphFormat,
    Field(
        description="json: structured nodes, edges, batches; mermaid: flowchart source; ascii: batches as text."
    ),
]
WorktreeName = Annotated[
    Name | None,
    Field(
        description="Worktree name (letters, digits, '.', '_', '-'); null hands the choice back to the planner."
    ),
]
BatchNumber = Annotated[
    int | None,
    Field(ge=1, le=1_000_000, description="Batch number, 1 = first; null removes the pin."),
]
_UNKNOWN_TASK = re.compile(r"^task (\d+) does not exist")


@TOOLS.tool("Validate dependencies", read_only=True)
async def validate_dependencies(
    ctx: ToolContext, epic_id: EpicFilter = None, project: ProjectRef = None
) -> DependencyCheck:
    """Check the stored dependencies for cycles, unknown tasks, self-dependencies and duplicates. Changes nothing."""
    rt, caller = await session(ctx)
    if epic_id is None:
        return DependencyCheck.of(await rt.coord.plans.validate(caller, project=project), None)
    scope = await epic_scope(rt, caller, epic_id, project)
    report = await rt.coord.plans.validate(caller, project=scope.project_id)
    return DependencyCheck.of(scope.report(report), epic_id)


@TOOLS.tool("Dependency graph", read_only=True)
async def get_dependency_graph(
    ctx: ToolContext, format: FormatArg = "json", epic_id: EpicFilter = None, project: ProjectRef = None
) -> DependencyGraphView:
    """The tasks and their dependencies, with batches and the critical path: as data (json) or drawn (mermaid, ascii)."""
    rt, caller = await session(ctx)
    with stored_cycles_explained():
        if epic_id is None:
            return graph_result(
                format, await rt.coord.plans.graph_view(caller, project=project, format=format)
            )
        scope = await epic_scope(rt, caller, epic_id, project)
        graph, view = await epic_graph(rt, caller, scope)
    return graph_result(
        format, draw(graph, view, format), epic_id=epic_id, external_edges=scope.external_edges(view)
    )


@TOOLS.tool("Parallel batches", read_only=True)
async def get_parallel_batches(
    ctx: ToolContext, epic_id: EpicFilter = None, project: ProjectRef = None
) -> ParallelBatches:
    """Tasks grouped into batches that can run in parallel: each batch only depends on earlier ones."""
    rt, caller = await session(ctx)
    with stored_cycles_explained():
        if epic_id is None:
            return ParallelBatches(
                epic_id=None, batches=await rt.coord.plans.batches(caller, project=project)
            )
        graph, _ = await epic_graph(rt, caller, await epic_scope(rt, caller, epic_id, project))
    return ParallelBatches(epic_id=epic_id, batches=graph.batches())


@TOOLS.tool("Critical path", read_only=True)
async def get_critical_path(
    ctx: ToolContext, epic_id: EpicFilter = None, project: ProjectRef = None
) -> CriticalPath:
    """The longest chain of dependent tasks by their estimates: what bounds the time to finish."""
    rt, caller = await session(ctx)
    with stored_cycles_explained():
        if epic_id is None:
            return await rt.coord.plans.critical_path(caller, project=project)
        graph, _ = await epic_graph(rt, caller, await epic_scope(rt, caller, epic_id, project))
    return graph.critical_path()


@TOOLS.tool("Build the execution plan", idempotent=True)
async def build_execution_plan(ctx: ToolContext, project: ProjectRef = None) -> ExecutionPlan:
    """Plan the unfinished tasks: batches, predicted files and their conflicts, worktrees, makespan.

    Manual adjustments made with update_execution_plan are kept; building again gives the same plan.
    """
    rt, caller = await session(ctx)
    with stored_cycles_explained():
        return await rt.coord.plans.build(caller, project=project)


@TOOLS.tool("Get the execution plan", read_only=True)
async def get_execution_plan(ctx: ToolContext, project: ProjectRef = None) -> ExecutionPlan:
    """The execution plan last built (or adjusted), as it was stored."""
    rt, caller = await session(ctx)
    return await rt.coord.plans.get(caller, project=project)


@TOOLS.tool("Adjust the execution plan", destructive=True, idempotent=True)
async def update_execution_plan(
    ctx: ToolContext,
    worktrees: Annotated[
        dict[Id, WorktreeName],
        Field(
            max_length=10_000,
            description="Task id → the worktree it must run in (null: the planner's choice).",
        ),
    ] = {},  # noqa: B006 - the SDK copies defaults per call
    sequential: Annotated[
        list[tuple[Id, Id]],
        Field(
            max_length=10_000,
            description="[first, then] pairs: `then` waits for `first` (stored as a hard dependency).",
        ),
    ] = [],  # noqa: B006
    pins: Annotated[
        dict[Id, BatchNumber],
        Field(max_length=10_000, description="Task id → the batch it must run in (null: unpinned)."),
    ] = {},  # noqa: B006
    project: ProjectRef = None,
) -> ExecutionPlan:
    """Adjust the plan by hand, all or nothing: the adjustments are checked, kept and re-applied on rebuilds.

    A pair in `sequential` that would close a cycle is refused, naming the cycle, and nothing changes.
    """
    rt, caller = await session(ctx)
    patch = PlanPatch(worktrees=worktrees, sequential=sequential, pins=pins)
    if not (worktrees or sequential or pins):
        raise InvalidInput(
            "worktrees",
            "the patch is empty: give worktrees, sequential or pins",
            fix="to rebuild the plan as it is, call build_execution_plan",
        )
    try:
        return await rt.coord.plans.patch(caller, patch, project=project)
    except CycleError as exc:
        raise CycleError(exc.cycle, field=_pair_named(patch, exc.cycle)) from exc
    except InvalidInput as exc:
        if exc.field != "depends_on":
            raise
        problem = exc.message.removeprefix("depends_on: ")
        ids = [int(n) for n in re.findall(r"\d+", problem)]
        raise InvalidInput(_pair_named(patch, ids), problem, fix=exc.fix) from exc
    except NotFound as exc:
        raise _naming_argument(exc, patch) from exc


def _pair_named(patch: PlanPatch, task_ids: list[int]) -> str:
    """`sequential[i]` for the first pair both of whose tasks are among `task_ids`."""
    return next(
        (f"sequential[{i}]" for i, pair in enumerate(patch.sequential) if set(pair) <= set(task_ids)),
        "sequential",
    )


def _naming_argument(exc: NotFound, patch: PlanPatch) -> NotFound:
    """An unknown-task error with the patch argument that named the task in front."""
    match = _UNKNOWN_TASK.match(exc.message)
    if match is None:
        return exc
    task_id = int(match.group(1))
    places = [
        f"{name}[{task_id}]"
        for name, entries in (("worktrees", patch.worktrees), ("pins", patch.pins))
        if task_id in entries
    ]
    places += [f"sequential[{i}]" for i, pair in enumerate(patch.sequential) if task_id in pair]
    return NotFound(f"{places[0]}: {exc.message}", fix=exc.fix) if places else exc
