"""`yokeflow plan --spec FILE`: turn a specification into epics, tasks and dependencies through the planner MCP tools.

Two planners, one path: both call the planner tools of a coordinator over HTTP (an in-process
server on a free loopback port unless `--server URL` is given), then build the execution plan.

* `--runner claude` (the default): the planner persona (personas/planner.md) reads any text
  specification in one Claude Agent SDK session and creates the plan itself.
* `--runner sim`: a deterministic planner for the small spec format below; no model involved.

The spec format (markdown)::

    # Shop                                        the project: the first line, once
    A small web shop.                             text under it: the project's description
    ## Database                                   an epic; its tasks follow
    Tables and seed data.                         text under it: the epic's description
    - Create the schema [est 2] [files: schema.sql]
      Tables for users and orders.                indented lines: the task's description
    - Seed data [after: Create the schema]
    ## API
    - Users endpoint [est 3] [files: api/users.py, api/routes.py] [after: Create the schema]

A task is a line starting with `- ` (or `* `) under an epic; its title is the text before its
tags. Tags, at the end of the line: `[est N]` its estimate (a number > 0; default 1),
`[files: a, b]` the files it will probably touch, `[after: title; title]` hard dependencies on
other tasks of the spec by their exact title (in any epic, earlier or later), `[priority N]`
(lower runs first; default 0). The colon after a tag's name is optional. Task titles are unique.
Blank lines are ignored. `--project NAME` names the project instead of the heading (which may then
be left out). Every problem is reported with its line before any tool is called.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import uvicorn

from coordinator.config import Config
from coordinator.errors import InvalidInput, YokeflowError
from coordinator.plan_spec import EpicSpec, ParsedPlan, PlanSpec, PlanSpecError, TaskRef, TaskSpec, resolve
from launcher.files import read_text_file
from launcher.mcp_client import OPERATOR_PATH, AgentClient, ToolCallError
from launcher.runners.claude import (
    TransportFactory,
    check,
    load_persona,
    record_session_cost,
    remaining_budget,
    run_session,
    session_options,
)
from launcher.serve import build_http_app

PLANNER_PATH = "/mcp/planner"
RunnerName = Literal["claude", "sim"]
_TAG = re.compile(r"\s*\[([^\[\]]*)\]\s*$")
_TAG_NAME = re.compile(r"^([a-z]+)\s*:?\s*(.*)$", re.S)
_LOCATION = re.compile(r"^epics\[(\d+)\](?:\.tasks\[(\d+)\])?")
TAGS = ("est", "files", "after", "priority")


# ------------------------------------------------------------------------------------ parsing


class SpecError(InvalidInput):
    """A spec with problems, each named by its line."""

    def __init__(self, source: str, problems: list[tuple[int, str, str]]) -> None:
        (line, problem, fix), rest = problems[0], problems[1:]
        more = "".join(f"; line {n}: {p}" for n, p, _ in rest)
        super().__init__(f"{source} line {line}", problem + more, fix=fix)


@dataclass
class Spec:
    """A checked spec: the project, its plan, and the line of each task."""

    project: str
    description: str
    plan: ParsedPlan
    task_lines: dict[TaskRef, int]


@dataclass
class _TaskDraft:
    line: int
    values: dict[str, Any]
    text: list[str] = field(default_factory=list)


@dataclass
class _EpicDraft:
    name: str
    line: int
    text: list[str] = field(default_factory=list)
    tasks: list[_TaskDraft] = field(default_factory=list)


@dataclass
class _Draft:
    project: str | None = None
    project_line: int = 1
    text: list[str] = field(default_factory=list)
    epics: list[_EpicDraft] = field(default_factory=list)
    task: _TaskDraft | None = None  # the task whose indented description lines are being read
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    def problem(self, line: int, problem: str, fix: str) -> None:
        self.problems.append((line, problem, fix))


def parse_spec(text: str, *, source: str = "spec", project: str | None = None) -> Spec:
    """Read and check a spec in the format of this module's docstring; SpecError names every problem's line.

    `project` replaces the name of the `# Project` heading (which may then be left out).
    """
    draft = _Draft()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            _read_line(draft, number, line.rstrip())
    name = project or draft.project
    if not name:
        draft.problem(1, "the spec names no project", "start it with `# Project name` (or pass --project)")
    if not draft.epics:
        draft.problem(draft.project_line, "the spec has no epics", "add `## Epic name` with `- Task` lines")
    first_line: dict[str, int] = {}
    for epic in draft.epics:
        if not epic.tasks:
            draft.problem(epic.line, f"epic {epic.name!r} has no tasks", "add `- Task title` lines under it")
        for task in epic.tasks:
            first = first_line.setdefault(task.values["title"], task.line)
            if first != task.line:
                draft.problem(
                    task.line,
                    f"the task title {task.values['title']!r} is used on line {first} too",
                    "give every task a title of its own ([after: …] names tasks by title)",
                )
    resolved = _resolve(draft) if draft.epics else None  # dependencies are checked alongside
    if draft.problems or resolved is None or name is None:
        raise SpecError(source, sorted(draft.problems))
    lines = {
        TaskRef(epic=e, task=t): task.line
        for e, epic in enumerate(draft.epics)
        for t, task in enumerate(epic.tasks)
    }
    return Spec(name, "\n".join(draft.text), resolved, lines)


def _resolve(draft: _Draft) -> ParsedPlan | None:
    """The draft's dependencies resolved by title and checked for cycles; None (and problems) when they fail."""
    plan = PlanSpec(
        epics=[
            EpicSpec(
                name=epic.name,
                description="\n".join(epic.text),
                tasks=[TaskSpec(**task.values, description="\n".join(task.text)) for task in epic.tasks],
            )
            for epic in draft.epics
        ],
    )
    try:
        return resolve(plan)
    except PlanSpecError as exc:
        for p in exc.problems:
            draft.problem(_line_of(draft, p.location), p.problem, _fix(p.problem, p.fix))
        return None


