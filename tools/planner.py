"""Planner tools: projects, epics, tasks, dependencies and tests.

`create_epic`, `create_task`, `expand_epic` and `create_test` also accept the argument shapes of
YokeFlow's TypeScript task manager (a task's `description` + `action`, no title), so they serve
both tool sets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from coordinator.context import Caller
from coordinator.errors import InvalidInput, YokeflowError
from coordinator.observe import TaskSummary
from coordinator.planning import NewTask
from coordinator.records import DependencyKind, Epic, Project, Task, TaskTest
from tools.arguments import Id, Name, Priority, ProjectRef, ShortText, Text, Title
from tools.auth import session
from tools.registry import ToolSet
from tools.results import DependencyResult, ExpandResult
from tools.runtime import Runtime, ToolContext

TOOLS = ToolSet()

_TITLE_FROM_DESCRIPTION = 120

TaskIdArg = Annotated[Id, Field(description="Id of the task.")]
DependsOnArg = Annotated[Id, Field(description="Id of the task it depends on.")]
KindArg = Annotated[
    DependencyKind, Field(description="hard: blocks until that task is done; soft: only orders the work.")
]
ReasonArg = Annotated[ShortText, Field(description="Why; kept in the audit log.")]


class TaskInput(BaseModel):
    """One task for expand_epic. YokeFlow's shape ({description, action, priority, depends_on}) works too."""

    model_config = ConfigDict(extra="ignore")

    key: Name | None = Field(
        default=None,
        description="Local key, unique in the project. Other tasks of the same call (or later calls) "
        "may name it in depends_on.",
    )
    title: Title | None = Field(
        default=None, description="Short title; defaults to the description's first line."
    )
    description: Text = Field(default="", description="What the task is about.")
    action: Text = Field(default="", description="Detailed implementation instructions.")
    priority: Priority = Field(default=0, description="Lower runs first.")
    persona: Name | None = Field(default=None, description="Only agents of this persona may claim it.")
    domain: Name | None = None
    estimate: float = Field(default=1.0, gt=0, le=1e6, allow_inf_nan=False, description="Relative size.")
    predicted_files: list[ShortText] = Field(default_factory=list, max_length=1000)
    max_attempts: int | None = Field(default=None, ge=1, le=100)
    depends_on: list[Id | Name] = Field(
        default_factory=list,
        max_length=1000,
        description="Tasks it depends on: ids of existing tasks, or keys (of this call or of the project).",
    )
    dependency_type: KindArg = "hard"


def task_title(title: str | None, description: str, field: str) -> str:
    """The title given, or the description's first line (YokeFlow tasks have no title)."""
    if title is not None and title.strip():
        return title.strip()
    first = next((line.strip() for line in description.splitlines() if line.strip()), "")
    if not first:
        raise InvalidInput(
            field, "is missing", fix="give a title, or a description whose first line can serve as one"
        )
    return first if len(first) <= _TITLE_FROM_DESCRIPTION else first[: _TITLE_FROM_DESCRIPTION - 1] + "…"


def new_task(item: TaskInput, *, epic_id: int | None, depends_on: list[int | str], field: str) -> NewTask:
    return NewTask(
        title=task_title(item.title, item.description, f"{field}.title"),
        description=item.description,
        action=item.action,
        epic_id=epic_id,
        priority=item.priority,
        persona=item.persona,
        domain=item.domain,
        estimate=item.estimate,
        predicted_files=item.predicted_files,
        max_attempts=item.max_attempts,
        local_key=item.key,
        depends_on=depends_on,
        dependency_type=item.dependency_type,
    )


# ------------------------------------------------------------------------------------ tools


@TOOLS.tool("Create a project")
async def create_project(
    ctx: ToolContext,
    name: Annotated[Name, Field(description="Unique project name.")],
    description: Annotated[Text, Field(description="What the project is.")] = "",
    spec: Annotated[Text, Field(description="The specification the plan is made from.")] = "",
    repo_path: Annotated[ShortText | None, Field(description="Path of the project's git repository.")] = None,
) -> Project:
    """Create a project. Only the local operator may (an agent token belongs to one project)."""
    rt, caller = await session(ctx)
    return await rt.coord.planning.create_project(
        caller, name=name, description=description, spec=spec, repo_path=repo_path
    )


