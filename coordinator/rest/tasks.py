"""Tasks: the board's list, one task in detail, and steering it (priority, park, status, assign, resolve)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coordinator.errors import InvalidInput
from coordinator.observe import TaskDetail
from coordinator.records import TaskStatus
from coordinator.rest.api import Call, RouteTable
from coordinator.rest.params import (
    Id,
    Limit,
    Name,
    Offset,
    Priority,
    ProjectPath,
    Reason,
    ShortText,
    Strict,
    TaskPath,
)
from coordinator.rest.reads import TaskCardPage, TaskFilter
from coordinator.steering import Assignment, SteeredTask, steered_task

TASKS = RouteTable("tasks")


class TaskQuery(Strict):
    status: list[TaskStatus] = Field(
        default=[], description="Only tasks in these states (repeat, or comma-separate)."
    )
    epic_id: Id | None = None
    persona: Name | None = None
    parked: bool | None = None
    limit: Limit = 100
    offset: Offset = 0


class DetailQuery(Strict):
    events: int = Field(
        default=50, ge=0, le=1000, description="How many of the task's latest events to include."
    )


class SteeredDetail(TaskDetail):
    task: SteeredTask


class TaskPatch(Strict):
    """Change a task: priority and parked together, or its status alone."""

    priority: Priority | None = None
    parked: bool | None = Field(default=None, description="true: never claimed until unparked.")
    status: Literal["cancelled", "pending"] | None = Field(
        default=None, description="cancelled: drop the task; pending: reopen it (attempts start again)."
    )
    reason: ShortText = Field(default="", description="Why; kept in the audit log.")


class AssignBody(Strict):
    agent_id: Id | None = Field(description="The only agent that may claim the task next; null: any agent.")


class ResolveBody(Reason):
    action: Literal["done", "reopen"] = Field(
        default="done",
        description="done: a person merged the branch by hand; reopen: do the task again.",
    )


@TASKS.get("/api/projects/{project}/tasks")
async def list_tasks(call: Call, path: ProjectPath, query: TaskQuery) -> TaskCardPage:
    """The project's tasks by id, filtered, one page at a time, with their steering and dependencies."""
    wanted = TaskFilter(
        statuses=query.status, epic_id=query.epic_id, persona=query.persona, parked=query.parked
    )
    return await call.reads.task_cards(
        call.caller, path.project, wanted, limit=query.limit, offset=query.offset
    )


@TASKS.get("/api/tasks/{task_id}")
async def get_task(call: Call, path: TaskPath, query: DetailQuery) -> SteeredDetail:
    """One task: its record and steering, epic, dependencies both ways, tests and latest events."""
    detail = await call.coord.observe.get_task(call.caller, task_id=path.task_id, events=query.events)
    async with call.coord.store.transaction(write=False) as tx:
        task = await steered_task(tx, path.task_id, project_id=call.caller.project_id)
    return SteeredDetail.model_validate({**detail.model_dump(), "task": task})


@TASKS.patch("/api/tasks/{task_id}")
async def patch_task(call: Call, path: TaskPath, body: TaskPatch) -> SteeredTask:
    """Set the priority, park or unpark, or cancel or reopen a task.

    `status` cannot be combined with `priority` or `parked` (each request is one change, made
    whole or not at all).
    """
    coord, caller, task_id = call.coord, call.caller, path.task_id
    if body.status is not None:
        if body.priority is not None or body.parked is not None:
            raise InvalidInput(
                "status", "cannot be changed together with priority or parked", fix="send two requests"
            )
        if body.status == "cancelled":
            await coord.work.cancel(caller, task_id=task_id, reason=body.reason)
        else:
            await coord.work.reopen(caller, task_id=task_id, reason=body.reason)
        return await _steered(call, task_id)
    return await coord.steering.steer(caller, task_id=task_id, priority=body.priority, parked=body.parked)


@TASKS.post("/api/tasks/{task_id}/assign")
async def assign_task(call: Call, path: TaskPath, body: AssignBody) -> Assignment:
    """Let only one agent claim the task next (null: any agent).

    A lease someone else holds is not taken away: the answer says who holds it.
    """
    return await call.coord.steering.assign(call.caller, task_id=path.task_id, agent_id=body.agent_id)


@TASKS.post("/api/tasks/{task_id}/resolve")
async def resolve_task(call: Call, path: TaskPath, body: ResolveBody) -> SteeredTask:
    """Settle a conflict or rejected task: done (a person merged its branch by hand) or reopen it."""
    if body.action == "done":
        await call.coord.work.resolve(call.caller, task_id=path.task_id, reason=body.reason)
    else:
        await call.coord.work.reopen(
            call.caller,
            task_id=path.task_id,
            reason=body.reason,
            only_from=(TaskStatus.CONFLICT, TaskStatus.REJECTED),
        )
    return await _steered(call, path.task_id)


async def _steered(call: Call, task_id: int) -> SteeredTask:
    async with call.coord.store.transaction(write=False) as tx:
        return await steered_task(tx, task_id, project_id=call.caller.project_id)
