"""Tools of YokeFlow's TypeScript task manager, with their names and arguments.

Prompts written for that server keep working. The tools it shares with the native set
(`list_tasks`, `get_task`, `create_epic`, `create_task`, `create_test`, `expand_epic`,
`update_test_result`, `get_dependency_graph`, `get_parallel_batches`, `validate_dependencies`)
are the native tools themselves, which accept both argument shapes.

The old server had no leases. Here `claim_next_task(worker_id)` and `start_task` lease the task
to an agent named after the worker (registered on first use, marked with the capability
`yokeflow-compat`) for COMPAT_TTL_SECONDS, and `update_task_status(done=true)` completes that
lease — or, on a task nobody holds, leases and completes it in one go, as the operator asked.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from coordinator.context import Caller, agent_caller
from coordinator.errors import PermissionDenied, StateConflict
from coordinator.observe import OPEN_STATUSES, EpicDetail, ProjectStatus, TaskDetail
from coordinator.records import Project, Task, TaskStatus
from coordinator.sessions import SessionList
from coordinator.work import MAX_WAIT_SECONDS, Claimed
from tools.arguments import Id, Limit, Name, ProjectRef
from tools.auth import session
from tools.observer import TOOLS as OBSERVER
from tools.planner import TOOLS as PLANNER
from tools.plans import TOOLS as PLANS
from tools.registry import ToolSet
from tools.results import (
    ClaimedTask,
    ClaimResult,
    EpicList,
    NextTask,
    TaskStatusChange,
    TestList,
)
from tools.runtime import Runtime, ToolContext
from tools.worker import TOOLS as WORKER

TOOLS = ToolSet()

COMPAT_CAPABILITY = "yokeflow-compat"
COMPAT_TTL_SECONDS = 3600.0
"""Lease length for claims made through these tools: YokeFlow agents never heartbeat."""
DEFAULT_WORKER = "yokeflow"
DEFAULT_PERSONA = "implementer"

TaskIdArg = Annotated[Id, Field(description="The ID of the task.")]


@TOOLS.tool("Task status", read_only=True)
async def task_status(ctx: ToolContext, project: ProjectRef = None) -> ProjectStatus:
    """Overall project status: epics, tasks and tests progress (the same as project_status)."""
    rt, caller = await session(ctx)
    return await rt.observe.project_status(caller, project=project)


@TOOLS.tool("Get the next task", read_only=True)
async def get_next_task(ctx: ToolContext, project: ProjectRef = None) -> NextTask:
    """The task a claim would take next: ready (its dependencies done), most urgent first. Claims nothing."""
    rt, caller = await session(ctx)
    persona = caller.agent.persona if caller.agent is not None and caller.role == "worker" else None
    task = await rt.observe.next_ready_task(caller, project=project, persona=persona)
    if task is None:
        status = await rt.observe.project_status(caller, project=project)
        return NextTask(task=None, message=_why_nothing_is_ready(status))
    detail = await rt.observe.get_task(caller, task_id=task.id)
    return NextTask(
        task=detail,
        message=f"task {task.id} is ready; lease it with start_task(task_id={task.id}) or claim_next_task",
    )


@TOOLS.tool("Claim the next task")
async def claim_next_task(
    ctx: ToolContext,
    worker_id: Annotated[Name, Field(description='Unique name of the worker claiming, e.g. "worker-1".')],
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            allow_inf_nan=False,
            description="Wait up to this long for a ready task.",
        ),
    ] = 0.0,
    project: ProjectRef = None,
) -> ClaimResult:
    """Atomically lease the next ready task to this worker (status "no_task" when there is none)."""
    rt, caller = await session(ctx)
    worker = await acting_worker(rt, caller, name=worker_id, persona=DEFAULT_PERSONA, project=project)
    outcome = await rt.coord.work.claim(worker, wait_seconds=wait_seconds, ttl_seconds=COMPAT_TTL_SECONDS)
    return ClaimResult.of(outcome, _agent_id(worker))


@TOOLS.tool("Start a task", idempotent=True)
async def start_task(
    ctx: ToolContext,
    task_id: Annotated[Id, Field(description="The ID of the task to start.")],
    worker_id: Annotated[
        Name | None, Field(description="The worker starting it (default: yokeflow).")
    ] = None,
) -> ClaimResult:
    """Mark a ready task as started: lease it to the worker. Starting a task you hold already is a no-op."""
    rt, caller = await session(ctx)
    detail = await rt.observe.get_task(caller, task_id=task_id, events=0)
    worker = await acting_worker(
        rt,
        caller,
        name=worker_id or DEFAULT_WORKER,
        persona=detail.task.persona or DEFAULT_PERSONA,
        project=detail.task.project_id,
    )
    if _live_lease(rt, detail.task) and detail.task.lease_owner == _agent_id(worker):
        held = await rt.coord.work.heartbeat(
            worker, task_id=task_id, lease_id=detail.task.lease_token or "", ttl_seconds=COMPAT_TTL_SECONDS
        )
        refreshed = await rt.observe.get_task(caller, task_id=task_id, events=0)
        return ClaimResult(
            status="claimed",
            agent_id=_agent_id(worker),
            task=ClaimedTask.model_validate(refreshed.task),
            lease=held,
            message="already started",
        )
    return ClaimResult.of(await lease_task(rt, worker, detail), _agent_id(worker))


@TOOLS.tool("Mark a task done or not done", destructive=True, idempotent=True)
async def update_task_status(
    ctx: ToolContext,
    task_id: TaskIdArg,
    done: Annotated[bool, Field(description="Whether the task is completed.")],
) -> TaskStatusChange:
    """done=true completes the task (leasing it first if nobody holds it); done=false reopens it."""
    rt, caller = await session(ctx)
    detail = await rt.observe.get_task(caller, task_id=task_id, events=0)
    return await (_mark_done(rt, caller, detail) if done else _mark_not_done(rt, caller, detail.task))


@TOOLS.tool("List epics", read_only=True)
async def list_epics(
    ctx: ToolContext,
    needs_expansion: Annotated[bool, Field(description="If true, only epics with no tasks yet.")] = False,
    project: ProjectRef = None,
) -> EpicList:
    """The project's epics with their progress."""
    rt, caller = await session(ctx)
    return EpicList(
        epics=await rt.observe.list_epics(caller, project=project, needs_expansion=needs_expansion)
    )