def _read_line(draft: _Draft, number: int, line: str) -> None:
    """Take one non-blank line into the draft."""
    if line.startswith("#"):
        draft.task = None
        level = len(line) - len(line.lstrip("#"))
        heading = line[level:].strip()
        if level > 2 or not heading:
            draft.problem(number, f"{line!r} is not a heading of this format", "use `# Project` or `## Epic`")
        elif level == 2:
            draft.epics.append(_EpicDraft(heading, number))
        elif draft.project is not None or draft.epics:
            draft.problem(number, "a second `# ` heading", "name the project once, in the first heading")
        else:
            draft.project, draft.project_line = heading, number
    elif line.startswith(("- ", "* ")):
        _read_task(draft, number, line[2:])
    elif draft.task is not None and line[0].isspace():
        draft.task.text.append(line.strip())
    elif draft.epics:
        draft.task = None
        draft.epics[-1].text.append(line.strip())
    elif draft.project is not None:
        draft.text.append(line.strip())
    else:
        draft.problem(number, "text before the `# Project` heading", "start the spec with `# Project name`")


def _read_task(draft: _Draft, number: int, line: str) -> None:
    """A `- Title [tag …]` line: the title and its tags."""
    draft.task = None
    if not draft.epics:
        draft.problem(number, "a task before any epic", "add `## Epic name` above it")
        return
    tags: dict[str, list[str]] = {}
    while match := _TAG.search(line):
        line = line[: match.start()]
        named = _TAG_NAME.match(match.group(1).strip())
        if named is None or named.group(1) not in TAGS:
            draft.problem(
                number, f"unknown tag [{match.group(1)}]", f"use {', '.join(f'[{t} …]' for t in TAGS)}"
            )
        else:
            tags.setdefault(named.group(1), []).insert(0, named.group(2).strip())
    title = line.strip()
    if not title:
        draft.problem(number, "a task without a title", "write the title after `- `")
        return
    values: dict[str, Any] = {
        "title": title,
        "predicted_files": [f.strip() for v in tags.get("files", []) for f in v.split(",") if f.strip()],
        "depends_on": [t.strip() for v in tags.get("after", []) for t in v.split(";") if t.strip()],
    }
    for tag, key, convert in (("est", "estimate", float), ("priority", "priority", int)):
        for value in tags.get(tag, [])[-1:]:
            number_value = _number(value, convert)
            if number_value is None or (tag == "est" and number_value <= 0):
                kind = "a number greater than 0" if tag == "est" else "a whole number"
                draft.problem(number, f"[{tag} {value}] is not {kind}", f"e.g. [{tag} 2]")
            else:
                values[key] = number_value
    draft.task = _TaskDraft(number, values)
    draft.epics[-1].tasks.append(draft.task)


