"""Observer tools: read-only views of a project, for people, IDEs and agents.

`list_tasks` and `get_task` also accept YokeFlow's arguments (`only_pending`).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field

from coordinator import __version__
from coordinator.costs import CostSummary
from coordinator.observe import EventPage, ProjectStatus, TaskDetail, TaskPage
from coordinator.records import TaskStatus
from tools.arguments import Id, Limit, Offset, ProjectRef
from tools.auth import session
from tools.registry import ToolSet
from tools.results import AgentList, MergeList, Pong
from tools.runtime import ToolContext

TOOLS = ToolSet()


@TOOLS.tool("Project status", read_only=True)
async def project_status(ctx: ToolContext, project: ProjectRef = None) -> ProjectStatus:
    """Tasks per state, ready and running tasks, tests, each epic's progress and the active agents."""
    rt, caller = await session(ctx)
    return await rt.observe.project_status(caller, project=project)


@TOOLS.tool("List tasks", read_only=True)
async def list_tasks(
    ctx: ToolContext,
    status: Annotated[
        TaskStatus | list[TaskStatus] | None, Field(description="Only tasks in this state (or these states).")
    ] = None,
    epic_id: Annotated[Id | None, Field(description="Only the tasks of this epic.")] = None,
    only_pending: Annotated[bool, Field(description="Only tasks not done or cancelled yet.")] = False,
    limit: Limit = 100,
    offset: Offset = 0,
    project: ProjectRef = None,
) -> TaskPage:
    """List tasks by id, one page at a time, with their dependencies."""
    rt, caller = await session(ctx)
    statuses = [] if status is None else [status] if isinstance(status, TaskStatus) else status
    return await rt.observe.list_tasks(
        caller,
        project=project,
        statuses=statuses,
        epic_id=epic_id,
        only_open=only_pending,
        limit=limit,
        offset=offset,
    )


@TOOLS.tool("Get a task", read_only=True)
async def get_task(
    ctx: ToolContext,
    task_id: Annotated[Id, Field(description="Id of the task.")],
    events: Annotated[int, Field(ge=0, le=500, description="How many of its latest events to include.")] = 20,
) -> TaskDetail:
    """A task with its epic, dependencies, dependents, what blocks it, its tests and latest events."""
    rt, caller = await session(ctx)
    return await rt.observe.get_task(caller, task_id=task_id, events=events)


@TOOLS.tool("List agents", read_only=True)
async def list_agents(
    ctx: ToolContext,
    status: Annotated[
        Literal["active", "lost", "stopped"] | None, Field(description="Only agents in this state.")
    ] = None,
    project: ProjectRef = None,
) -> AgentList:
    """The project's agents, with the tasks each holds a lease on."""
    rt, caller = await session(ctx)
    return AgentList(agents=await rt.observe.list_agents(caller, project=project, status=status))


@TOOLS.tool("List merges", read_only=True)
async def list_merges(ctx: ToolContext, limit: Limit = 100, project: ProjectRef = None) -> MergeList:
    """The merge queue, newest first: each finished task's branch, its state, conflicts and test output."""
    rt, caller = await session(ctx)
    return MergeList(merges=await rt.observe.list_merges(caller, project=project, limit=limit))


@TOOLS.tool("Get events", read_only=True)
async def get_events(
    ctx: ToolContext,
    after_id: Annotated[
        int, Field(ge=0, le=2**63 - 1, description="Only events after this id (0 = from the start).")
    ] = 0,
    limit: Limit = 100,
    task_id: Annotated[Id | None, Field(description="Only the events of this task.")] = None,
    project: ProjectRef = None,
) -> EventPage:
    """The audit log, oldest first. Pass next_after_id back as after_id to follow along."""
    rt, caller = await session(ctx)
    return await rt.observe.get_events(
        caller, project=project, after_id=after_id, limit=limit, task_id=task_id
    )


@TOOLS.tool("Costs", read_only=True)
async def get_costs(ctx: ToolContext, project: ProjectRef = None) -> CostSummary:
    """What the project has spent: the total, the budget used, and lines by model, agent and task."""
    rt, caller = await session(ctx)
    return await rt.coord.costs.summary(caller, project=project)


@TOOLS.tool("Ping", read_only=True)
async def ping(ctx: ToolContext) -> Pong:
    """Check the server answers (touches neither the database nor your token)."""
    return Pong(server=ctx.mcp_server.name, version=__version__, time=time.time())
