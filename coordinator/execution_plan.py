"""The execution plan: batches, predicted files and their conflicts, worktrees and a makespan estimate.

The plan is a planning view built from plain task, epic and edge records (no database); agents
still pull ready work dynamically. Manual adjustments (patches) are validated, recorded in the
plan and re-applied whenever it is rebuilt.
"""

from __future__ import annotations

import itertools
import posixpath
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field

from coordinator.config import WorktreeStrategy
from coordinator.errors import InvalidInput, NotFound, YokeflowError
from coordinator.graph import CriticalPath, DependencyGraph, Edge
from coordinator.scheduling import barrier_makespan, lower_bound, pull_makespan

FINISHED_STATUSES = frozenset({"done", "cancelled"})

# fmt: off
_EXTENSIONS = frozenset({
    "py", "pyi", "ts", "tsx", "js", "jsx", "mjs", "cjs", "sql", "md", "rst", "json", "yaml", "yml", "toml",
    "ini", "cfg", "conf", "env", "html", "htm", "css", "scss", "sass", "vue", "svelte", "go", "rs", "java",
    "kt", "rb", "php", "c", "h", "cc", "cpp", "hpp", "cs", "swift", "sh", "ps1", "txt", "csv", "proto",
    "graphql", "lock", "xml",
})
# fmt: on
_FILE = re.compile(
    r"(?<![\w./\\:@-])((?:\.{1,2}/)?(?:\.?[\w@-][\w.@-]*/)*\.?[\w-][\w.-]*\.(?:"
    + "|".join(sorted(_EXTENSIONS))
    + r"))(?![\w/\\-]|\.\w)"
)
_MODULE = re.compile(r"(?<![\w./\\:@-])([a-z_][a-z0-9_]+(?:\.[a-z_][a-z0-9_]+)+)(?![\w/\\(-]|\.\w)")
_NOT_FILES = frozenset(
    {"node.js", "next.js", "nuxt.js", "vue.js", "react.js", "express.js", "three.js", "d3.js", "chart.js"}
)
_NOT_MODULE_ROOTS = frozenset(sys.stdlib_module_names) | {"self", "cls", "this", "www"}
_NOT_MODULE_ENDS = _EXTENSIONS | {"com", "org", "net", "io", "dev"}
_WORKTREE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

_V = TypeVar("_V")
ConflictKind = Literal["same_file", "same_directory", "potential"]


# ---------------------------------------------------------------------- inputs


class TaskInput(BaseModel):
    """The fields of a task the planner reads; builds from a store record or a dict."""

    model_config = ConfigDict(from_attributes=True, extra="ignore")
    id: int
    epic_id: int | None = None
    title: str = ""
    description: str = ""
    priority: int = 0
    estimate: float = 1.0
    predicted_files: list[str] = []
    status: str = "pending"


class EpicInput(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="ignore")
    id: int
    name: str
    description: str = ""


# ---------------------------------------------------------------------- the plan


class PlannedTask(BaseModel):
    id: int
    epic_id: int | None
    title: str
    batch: int
    worktree: str
    priority: int
    estimate: float
    remaining: float
    on_critical_path: bool
    predicted_files: list[str] = Field(
        description="named by the task itself: its own list and its description"
    )
    area_files: list[str] = Field(description="named only by its epic's description")


class PlanBatch(BaseModel):
    number: int
    tasks: list[int]
    duration: float = Field(description="the longest estimate in the batch")


class FileConflict(BaseModel):
    kind: ConflictKind
    tasks: list[int]
    files: list[str]


class Makespan(BaseModel):
    """Time to finish, in estimate units, with `agents` agents."""

    agents: int
    estimate: float = Field(description="agents pull ready tasks, longest remaining path first")
    batch_barrier: float = Field(description="each batch waits for the previous one to finish")
    serial: float = Field(description="one agent: the sum of the estimates")
    lower_bound: float = Field(description="max(longest chain of hard dependencies, total work / agents)")
    critical_path: float


class PlanAdjustments(BaseModel):
    """Manual changes kept with the plan and re-applied on every rebuild."""

    worktrees: dict[int, str] = {}
    sequential: list[Edge] = []
    pins: dict[int, int] = {}


