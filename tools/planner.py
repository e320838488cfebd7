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


def new_task(item: TaskInput, *, epic_id: int | None, depends_on: list[int], field: str) -> NewTask:
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
    spec = new_task(item, epic_id=epic_id, depends_on=depends_on, field="task")
    try:
        (task,) = await rt.coord.planning.create_tasks(caller, [spec], project=project)
    except YokeflowError as exc:
        if not exc.message.startswith("task."):
            raise
        # The service names the fields of its one task "task.persona"; this tool's argument is "persona".
        raise _in_argument_terms(exc, exc.message.removeprefix("task.")) from exc
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
    """Create `items` (with their dependencies by id or key) and return each with its dependency ids.

    Everything that can be checked is checked before anything is written. Tasks that depend
    only on existing tasks are created in one transaction. Tasks depending on other tasks of
    the same call are created level by level (each task together with all of its edges, so no
    task is ever claimable before its dependencies are in place).
    """
    keys = _check_keys(items)
    levels = _levels(items, keys)
    wanted_keys = {r for item in items for r in item.depends_on if isinstance(r, str) and r not in keys}
    wanted_ids = {r for item in items for r in item.depends_on if isinstance(r, int)}
    wanted_ids |= {int(k) for k in wanted_keys if k.isdigit()}
    _, known_keys, known_ids = await rt.observe.task_refs(
        caller, project=project, keys=sorted(set(keys) | wanted_keys), ids=sorted(wanted_ids)
    )
    for key, index in keys.items():
        if key in known_keys:
            raise InvalidInput(
                f"tasks[{index}].key",
                f"{key!r} is already the key of task {known_keys[key]}",
                fix="choose another key (or depend on that task by this key instead)",
            )
    ids: dict[str, int] = dict.fromkeys(keys, 0)  # placeholders until created
    created: dict[int, Task] = {}

    def depends_on(i: int) -> list[int]:
        return [
            _resolve(ref, i, j, keys, ids, known_keys, known_ids) for j, ref in enumerate(items[i].depends_on)
        ]

    for i in range(len(items)):  # every title and reference checked before anything is written
        new_task(items[i], epic_id=epic_id, depends_on=depends_on(i), field=f"tasks[{i}]")
    if len(levels) > 1:
        await _check_personas(rt, items)
    for level in levels:
        specs = [
            new_task(items[i], epic_id=epic_id, depends_on=depends_on(i), field=f"tasks[{i}]") for i in level
        ]
        try:
            made = await rt.coord.planning.create_tasks(caller, specs, project=project)
        except YokeflowError as exc:
            if len(levels) > 1:
                raise _partial_failure(exc, level, created) from exc
            if "local_key:" not in exc.message:
                raise
            raise _in_argument_terms(exc, exc.message) from exc
        for i, task in zip(level, made, strict=True):
            created[i] = task
            if task.local_key is not None:
                ids[task.local_key] = task.id
    return [(created[i], depends_on(i)) for i in range(len(items))]


async def _check_personas(rt: Runtime, items: Sequence[TaskInput]) -> None:
    names = {p.name for p in await rt.coord.agents.personas()}
    for index, item in enumerate(items):
        if item.persona is not None and item.persona not in names:
            raise InvalidInput(
                f"tasks[{index}].persona",
                f"persona {item.persona!r} does not exist",
                fix=f"use one of: {', '.join(sorted(names))}",
            )


def _check_keys(items: Sequence[TaskInput]) -> dict[str, int]:
    keys: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.key is None:
            continue
        if item.key in keys:
            raise InvalidInput(
                f"tasks[{index}].key",
                f"{item.key!r} is also the key of tasks[{keys[item.key]}]",
                fix="give each task of the call its own key",
            )
        keys[item.key] = index
    return keys


def _levels(items: Sequence[TaskInput], keys: dict[str, int]) -> list[list[int]]:
    """Indices grouped so that each task's in-call dependencies lie in earlier groups."""
    needs = {
        i: {keys[ref] for ref in item.depends_on if isinstance(ref, str) and ref in keys}
        for i, item in enumerate(items)
    }
    for i, before in needs.items():
        if i in before:
            raise InvalidInput(
                f"tasks[{i}].depends_on", f"the task depends on its own key {items[i].key!r}", fix="remove it"
            )
    levels: list[list[int]] = []
    placed: set[int] = set()
    while len(placed) < len(items):
        level = [i for i in range(len(items)) if i not in placed and needs[i] <= placed]
        if not level:
            stuck = [i for i in range(len(items)) if i not in placed]
            names = ", ".join(f"tasks[{i}] ({items[i].key!r})" for i in stuck)
            raise InvalidInput(
                f"tasks[{stuck[0]}].depends_on",
                f"these tasks depend on each other in a cycle: {names}",
                fix="remove one of the dependencies between them",
            )
        levels.append(level)
        placed.update(level)
    return levels


def _resolve(
    ref: int | str,
    index: int,
    position: int,
    keys: dict[str, int],
    ids: dict[str, int],
    known_keys: dict[str, int],
    known_ids: set[int],
) -> int:
    """The task id a depends_on entry names: an id, a key of this call, or a key of the project."""
    if isinstance(ref, str) and ref in keys:
        return ids[ref]
    if isinstance(ref, str) and ref in known_keys:
        return known_keys[ref]
    task_id = int(ref) if isinstance(ref, int) or ref.isdigit() else None
    if task_id is not None and task_id in known_ids:
        return task_id
    what = (
        f"task {ref}" if task_id is not None else f"{ref!r} is neither a key of this call nor a task key that"
    )
    raise InvalidInput(
        f"tasks[{index}].depends_on[{position}]",
        f"{what} does not exist in this project" if task_id is not None else f"{what} exists in this project",
        fix="name an existing task id, or the key of a task in this call or of the project (list_tasks)",
    )


def _partial_failure(exc: YokeflowError, level: list[int], created: dict[int, Task]) -> YokeflowError:
    """The error of a later level, with its task numbers as the caller gave them and what exists already."""

    def renumber(text: str) -> str:
        text = re.sub(r"\btasks\[(\d+)\]", lambda m: f"tasks[{level[int(m.group(1))]}]", text)
        return re.sub(r"^task(?=[.:])", f"tasks[{level[0]}]", text) if len(level) == 1 else text

    if not created:
        return _in_argument_terms(exc, renumber(exc.message))
    made = ", ".join(f"tasks[{i}] as task {t.id}" for i, t in sorted(created.items()))
    return YokeflowError(
        _in_argument_terms(exc, renumber(exc.message)).message + f" (created already: {made})",
        fix=(exc.fix + "; then " if exc.fix else "")
        + "create the remaining tasks, depending on the created ones by id, or cancel_task those",
    )


def _in_argument_terms(exc: YokeflowError, message: str) -> YokeflowError:
    """The error with the service's field names as the tools' arguments call them (local_key is key)."""
    return YokeflowError(re.sub(r"(^|\.)local_key:", r"\1key:", message), fix=exc.fix)