@TOOLS.tool("Create an epic")
async def create_epic(
    ctx: ToolContext,
    name: Annotated[Name, Field(description="Name of the epic.")],
    description: Annotated[Text, Field(description="What the epic delivers.")] = "",
    priority: Annotated[Priority, Field(description="Lower runs first.")] = 0,
    depends_on: Annotated[
        list[Id],
        Field(max_length=1000, description="Epics whose tasks must all finish before this one's start."),
    ] = [],  # noqa: B006 - the SDK copies defaults per call
    project: ProjectRef = None,
) -> Epic:
    """Create an epic: a group of tasks. Its tasks are added with create_task or expand_epic."""
    rt, caller = await session(ctx)
    return await rt.coord.planning.create_epic(
        caller, name=name, description=description, priority=priority, project=project, depends_on=depends_on
    )


@TOOLS.tool("Create a task")
async def create_task(
    ctx: ToolContext,
    title: Annotated[
        Title | None, Field(description="Short title; defaults to the description's first line.")
    ] = None,
    description: Annotated[
        Text, Field(description="What the task is about (YokeFlow: its brief text).")
    ] = "",
    action: Annotated[Text, Field(description="Detailed implementation instructions.")] = "",
    epic_id: Annotated[Id | None, Field(description="The epic it belongs to.")] = None,
    priority: Annotated[Priority, Field(description="Lower runs first.")] = 0,
    depends_on: Annotated[
        list[Id], Field(max_length=1000, description="Ids of the tasks it depends on.")
    ] = [],  # noqa: B006 - the SDK copies defaults per call
    dependency_type: KindArg = "hard",
    persona: Annotated[Name | None, Field(description="Only agents of this persona may claim it.")] = None,
    domain: Annotated[Name | None, Field(description="Expertise domain, e.g. frontend.")] = None,
    estimate: Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False, description="Relative size.")] = 1.0,
    predicted_files: Annotated[
        list[ShortText], Field(max_length=1000, description="Files it will probably touch.")
    ] = [],  # noqa: B006
    max_attempts: Annotated[int | None, Field(ge=1, le=100, description="Attempts before it fails.")] = None,
    key: Annotated[Name | None, Field(description="Local key, unique in the project.")] = None,
    project: ProjectRef = None,
) -> Task:
    """Create one task (and its dependencies, checked for cycles) in one step."""
    rt, caller = await session(ctx)
    item = TaskInput(
        key=key,
        title=title,
        description=description,
        action=action,
        priority=priority,
        persona=persona,
        domain=domain,
        estimate=estimate,
        predicted_files=predicted_files,
        max_attempts=max_attempts,
        dependency_type=dependency_type,
    )
    spec = new_task(item, epic_id=epic_id, depends_on=list(depends_on), field="task")
    try:
        (task,) = await rt.coord.planning.create_tasks(caller, [spec], project=project)
    except YokeflowError as exc:
        if not exc.message.startswith("tasks[0]."):
            raise
        # The service names the fields of its tasks "tasks[0].persona"; this tool's argument is "persona".
        raise _in_argument_terms(exc, exc.message.removeprefix("tasks[0].")) from exc
    return task


@TOOLS.tool("Expand an epic into tasks")
async def expand_epic(
    ctx: ToolContext,
    epic_id: Annotated[Id, Field(description="The epic the tasks belong to.")],
    tasks: Annotated[
        list[TaskInput], Field(min_length=1, max_length=500, description="The tasks to create.")
    ],
    project: ProjectRef = None,
) -> ExpandResult:
    """Create many tasks of an epic at once. Tasks may depend on each other by their local keys."""
    rt, caller = await session(ctx)
    created = await create_tasks_keyed(rt, caller, tasks, epic_id=epic_id, project=project)
    return ExpandResult(
        epic_id=epic_id,
        tasks=[TaskSummary.of(task, depends_on) for task, depends_on in created],
        keys={t.local_key: t.id for t, _ in created if t.local_key is not None},
    )