class ExecutionPlan(BaseModel):
    created_at: datetime
    max_concurrency: int
    strategy: WorktreeStrategy = Field(
        default="by_epic", description="how worktrees group each batch (parallel.strategy)"
    )
    batches: list[PlanBatch]
    tasks: list[PlannedTask]
    worktrees: dict[str, list[int]]
    conflicts: list[FileConflict]
    critical_path: CriticalPath
    makespan: Makespan
    finished_tasks: list[int]
    adjustments: PlanAdjustments = PlanAdjustments()
    notes: list[str] = Field(default=[], description="adjustments that no longer apply and were skipped")

    def task(self, task_id: int) -> PlannedTask:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise _unknown_task(task_id)


class PlanPatch(BaseModel):
    """A manual adjustment: None as a worktree or a pin hands the task back to the planner."""

    worktrees: dict[int, str | None] = {}
    sequential: list[tuple[int, int]] = Field(default=[], description="(first, then): then waits for first")
    pins: dict[int, int | None] = Field(default={}, description="task id -> batch number (1 = first)")


class PatchResult(BaseModel):
    plan: ExecutionPlan
    edges_to_add: list[Edge] = Field(description="dependencies the patch added; store them too")


# ---------------------------------------------------------------------- predicted files


def predict_files(text: str) -> list[str]:
    """File paths (`src/api/users.py`) and dotted module names (`pkg.module` -> `pkg/module.py`) in text."""
    found: dict[str, None] = {}
    for match in _FILE.findall(text):
        if match.lower() not in _NOT_FILES:
            found[posixpath.normpath(match)] = None
    for match in _MODULE.findall(text):
        parts = match.split(".")
        if (
            parts[0] not in _NOT_MODULE_ROOTS
            and parts[-1] not in _NOT_MODULE_ENDS
            and _EXTENSIONS.isdisjoint(parts)
        ):
            found["/".join(parts) + ".py"] = None
    return list(found)


def find_conflicts(own: Mapping[int, set[str]], area: Mapping[int, set[str]]) -> list[FileConflict]:
    """Tasks predicted to touch one file (same_file), one folder (same_directory), or an epic-wide
    file only hinted at by an epic's description (potential)."""
    found: dict[tuple[ConflictKind, tuple[int, ...]], set[str]] = defaultdict(set)
    by_file, by_dir, by_area = defaultdict(set), defaultdict(set), defaultdict(set)
    for task, files in own.items():
        for path in files:
            by_file[path].add(task)
            if posixpath.dirname(path):
                by_dir[posixpath.dirname(path)].add(task)
    for task, files in area.items():
        for path in files:
            by_area[path].add(task)
    for path, tasks in by_file.items():
        if len(tasks) > 1:
            found["same_file", tuple(sorted(tasks))].add(path)
    for folder, tasks in by_dir.items():
        files = {path for task in tasks for path in own[task] if posixpath.dirname(path) == folder}
        if len(tasks) > 1 and len(files) > 1:
            found["same_directory", tuple(sorted(tasks))].update(files)
    for path, hinted in by_area.items():
        tasks = hinted | by_file.get(path, set())
        if len(tasks) > 1:
            found["potential", tuple(sorted(tasks))].add(path)
    order = {"same_file": 0, "same_directory": 1, "potential": 2}
    return [
        FileConflict(kind=kind, tasks=list(tasks), files=sorted(files))
        for (kind, tasks), files in sorted(found.items(), key=lambda item: (order[item[0][0]], item[0][1]))
    ]


# ---------------------------------------------------------------------- the builder