@TOOLS.tool("Get an epic", read_only=True)
async def get_epic(
    ctx: ToolContext, epic_id: Annotated[Id, Field(description="The ID of the epic.")]
) -> EpicDetail:
    """An epic with its progress, the epics it depends on, and its tasks."""
    rt, caller = await session(ctx)
    return await rt.observe.get_epic(caller, epic_id=epic_id)


@TOOLS.tool("List tests", read_only=True)
async def list_tests(
    ctx: ToolContext,
    task_id: Annotated[
        Id | None, Field(description="The task whose tests to list (default: all tasks).")
    ] = None,
    project: ProjectRef = None,
) -> TestList:
    """The tests of a task (or of the whole project) with their results."""
    rt, caller = await session(ctx)
    return TestList(tests=await rt.observe.list_tests(caller, task_id=task_id, project=project))


@TOOLS.tool("Mark the project complete", idempotent=True)
async def mark_project_complete(ctx: ToolContext, project: ProjectRef = None) -> Project:
    """Mark the project complete. Refused while a task is open or a test fails."""
    rt, caller = await session(ctx)
    status = await rt.observe.project_status(caller, project=project)
    if status.project.status == "complete":
        return status.project
    open_tasks = sum(status.tasks[s.value] for s in OPEN_STATUSES)
    if open_tasks or status.tests.failing:
        raise StateConflict(
            f"project {status.project.name!r} still has {open_tasks} open tasks and "
            f"{status.tests.failing} failing tests",
            fix="finish, cancel or fix them first (task_status shows them)",
        )
    return await rt.coord.planning.set_project_status(caller, project=status.project.id, status="complete")


@TOOLS.tool("Session history", read_only=True)
async def get_session_history(
    ctx: ToolContext,
    limit: Annotated[Limit, Field(description="Most sessions to return.")] = 10,
    project: ProjectRef = None,
) -> SessionList:
    """The latest agent sessions of the project, newest first: one per lease, from claim to its end."""
    rt, caller = await session(ctx)
    return SessionList(sessions=await rt.observe.session_history(caller, project=project, limit=limit))


SHARED = [
    OBSERVER["list_tasks"],
    OBSERVER["get_task"],
    PLANNER["create_epic"],
    PLANNER["create_task"],
    PLANNER["create_test"],
    PLANNER["expand_epic"],
    WORKER["update_test_result"],
    *PLANS.pick("get_dependency_graph", "get_parallel_batches", "validate_dependencies"),
]
"""Tools of the YokeFlow set that are the native tools themselves."""


# ---------------------------------------------------------------------------------- helpers


async def acting_worker(
    rt: Runtime, caller: Caller, *, name: str, persona: str, project: int | str | None
) -> Caller:
    """The worker a YokeFlow call acts as.

    An agent token acts as its own agent. The operator (or a planner) acts through an agent
    named `name` with `persona`, registered on first use and reused afterwards.
    """
    if caller.agent is not None and caller.role != "planner":
        return caller
    found = await rt.observe.find_agent(
        caller, name=name, persona=persona, capability=COMPAT_CAPABILITY, project=project
    )
    if found is None:
        registered = await rt.coord.agents.register(
            caller, persona=persona, project=project, name=name, capabilities=[COMPAT_CAPABILITY]
        )
        found = registered.agent
    return agent_caller(found)