def _number(text: str, convert: Callable[[str], float]) -> float | None:
    try:
        value = convert(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _fix(problem: str, fix: str | None) -> str:
    """The fix of a plan_spec problem in this format's terms (it names tasks by title only)."""
    if problem.startswith("no task in this plan"):
        return "name a task of the spec by its exact title in [after: …]"
    return fix or ""


def _line_of(draft: _Draft, location: str) -> int:
    """The spec line of a plan_spec location such as `epics[1].tasks[0].depends_on[2]`."""
    match = _LOCATION.match(location)
    if match is None:
        return draft.project_line
    epic = draft.epics[int(match.group(1))]
    return epic.line if match.group(2) is None else epic.tasks[int(match.group(2))].line


# ----------------------------------------------------------------------------------- planning


class PlanningFailed(YokeflowError):
    """A tool call failed part-way; the message says what had been created by then."""


@dataclass
class Planned:
    """What planning produced: the project, its epics and tasks, and the execution plan built from them."""

    project: str
    epics: int
    tasks: int
    plan: dict[str, Any]

    def summary(self) -> str:
        plan, makespan = self.plan, self.plan["makespan"]
        return (
            f"planned project {self.project!r}: {self.epics} epics, {self.tasks} tasks, "
            f"{len(plan['batches'])} batches, {len(plan['conflicts'])} file conflicts; critical path "
            f"{plan['critical_path']['length']:g}; with {makespan['agents']} agents about {makespan['estimate']:g} "
            f"(serial {makespan['serial']:g}, lower bound {makespan['lower_bound']:g})"
        )


@dataclass
class _Progress:
    project: str | None = None
    epics: int = 0
    tasks: int = 0
    dependencies: int = 0

    def failed(self, exc: ToolCallError) -> PlanningFailed:
        made = (
            f"project {self.project!r} with {self.epics} epics, {self.tasks} tasks and "
            f"{self.dependencies} dependencies"
            if self.project
            else "nothing"
        )
        return PlanningFailed(
            f"planning stopped at {exc.message}; created so far: {made}",
            fix=(f"{exc.fix}; then " if exc.fix else "")
            + "plan again into a new project with --project NAME"
            + (f" (or cancel the tasks of {self.project!r})" if self.project else ""),
        )


async def apply_spec(client: AgentClient, spec: Spec, *, spec_text: str = "") -> Planned:
    """Create `spec`'s project, epics, tasks and dependencies through the planner tools, then build the plan."""
    progress = _Progress()
    keys = {ref: f"{ref.epic + 1}.{ref.task + 1}" for ref in spec.task_lines}
    ids: dict[TaskRef, int] = {}
    later = []  # dependencies on tasks of later epics: added once those exist
    into: dict[TaskRef, list[TaskRef]] = {}
    for edge in spec.plan.edges:
        assert isinstance(edge.before, TaskRef)  # the spec format names tasks by title only
        if edge.before.epic > edge.after.epic:
            later.append(edge)
        else:
            into.setdefault(edge.after, []).append(edge.before)
    name = spec.project
    try:
        await client.call("create_project", name=name, description=spec.description, spec=spec_text)
        progress.project = name
        for e, epic in enumerate(spec.plan.spec.epics):
            made = await client.call(
                "create_epic", name=epic.name, description=epic.description, project=name
            )
            progress.epics += 1
            refs = [TaskRef(epic=e, task=t) for t in range(len(epic.tasks))]
            items = [
                {
                    "key": keys[ref],
                    "title": task.title,
                    "description": task.description,
                    "estimate": task.estimate,
                    "priority": task.priority,
                    "predicted_files": task.predicted_files,
                    "depends_on": [keys[before] for before in into.get(ref, [])],
                }
                for ref, task in zip(refs, epic.tasks, strict=True)
            ]
            expanded = await client.call("expand_epic", epic_id=made["id"], tasks=items, project=name)
            ids.update({ref: expanded["keys"][keys[ref]] for ref in refs})
            progress.tasks += len(items)
            progress.dependencies += sum(len(into.get(ref, [])) for ref in refs)
        for edge in later:
            assert isinstance(edge.before, TaskRef)
            await client.call(
                "add_dependency", task_id=ids[edge.after], depends_on=ids[edge.before], kind=edge.kind
            )
            progress.dependencies += 1
        plan = await client.call("build_execution_plan", project=name)
    except ToolCallError as exc:
        raise progress.failed(exc) from exc
    return Planned(name, progress.epics, progress.tasks, plan)


# --------------------------------------------------------------------------------- the server


@asynccontextmanager
async def serving(database_url: str, config: Config | None = None) -> AsyncIterator[str]:
    """The coordinator's HTTP app on a free loopback port, in this event loop, for the block; its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_http_app(database_url, config)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it stopped
                raise YokeflowError(
                    "the in-process coordinator server stopped while starting",
                    fix="check the database URL, or pass --server URL of a running `yokeflow serve --http`",
                )
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


# ----------------------------------------------------------------------------- the two planners


def planning_prompt(project: str, spec_text: str) -> str:
    """The first message of the planner's session."""
    return (
        f"Plan the project {project!r} from the specification below. The project exists and your "
        "token belongs to it. Create its epics, tasks and dependencies with the planner tools; the "
        "execution plan is built when you finish.\n\n# Specification\n\n" + spec_text
    )


async def plan_with_claude(
    server_url: str,
    *,
    project: str,
    spec_text: str,
    cwd: Path | None = None,
    transport: TransportFactory | None = None,
) -> Planned:
    """Create the project, then let the planner persona plan it in one SDK session; record its cost and build the plan."""
    persona, system_prompt = load_persona("planner")
    progress = _Progress()
    async with AgentClient(server_url, None, profile_path=OPERATOR_PATH) as operator:
        try:
            await operator.call("create_project", name=project, spec=spec_text)
            progress.project = project
            registered = await operator.call(
                "register_agent", persona="planner", role="planner", name="planner", project=project
            )
        except ToolCallError as exc:
            raise progress.failed(exc) from exc
    token = registered["token"]
    options = session_options(
        persona=persona,
        system_prompt=system_prompt,
        server_url=server_url,
        token=token,
        cwd=cwd,
        model=persona.model,
        max_budget_usd=await remaining_budget(server_url, token),
    )
    outcome = await run_session(planning_prompt(project, spec_text), options, transport)
    async with AgentClient(
        server_url, token, profile_path=OPERATOR_PATH
    ) as planner:  # all tools: record_cost too
        if outcome.result is not None:
            await record_session_cost(
                planner, outcome.result, model=persona.model, task_id=None, operation="planning"
            )
        status = await planner.call("project_status")
        made = f"project {project!r} has {len(status['epics'])} epics and {status['total_tasks']} tasks"
        if outcome.error is not None or status["total_tasks"] == 0:
            raise PlanningFailed(
                f"{outcome.error or 'the planner session created no tasks'}; {made}",
                fix=f"plan again into a new project with --project NAME (or cancel the tasks of {project!r})",
            )
        plan = await planner.call("build_execution_plan")
    return Planned(project, len(status["epics"]), status["total_tasks"], plan)


def project_name(spec_text: str, path: Path) -> str:
    """The project a free-text spec names in its first `# ` heading, else the file's name without suffix."""
    heading = next((line[2:].strip() for line in spec_text.splitlines() if line.startswith("# ")), "")
    return heading or path.stem


async def plan_spec_file(
    path: Path,
    *,
    runner: RunnerName,
    database_url: str,
    config: Config | None = None,
    project: str | None = None,
    server_url: str | None = None,
    cwd: Path | None = None,
    transport: TransportFactory | None = None,
) -> Planned:
    """`yokeflow plan --spec`: check the spec (sim) or the Claude setup (claude) first, then plan over HTTP."""
    text = await read_text_file(path, "a spec text file")
    spec = parse_spec(text, source=path.name, project=project) if runner == "sim" else None
    if runner == "claude" and transport is None:
        check()
    async with serving(database_url, config) if server_url is None else nullcontext(server_url) as base:
        if spec is None:
            return await plan_with_claude(
                base,
                project=project or project_name(text, path),
                spec_text=text,
                cwd=cwd,
                transport=transport,
            )
        async with AgentClient(base, None, profile_path=PLANNER_PATH) as client:
            return await apply_spec(client, spec, spec_text=text)


# ------------------------------------------------------------------------------- command line


def add_spec_options(plan: argparse.ArgumentParser) -> None:
    """Give `yokeflow plan` its `--spec FILE` form (the handler when no action is named)."""
    plan.add_argument("--spec", metavar="FILE", help="plan a project from this specification (see --runner)")
    plan.add_argument(
        "--runner",
        choices=["claude", "sim"],
        default="claude",
        help="claude (default): the planner persona reads any text spec in a Claude session; "
        "sim: a deterministic planner for the small markdown spec format (# Project, ## Epic, - Task [est N] "
        "[files: …] [after: …] [priority N])",
    )
    plan.add_argument(
        "--server", metavar="URL", help="a running `yokeflow serve --http` (default: one in this process)"
    )
    plan.add_argument(
        "--project", dest="spec_project", metavar="NAME", help="the new project's name (default: the spec's)"
    )
    plan.set_defaults(handler=cmd_plan_spec)


async def cmd_plan_spec(args: argparse.Namespace) -> int:
    from launcher.cli import _config_and_url

    if args.spec is None:
        raise InvalidInput(
            "yokeflow plan",
            "needs --spec FILE or an action",
            fix="run `yokeflow plan --spec app_spec.txt`, or `yokeflow plan import|show|build|critical-path`",
        )
    config, url = _config_and_url(args)
    planned = await plan_spec_file(
        Path(args.spec),
        runner=args.runner,
        database_url=url,
        config=config,
        project=args.spec_project,
        server_url=args.server,
        cwd=Path(args.root),
    )
    print(planned.summary())
    return 0