class ExecutionPlanBuilder:
    """Builds and patches execution plans from task, epic and dependency records.

    Tasks and epics may be `TaskInput`/`EpicInput`, dicts, or any objects with those attributes
    (such as the store's records).
    """

    def __init__(
        self,
        tasks: Iterable[object],
        epics: Iterable[object] = (),
        edges: Iterable[Edge] = (),
        epic_edges: Iterable[Edge] = (),
        *,
        max_concurrency: int = 4,
        agents: int | None = None,
        strategy: WorktreeStrategy = "by_epic",
    ) -> None:
        if max_concurrency < 1:
            raise InvalidInput("max_concurrency", f"{max_concurrency} is too small", fix="use 1 or more")
        self.tasks = {t.id: t for t in map(TaskInput.model_validate, tasks)}
        self.epics = {e.id: e for e in map(EpicInput.model_validate, epics)}
        self.edges = list(edges)
        self.epic_edges = list(epic_edges)
        self.max_concurrency = max_concurrency
        self.strategy = strategy
        self.agents = agents or max_concurrency
        self._open = {i: t for i, t in self.tasks.items() if t.status not in FINISHED_STATUSES}
        self._slugs = _epic_slugs(self.epics.values())

    def apply_patch(self, plan: ExecutionPlan, patch: PlanPatch) -> PatchResult:
        """Validate a patch, merge it into the plan's adjustments and rebuild; raises on any bad entry."""
        for task_id, name in patch.worktrees.items():
            self._require_open(task_id, f"worktrees[{task_id}]")
            if name is not None and not _WORKTREE_NAME.fullmatch(name):
                raise InvalidInput(
                    f"worktrees[{task_id}]",
                    f"{name!r} is not a usable worktree name",
                    fix="use letters, digits, '.', '_' or '-' (up to 100), starting with a letter or digit",
                )
        for task_id, batch in patch.pins.items():
            self._require_open(task_id, f"pins[{task_id}]")
            if batch is not None and batch < 1:
                raise InvalidInput(
                    f"pins[{task_id}]", f"batch {batch} does not exist", fix="batches count from 1"
                )
        graph, sequential = self._graph(plan.adjustments.sequential, notes=[])
        added: list[Edge] = []
        for first, then in patch.sequential:
            self._require_open(first, "sequential")
            self._require_open(then, "sequential")
            if not graph.has_edge(first, then):
                graph.add_edge(first, then)  # raises CycleError or InvalidInput naming the tasks
                added.append(Edge(first, then, "hard"))
        merged = PlanAdjustments(
            worktrees=_merge(plan.adjustments.worktrees, patch.worktrees),
            sequential=sequential + added,
            pins=_merge(plan.adjustments.pins, patch.pins),
        )
        new_plan = self.build(merged)
        for task_id, batch in patch.pins.items():
            if batch is not None and new_plan.task(task_id).batch != batch:
                raise _pin_error(task_id, batch, new_plan.task(task_id).batch)
        return PatchResult(plan=new_plan, edges_to_add=added)

    # ------------------------------------------------------------------ steps

    def build(
        self, adjustments: PlanAdjustments | None = None, *, now: datetime | None = None
    ) -> ExecutionPlan:
        """The plan for the unfinished tasks; adjustments that no longer apply are dropped and noted."""
        adjustments = adjustments or PlanAdjustments()
        notes: list[str] = []
        graph, sequential = self._graph(adjustments.sequential, notes)
        pins = self._kept(adjustments.pins, "pin", notes)
        chosen_worktrees = self._kept(adjustments.worktrees, "worktree", notes)
        own = {
            i: set(t.predicted_files) | set(predict_files(f"{t.title}\n{t.description}"))
            for i, t in self._open.items()
        }
        area = {
            i: set(predict_files(self.epics[t.epic_id].description)) - own[i]
            if t.epic_id in self.epics
            else set()
            for i, t in self._open.items()
        }
        conflicts = find_conflicts(own, area)
        batches = self._layer(graph, conflicts, pins)
        batch_of = {task: number for number, batch in enumerate(batches, 1) for task in batch}
        worktree_of = {**self._assign_worktrees(batches, conflicts), **chosen_worktrees}
        critical = graph.critical_path()
        on_path, remaining = set(critical.tasks), graph.remaining_path()
        estimates = {i: t.estimate for i, t in self._open.items()}
        worktrees: dict[str, list[int]] = defaultdict(list)
        for task in (t for batch in batches for t in batch):
            worktrees[worktree_of[task]].append(task)
        return ExecutionPlan(
            created_at=now or datetime.now(UTC),
            max_concurrency=self.max_concurrency,
            strategy=self.strategy,
            batches=[
                PlanBatch(number=n, tasks=batch, duration=max(estimates[t] for t in batch))
                for n, batch in enumerate(batches, 1)
            ],
            tasks=[
                PlannedTask(
                    id=i,
                    epic_id=t.epic_id,
                    title=t.title,
                    batch=batch_of[i],
                    worktree=worktree_of[i],
                    priority=t.priority,
                    estimate=t.estimate,
                    remaining=remaining[i],
                    on_critical_path=i in on_path,
                    predicted_files=sorted(own[i]),
                    area_files=sorted(area[i]),
                )
                for i, t in sorted(self._open.items())
            ],
            worktrees=dict(worktrees),
            conflicts=conflicts,
            critical_path=critical,
            makespan=Makespan(
                agents=self.agents,
                estimate=pull_makespan(graph, self.agents),
                batch_barrier=barrier_makespan(batches, estimates, self.agents),
                serial=sum(estimates.values()),
                lower_bound=lower_bound(graph, self.agents),
                critical_path=critical.length,
            ),
            finished_tasks=sorted(set(self.tasks) - set(self._open)),
            adjustments=PlanAdjustments(worktrees=chosen_worktrees, sequential=sequential, pins=pins),
            notes=notes,
        )

    def _graph(self, sequential: list[Edge], notes: list[str]) -> tuple[DependencyGraph, list[Edge]]:
        """The dependency graph of the unfinished tasks, with the sequential constraints that still apply."""
        graph = DependencyGraph()
        for epic_id in sorted(
            set(self.epics) | {t.epic_id for t in self._open.values() if t.epic_id is not None}
        ):
            graph.add_epic(epic_id)
        for task in self._open.values():
            graph.add_task(task.id, task.priority, task.estimate, epic=task.epic_id)
        for edge in self.epic_edges:
            graph.add_epic_edge(edge.before, edge.after, edge.kind)
        for edge in self.edges:
            if edge.before in self._open and edge.after in self._open:
                graph.add_edge(edge.before, edge.after, edge.kind)
        kept: list[Edge] = []
        for edge in sequential:
            if edge.before not in self._open or edge.after not in self._open:
                notes.append(f"sequential {edge.before} -> {edge.after} dropped: a task is finished or gone")
                continue
            try:
                if not graph.has_edge(edge.before, edge.after):
                    graph.add_edge(edge.before, edge.after, edge.kind)
                kept.append(edge)
            except YokeflowError as err:
                notes.append(f"sequential {edge.before} -> {edge.after} dropped: {err.message}")
        return graph, kept

    def _kept(self, per_task: Mapping[int, _V], what: str, notes: list[str]) -> dict[int, _V]:
        """The entries of an adjustment whose task is still open."""
        kept = {}
        for task_id, value in per_task.items():
            if task_id in self._open:
                kept[task_id] = value
            else:
                notes.append(f"{what} of task {task_id} dropped: the task is finished or gone")
        return kept

    def _layer(
        self, graph: DependencyGraph, conflicts: list[FileConflict], pins: Mapping[int, int]
    ) -> list[list[int]]:
        """Kahn levels in claim order, where a task waits a batch if a task sharing one of its files
        is already in the batch, and a pinned task waits for its batch."""
        apart: dict[int, set[int]] = defaultdict(set)
        for conflict in conflicts:
            if conflict.kind == "same_file":
                for task in conflict.tasks:
                    apart[task].update(t for t in conflict.tasks if t != task)
        remaining = graph.remaining_path()
        waiting = {task: len(graph.predecessors(task)) for task in self._open}
        ready = [task for task, count in waiting.items() if count == 0]
        batches: list[list[int]] = []
        while ready:
            number = len(batches) + 1
            ready.sort(key=lambda t: (t not in pins, self._open[t].priority, -remaining[t], t))
            batch: list[int] = []
            later: list[int] = []
            for task in ready:
                if pins.get(task, 1) > number or apart[task].intersection(batch):
                    later.append(task)
                else:
                    batch.append(task)
            if batch:
                batches.append(batch)
            else:  # everything ready is pinned later: skip the empty batches, keep numbering dense
                skip = min(pins[t] for t in later) - number
                pins = {t: b - skip if b > number else b for t, b in pins.items()}
            ready = later
            for task in batch:
                for successor in graph.successors(task):
                    waiting[successor] -= 1
                    if waiting[successor] == 0:
                        ready.append(successor)
        return batches

    def _assign_worktrees(self, batches: list[list[int]], conflicts: list[FileConflict]) -> dict[int, str]:
        """Per batch, one worktree per group of `strategy`; past max_concurrency the smallest groups
        join the least loaded worktrees."""
        assigned: dict[int, str] = {}
        kind = "epic" if self.strategy == "by_epic" else "task"
        for number, batch in enumerate(batches, 1):
            groups = sorted(self._groups(batch, conflicts), key=lambda g: (-g.work, g.order))
            bins = [[group] for group in groups[: self.max_concurrency]]
            load = [group.work for group in groups[: self.max_concurrency]]
            for group in groups[self.max_concurrency :]:
                lightest = load.index(min(load))
                bins[lightest].append(group)
                load[lightest] += group.work
            for members in bins:
                name = f"batch{number}-{kind}-{_joined([group.label for group in members])}"
                for group in members:
                    for task in group.tasks:
                        assigned[task] = name
        return assigned

    def _groups(self, batch: list[int], conflicts: list[FileConflict]) -> list[_Group]:
        """The tasks of a batch that share a worktree: those of one epic (by_epic), none (by_task),
        or those that might touch the same files (smart: the same folder, or a file their epic names)."""
        if self.strategy == "by_epic":
            by_epic: dict[int | None, list[int]] = defaultdict(list)
            for task in batch:
                by_epic[self._open[task].epic_id].append(task)
            return [
                self._group(tasks, (epic is None, epic or 0), "none" if epic is None else self._slug(epic))
                for epic, tasks in by_epic.items()
            ]
        together = nx.Graph()
        together.add_nodes_from(batch)
        if self.strategy == "smart":
            members = set(batch)
            for conflict in conflicts:
                inside = [task for task in conflict.tasks if task in members]
                together.add_edges_from(itertools.pairwise(inside))
        components = (sorted(c) for c in nx.connected_components(together))
        return [
            self._group(tasks, (False, tasks[0]), _joined([str(t) for t in tasks])) for tasks in components
        ]

    def _group(self, tasks: list[int], order: tuple[bool, int], label: str) -> _Group:
        return _Group(tasks, sum(self._open[t].estimate for t in tasks), order, label)

    def _slug(self, epic: int) -> str:
        return self._slugs.get(epic, f"epic{epic}")

    def _require_open(self, task_id: int, field: str) -> None:
        if task_id not in self.tasks:
            raise _unknown_task(task_id)
        if task_id not in self._open:
            raise InvalidInput(
                field,
                f"task {task_id} is {self.tasks[task_id].status}; only unfinished tasks can be planned",
                fix="reopen the task first, or leave it out of the patch",
            )