@TOOLS.tool("Add a dependency")
async def add_dependency(
    ctx: ToolContext, task_id: TaskIdArg, depends_on: DependsOnArg, kind: KindArg = "hard"
) -> DependencyResult:
    """Make a task depend on another; an edge that would close a cycle is refused, naming the cycle."""
    rt, caller = await session(ctx)
    await rt.coord.planning.add_dependency(caller, task_id=task_id, depends_on=depends_on, kind=kind)
    return await _dependencies(rt, caller, task_id)


@TOOLS.tool("Remove a dependency", destructive=True, idempotent=True)
async def remove_dependency(
    ctx: ToolContext, task_id: TaskIdArg, depends_on: DependsOnArg
) -> DependencyResult:
    """Remove the edge that makes task_id depend on depends_on."""
    rt, caller = await session(ctx)
    await rt.coord.planning.remove_dependency(caller, task_id=task_id, depends_on=depends_on)
    return await _dependencies(rt, caller, task_id)


@TOOLS.tool("Create a test")
async def create_test(
    ctx: ToolContext,
    task_id: Annotated[Id, Field(description="The task the test belongs to.")],
    description: Annotated[Text, Field(min_length=1, description="What the test verifies.")],
    category: Annotated[
        Name, Field(description="functional, style, accessibility, performance, or your own.")
    ] = "functional",
    steps: Annotated[list[ShortText], Field(max_length=200, description="Steps to perform.")] = [],  # noqa: B006
) -> TaskTest:
    """Add a test to a task. A task whose test fails cannot be completed."""
    rt, caller = await session(ctx)
    return await rt.coord.planning.create_test(
        caller, task_id=task_id, description=description, category=category, steps=steps
    )


@TOOLS.tool("Reopen a task", destructive=True)
async def reopen_task(ctx: ToolContext, task_id: TaskIdArg, reason: ReasonArg = "") -> Task:
    """Put a done, failed, cancelled or stuck task back to pending, with fresh attempts."""
    rt, caller = await session(ctx)
    return await rt.coord.work.reopen(caller, task_id=task_id, reason=reason)


@TOOLS.tool("Cancel a task", destructive=True)
async def cancel_task(ctx: ToolContext, task_id: TaskIdArg, reason: ReasonArg = "") -> Task:
    """Drop a task: it will not be worked on, and no longer blocks its dependents."""
    rt, caller = await session(ctx)
    return await rt.coord.work.cancel(caller, task_id=task_id, reason=reason)


# ---------------------------------------------------------------------------------- helpers


async def _dependencies(rt: Runtime, caller: Caller, task_id: int) -> DependencyResult:
    detail = await rt.observe.get_task(caller, task_id=task_id, events=0)
    return DependencyResult(task_id=task_id, dependencies=detail.dependencies)


async def create_tasks_keyed(
    rt: Runtime, caller: Caller, items: Sequence[TaskInput], *, epic_id: int, project: int | str | None
) -> list[tuple[Task, list[int]]]:
    """Create `items` in one transaction (dependencies by id or key) and return each with its dependency ids."""
    specs = [
        new_task(item, epic_id=epic_id, depends_on=list(item.depends_on), field=f"tasks[{i}]")
        for i, item in enumerate(items)
    ]
    try:
        created = await rt.coord.planning.create_tasks(caller, specs, project=project)
    except YokeflowError as exc:
        if "local_key:" not in exc.message:
            raise
        raise _in_argument_terms(exc, exc.message) from exc
    depends_on = await rt.observe.dependency_ids(caller, [t.id for t in created])
    return [(task, depends_on.get(task.id, [])) for task in created]


def _in_argument_terms(exc: YokeflowError, message: str) -> YokeflowError:
    """The error with the service's field names as the tools' arguments call them (local_key is key)."""
    return YokeflowError(re.sub(r"(^|\.)local_key:", r"\1key:", message), fix=exc.fix)