async def lease_task(rt: Runtime, worker: Caller, detail: TaskDetail) -> Claimed:
    """Lease exactly this task to `worker`, or explain why it cannot be started now.

    The coordinator leases "the best ready task", so this works for the task a claim would
    pick next (the one get_next_task names); any other ready task is refused with that reason.
    """
    task = detail.task
    if _live_lease(rt, task):
        raise StateConflict(
            f"task {task.id} is leased by agent {task.lease_owner} until {task.lease_expires_at:.0f}",
            fix="wait for that agent to finish, or pick another task with get_next_task",
        )
    if task.status == TaskStatus.MERGING:
        raise StateConflict(
            f"task {task.id} is being merged", fix="wait: it becomes done when its merge lands"
        )
    if task.status not in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS):
        raise StateConflict(
            f"task {task.id} is {task.status.value}",
            fix="reopen it first with update_task_status(done=false) or reopen_task",
        )
    if detail.blocked_by:
        raise StateConflict(
            f"task {task.id} waits on unfinished dependencies {detail.blocked_by}",
            fix="finish those first; get_next_task names a task that is ready",
        )
    if task.available_at > rt.coord.work.now():
        raise StateConflict(
            f"task {task.id} waits {task.available_at - rt.coord.work.now():.0f} more seconds before its retry",
            fix="start it later, or start the task get_next_task names",
        )
    outcome = await rt.coord.work.claim(worker, ttl_seconds=COMPAT_TTL_SECONDS, task_id=task.id)
    if isinstance(outcome, Claimed):
        return outcome
    raise StateConflict(
        f"task {task.id} cannot be started now: it was taken by another agent a moment ago, or it shares "
        f"predicted files with a task being worked on ({outcome.message})",
        fix="call get_next_task for a task that is ready",
    )


async def _mark_done(rt: Runtime, caller: Caller, detail: TaskDetail) -> TaskStatusChange:
    task = detail.task
    if task.status == TaskStatus.DONE:
        return TaskStatusChange(task=task, changed=False, message=f"task {task.id} was done already")
    if _live_lease(rt, task):
        worker = await _lease_holder(rt, caller, task)
        lease_id = task.lease_token or ""
    else:
        worker = await acting_worker(
            rt, caller, name=DEFAULT_WORKER, persona=task.persona or DEFAULT_PERSONA, project=task.project_id
        )
        lease_id = (await lease_task(rt, worker, detail)).lease.lease_id
    done = await rt.coord.work.complete(
        worker, task_id=task.id, lease_id=lease_id, summary="marked done with update_task_status"
    )
    return TaskStatusChange(task=done, changed=True, message=f"task {task.id} is done")


async def _mark_not_done(rt: Runtime, caller: Caller, task: Task) -> TaskStatusChange:
    if task.status == TaskStatus.PENDING:
        return TaskStatusChange(task=task, changed=False, message=f"task {task.id} was not done already")
    if caller.agent is not None and _live_lease(rt, task) and task.lease_owner == caller.agent.id:
        released = await rt.coord.work.release(caller, task_id=task.id, lease_id=task.lease_token or "")
        return TaskStatusChange(task=released, changed=True, message=f"task {task.id} was handed back")
    reopened = await rt.coord.work.reopen(caller, task_id=task.id, reason="update_task_status(done=false)")
    return TaskStatusChange(task=reopened, changed=True, message=f"task {task.id} is pending again")


async def _lease_holder(rt: Runtime, caller: Caller, task: Task) -> Caller:
    """The caller that may complete `task`'s live lease on behalf of `caller`."""
    assert task.lease_owner is not None
    owner = await rt.observe.agent(caller, agent_id=task.lease_owner)
    if caller.agent is not None:
        if caller.agent.id != task.lease_owner:
            raise PermissionDenied(
                f"task {task.id} is leased by agent {task.lease_owner}, not by you",
                fix="only the agent holding the lease can complete it",
            )
        return caller
    if owner is None or COMPAT_CAPABILITY not in owner.capabilities:
        name = f" ({owner.name})" if owner else ""
        raise StateConflict(
            f"task {task.id} is leased by agent {task.lease_owner}{name}, which works on it through claim_task",
            fix="let that agent complete it, or cancel_task / reopen_task it first",
        )
    return agent_caller(owner)


def _live_lease(rt: Runtime, task: Task) -> bool:
    return (
        task.status == TaskStatus.IN_PROGRESS
        and task.lease_expires_at is not None
        and task.lease_expires_at >= rt.coord.work.now()
    )


def _agent_id(worker: Caller) -> int:
    assert worker.agent is not None
    return worker.agent.id


def _why_nothing_is_ready(status: ProjectStatus) -> str:
    counts = status.tasks
    open_tasks = sum(counts[s.value] for s in OPEN_STATUSES)
    if status.total_tasks == 0:
        return "No pending tasks found. Consider expanding epics that need tasks (list_epics needs_expansion=true)."
    if open_tasks == 0:
        return "No pending tasks found: every task is done or cancelled. Call mark_project_complete if all is well."
    if status.running_tasks:
        return (
            f"No task is ready: {counts['pending']} pending tasks wait on {status.running_tasks} running ones "
            "(or on retry backoff)."
        )
    return (
        f"No task is ready: {counts['pending']} pending tasks are blocked by {counts['failed']} failed "
        f"and {counts['conflict'] + counts['rejected']} conflicting tasks; reopen or cancel those."
    )