@dataclass(frozen=True)
class _Group:
    """Tasks of one batch that stay in one worktree."""

    tasks: list[int]
    work: float
    order: tuple[bool, int]
    """Breaks ties of work: epics by id, tasks without an epic last; task groups by first task."""
    label: str


def _joined(labels: list[str]) -> str:
    """`a`, `a-and-b`, or `a-and-2-more`: the name part of a worktree holding several groups."""
    if len(labels) > 2:
        return f"{labels[0]}-and-{len(labels) - 1}-more"
    return "-and-".join(labels)


def slugify(name: str) -> str:
    """Lower-case letters and digits joined by single dashes, at most 40 characters."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].rstrip("-")


def _epic_slugs(epics: Iterable[EpicInput]) -> dict[int, str]:
    """A distinct slug per epic (the id is appended when two names slugify alike)."""
    slugs: dict[int, str] = {}
    for epic in sorted(epics, key=lambda e: e.id):
        slug = slugify(epic.name) or f"epic{epic.id}"
        slugs[epic.id] = f"{slug}-{epic.id}" if slug in slugs.values() else slug
    return slugs


def _merge(current: Mapping[int, _V], changes: Mapping[int, _V | None]) -> dict[int, _V]:
    """`current` updated by `changes`, where None removes an entry."""
    merged = {**current, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def _unknown_task(task_id: int) -> NotFound:
    return NotFound(f"task {task_id} does not exist in this project", fix="check the id with list_tasks")


def _pin_error(task_id: int, batch: int, landed: int) -> InvalidInput:
    if landed > batch:
        problem = f"task {task_id} cannot run in batch {batch}: its dependencies hold it until batch {landed}"
        fix = f"pin it to batch {landed} or later, or remove the dependency that holds it back"
    else:
        problem = f"task {task_id} cannot wait until batch {batch}: the batches before it would be empty"
        fix = f"pin it to batch {landed} or earlier"
    return InvalidInput(f"pins[{task_id}]", problem, fix=fix)
