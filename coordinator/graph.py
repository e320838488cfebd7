"""The dependency graph of a project's tasks: cycle-checked edges, batches, remaining and critical path.

Every node carries a label, and every edge goes from a lower to a higher label (a topological
order kept up to date as edges arrive). A new edge that agrees with the labels costs O(1); one
that does not is checked by a search from both of its ends limited to the labels between them,
and on success only the nodes that search saw are relabelled. An epic dependency (epic A before
epic B) is one edge between two barrier nodes per epic (A's exit, B's entry), never |A| x |B|
task edges; barrier nodes have no estimate and never appear in batches or paths.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from coordinator.errors import CycleError, InvalidInput, NotFound, YokeflowError

Kind = Literal["hard", "soft"]
KINDS: tuple[Kind, ...] = ("hard", "soft")

_TASK, _ENTRY, _EXIT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Edge:
    """`after` depends on `before` (for epic edges both are epic ids); hard blocks, soft only orders."""

    before: int
    after: int
    kind: Kind = "hard"


@dataclass(frozen=True, slots=True)
class TaskNode:
    id: int
    priority: int = 0
    estimate: float = 1.0
    epic: int | None = None


class CriticalPath(BaseModel):
    """The longest chain of tasks by estimates, in dependency order."""

    tasks: list[int]
    length: float


Problem = Literal["cycle", "unknown", "self_dependency", "duplicate", "invalid_kind"]


class Issue(BaseModel):
    """One problem of an imported plan found by `DependencyGraph.validate`."""

    problem: Problem
    edge: Edge
    epic_edge: bool = False
    field: str | None = Field(default=None, description="for cycles: epic_depends_on when they list epics")
    cycle: list[int] = []
    message: str


class ValidationReport(BaseModel):
    issues: list[Issue] = []

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def cycles(self) -> list[list[int]]:
        return [issue.cycle for issue in self.issues if issue.problem == "cycle"]


@dataclass(slots=True)
class _Search:
    """What `_search` found: a path, or the nodes it saw on each side and the label it stopped at."""

    path: list[int] | None = None
    forward: tuple[int, ...] = ()
    backward: tuple[int, ...] = ()
    bound: float = 0.0
    forward_done: bool = False

    def moved(self, ordr: list[float]) -> list[int]:
        """The nodes to relabel for the new edge, in their new order.

        If the backward side ran out, it holds all of the goal's ancestors in the window and is
        moved alone (just before the start). Otherwise the forward side holds every descendant of
        the start up to `bound` and the backward side every ancestor of the goal from `bound` up:
        the ancestors then the descendants are placed together where `bound` was.
        """
        label = ordr.__getitem__
        if not self.forward_done:
            return sorted(self.backward, key=label)
        ancestors = sorted((n for n in self.backward if ordr[n] >= self.bound), key=label)
        return ancestors + sorted((n for n in self.forward if ordr[n] <= self.bound), key=label)


@dataclass(frozen=True, slots=True)
class _Analysis:
    batch_of: list[int]
    remaining: list[float]


class DependencyGraph:
    """Tasks, their hard and soft dependencies and epic dependencies; rejects cycles as they are added."""

    def __init__(self) -> None:
        self._index: dict[int, int] = {}
        self._epics: dict[int, tuple[int, int]] = {}
        self._epic_size: dict[int, int] = {}
        self._epic_edges: dict[tuple[int, int], bool] = {}
        self._label: list[int] = []
        self._role: list[int] = []
        self._epic_of: list[int | None] = []
        self._priority: list[int] = []
        self._estimate: list[float] = []
        self._weight: list[int] = []
        self._succ: list[dict[int, bool]] = []
        self._pred: list[dict[int, bool]] = []
        self._ord: list[float] = []  # every edge goes from a lower to a strictly higher label
        self._top = -1.0
        self._cache: _Analysis | None = None

    # ------------------------------------------------------------------ building

    def add_epic(self, epic_id: int) -> None:
        """Declare an epic so tasks can join it and epic dependencies can name it."""
        if epic_id in self._epics:
            raise InvalidInput("epic_id", f"epic {epic_id} is already in the graph", fix="use a new epic id")
        entry = self._new_node(epic_id, _ENTRY, epic_id, 0.0)
        exit_ = self._new_node(epic_id, _EXIT, epic_id, 0.0)
        self._link(entry, exit_, True)
        self._epics[epic_id] = (entry, exit_)
        self._epic_size[epic_id] = 0

    def add_task(
        self, task_id: int, priority: int = 0, estimate: float = 1.0, *, epic: int | None = None
    ) -> None:
        if task_id in self._index:
            raise InvalidInput("task_id", f"task {task_id} is already in the graph", fix="use a new task id")
        if not (isinstance(estimate, int | float) and math.isfinite(estimate) and estimate > 0):
            raise InvalidInput(
                "estimate", f"task {task_id} has estimate {estimate!r}", fix="give a number of units above 0"
            )
        barriers = self._epic_nodes(epic) if epic is not None else None
        node = self._new_node(task_id, _TASK, epic, float(estimate), priority)
        self._index[task_id] = node
        if barriers is not None and epic is not None:
            entry, exit_ = barriers
            self._link(entry, node, True)
            self._connect(node, exit_, True)
            self._epic_size[epic] += 1

    def add_edge(self, before: int, after: int, kind: Kind = "hard") -> None:
        """Make task `after` depend on task `before`; raises CycleError if that closes a cycle."""
        u, v = self._checked_pair(before, after, kind)
        self._connect(u, v, kind == "hard", field="depends_on")

    def check_edge(self, before: int, after: int, kind: Kind = "hard") -> None:
        """Raise the error `add_edge` would raise, without changing the graph."""
        u, v = self._checked_pair(before, after, kind)
        if self._ord[u] >= self._ord[v]:
            path = self._search(v, u).path
            if path is not None:
                raise self._cycle_error(path, "depends_on")

    def remove_edge(self, before: int, after: int) -> None:
        u, v = self._node(before), self._node(after)
        if v not in self._succ[u]:
            raise NotFound(
                f"task {after} does not depend on task {before}",
                fix="list the task's dependencies with get_task; nothing was removed",
            )
        self._unlink(u, v)

    def add_epic_edge(self, before: int, after: int, kind: Kind = "hard") -> None:
        """Make every task of epic `after` depend on every task of epic `before`."""
        _check_kind(kind)
        u, v = self._epic_nodes(before)[1], self._epic_nodes(after)[0]
        if before == after:
            raise InvalidInput(
                "epic_depends_on",
                f"epic {before} cannot depend on itself",
                fix=f"remove {before} from its list",
            )
        if (before, after) in self._epic_edges:
            raise _duplicate("epic", before, after, self._epic_edges[before, after])
        self._connect(u, v, kind == "hard", field="epic_depends_on")
        self._epic_edges[before, after] = kind == "hard"

    def remove_epic_edge(self, before: int, after: int) -> None:
        if (before, after) not in self._epic_edges:
            raise NotFound(
                f"epic {after} does not depend on epic {before}",
                fix="list the epic's dependencies; nothing was removed",
            )
        del self._epic_edges[before, after]
        self._unlink(self._epics[before][1], self._epics[after][0])

    @classmethod
    def validate(
        cls,
        tasks: Iterable[TaskNode],
        edges: Iterable[Edge],
        *,
        epics: Iterable[int] = (),
        epic_edges: Iterable[Edge] = (),
    ) -> ValidationReport:
        """Load a plan that may be broken; keep what fits and report every edge that does not."""
        task_list = list(tasks)
        graph = cls()
        for epic in sorted(set(epics) | {t.epic for t in task_list if t.epic is not None}):
            graph.add_epic(epic)
        for task in task_list:
            graph.add_task(task.id, task.priority, task.estimate, epic=task.epic)
        issues: list[Issue] = []
        for edge_list, add, is_epic in (
            (epic_edges, graph.add_epic_edge, True),
            (edges, graph.add_edge, False),
        ):
            for edge in edge_list:
                try:
                    add(edge.before, edge.after, edge.kind)
                except YokeflowError as err:
                    issues.append(_issue(edge, err, is_epic))
        return ValidationReport(issues=issues)

    # ------------------------------------------------------------------ reading

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def has_edge(self, before: int, after: int) -> bool:
        return self._node(after) in self._succ[self._node(before)]

    def tasks(self) -> list[TaskNode]:
        return [
            TaskNode(task_id, self._priority[n], self._estimate[n], self._epic_of[n])
            for task_id, n in self._index.items()
        ]

    def edges(self) -> list[Edge]:
        """Task-to-task edges (epic dependencies are in `epic_edges`)."""
        role, label = self._role, self._label
        return [
            Edge(label[u], label[v], "hard" if hard else "soft")
            for u in self._index.values()
            for v, hard in self._succ[u].items()
            if role[v] == _TASK
        ]

    def epic_edges(self) -> list[Edge]:
        return [Edge(a, b, "hard" if hard else "soft") for (a, b), hard in self._epic_edges.items()]

    def predecessors(self, task_id: int, kind: Kind | None = None) -> list[int]:
        """Tasks that must (hard) or should (soft) finish first, epic dependencies expanded."""
        return self._neighbours(task_id, kind, self._pred)

    def successors(self, task_id: int, kind: Kind | None = None) -> list[int]:
        """Tasks that wait for (hard) or prefer to follow (soft) this one, epic dependencies expanded."""
        return self._neighbours(task_id, kind, self._succ)

    def batches(self) -> list[list[int]]:
        """Kahn levels over hard and soft edges; each ordered by priority, remaining path desc, id."""
        analysis = self._analyse()
        nodes = list(self._index.values())
        remaining = analysis.remaining
        rows = sorted(
            zip(
                map(analysis.batch_of.__getitem__, nodes),
                map(self._priority.__getitem__, nodes),
                [-remaining[n] for n in nodes],
                map(self._label.__getitem__, nodes),
                strict=True,
            )
        )
        levels: list[list[int]] = [[] for _ in range(rows[-1][0] + 1)] if rows else []
        for level, _, _, task_id in rows:
            levels[level].append(task_id)
        return levels

    def remaining_path(self) -> dict[int, float]:
        """Per task: its estimate plus the longest chain of estimates after it (the claim order key)."""
        remaining = self._analyse().remaining
        return {task_id: remaining[n] for task_id, n in self._index.items()}

    def critical_path(self) -> CriticalPath:
        remaining = self._analyse().remaining
        if not self._index:
            return CriticalPath(tasks=[], length=0.0)
        start = min(self._index.values(), key=lambda n: (-remaining[n], self._label[n]))
        path, node = [self._label[start]], start
        while self._succ[node]:
            node = max(self._succ[node], key=remaining.__getitem__)
            if remaining[node] <= 0.0:
                break
            if self._role[node] == _TASK:
                path.append(self._label[node])
        return CriticalPath(tasks=path, length=remaining[start])

    # ------------------------------------------------------------------ internals

    def _new_node(self, label: int, role: int, epic: int | None, estimate: float, priority: int = 0) -> int:
        node = len(self._label)
        self._label.append(label)
        self._role.append(role)
        self._epic_of.append(epic)
        self._priority.append(priority)
        self._estimate.append(estimate)
        self._weight.append(1 if role == _TASK else 0)
        self._succ.append({})
        self._pred.append({})
        self._top += 1.0
        self._ord.append(self._top)
        self._cache = None
        return node

    def _node(self, task_id: int) -> int:
        try:
            return self._index[task_id]
        except KeyError:
            raise NotFound(
                f"task {task_id} does not exist in this project",
                fix="create the task first, or check the id with list_tasks",
            ) from None

    def _epic_nodes(self, epic_id: int) -> tuple[int, int]:
        try:
            return self._epics[epic_id]
        except KeyError:
            raise NotFound(
                f"epic {epic_id} does not exist in this project",
                fix="create the epic first, or check the id with list_epics",
            ) from None

    def _checked_pair(self, before: int, after: int, kind: str) -> tuple[int, int]:
        _check_kind(kind)
        u, v = self._node(before), self._node(after)
        if u == v:
            raise InvalidInput(
                "depends_on", f"task {after} cannot depend on itself", fix=f"remove {after} from its list"
            )
        if v in self._succ[u]:
            raise _duplicate("task", before, after, self._succ[u][v])
        return u, v

    def _link(self, u: int, v: int, hard: bool) -> None:
        self._succ[u][v] = hard
        self._pred[v][u] = hard
        self._cache = None

    def _unlink(self, u: int, v: int) -> None:
        del self._succ[u][v]
        del self._pred[v][u]
        self._cache = None

    def _connect(self, u: int, v: int, hard: bool, field: str = "depends_on") -> None:
        """Add u -> v keeping every edge ascending in the order, or raise CycleError."""
        if self._ord[u] < self._ord[v]:
            self._link(u, v, hard)
            return
        search = self._search(v, u)
        if search.path is not None:
            raise self._cycle_error(search.path, field)
        self._link(u, v, hard)
        if not self._move(search.moved(self._ord)):
            self._renumber()

    def _search(self, start: int, goal: int) -> _Search:
        """Look for a path start ~> goal inside the order window between them, from both ends.

        Backwards, ancestors of goal are taken highest label first, so after each step every
        ancestor above the current label `bound` is known; forwards (depth-first, to get near the
        goal quickly) any node above `bound` that is not one of them cannot lead to the goal.
        """
        ordr, succ, pred = self._ord, self._succ, self._pred
        lo, bound = ordr[start], ordr[goal]
        fwd: dict[int, int] = {start: start}
        bwd: dict[int, int] = {goal: goal}
        stack, heap = [start], [(-bound, goal)]
        while stack and heap:
            x = stack.pop()
            if ordr[x] <= bound:
                for y in succ[x]:
                    if y in bwd:
                        return _Search(path=_join(fwd, x, y, bwd))
                    if y not in fwd and ordr[y] <= bound:
                        fwd[y] = x
                        stack.append(y)
            negative, x = heapq.heappop(heap)
            bound = -negative
            for y in pred[x]:
                if y in fwd:
                    return _Search(path=_join(fwd, y, x, bwd))
                if y not in bwd and ordr[y] >= lo:
                    bwd[y] = x
                    heapq.heappush(heap, (-ordr[y], y))
        return _Search(forward=tuple(fwd), backward=tuple(bwd), bound=bound, forward_done=not stack)

    def _move(self, moved: list[int]) -> bool:
        """Give `moved` consecutive labels between its outside neighbours, keeping its order;
        False if the labels ran out of precision."""
        ordr, inside = self._ord, set(moved)
        low = max((ordr[y] for x in moved for y in self._pred[x] if y not in inside), default=-math.inf)
        high = min((ordr[y] for x in moved for y in self._succ[x] if y not in inside), default=math.inf)
        step = min(1.0, (high - low) / (len(moved) + 1))
        base = low if low > -math.inf else (high - step * (len(moved) + 1) if high < math.inf else 0.0)
        labels = [base + step * i for i in range(1, len(moved) + 1)]
        if not low < labels[0] or not labels[-1] < high or any(a >= b for a, b in itertools.pairwise(labels)):
            return False
        for node, label in zip(moved, labels, strict=True):
            ordr[node] = label
        self._top = max(self._top, labels[-1])
        return True

    def _renumber(self) -> None:
        """Give every node a fresh label from a full topological sort (Kahn)."""
        waiting = [len(p) for p in self._pred]
        ready = [n for n, count in enumerate(waiting) if count == 0]
        for label, node in enumerate(ready):  # `ready` grows while it is walked
            self._ord[node] = float(label)
            for y in self._succ[node]:
                waiting[y] -= 1
                if waiting[y] == 0:
                    ready.append(y)
        self._top = float(len(ready) - 1)

    def _cycle_error(self, path: list[int], field: str) -> CycleError:
        """The cycle closed by an edge goal -> start, where path runs start ~> goal."""
        epics = [e for e in map(self._epic_of.__getitem__, path) if e is not None]
        if field == "epic_depends_on" and len(epics) == len(path):
            names = [e for i, e in enumerate(epics) if i == 0 or e != epics[i - 1]]
        else:
            field = "depends_on"
            names = [self._label[n] for n in path if self._role[n] == _TASK]
        return CycleError([*names, names[0]], field=field)

    def _neighbours(self, task_id: int, kind: Kind | None, adjacency: list[dict[int, bool]]) -> list[int]:
        """Tasks one edge away, walking through epic barriers; hard only if every edge on the way is."""
        if kind is not None:
            _check_kind(kind)
        role, epic_of = self._role, self._epic_of
        found: dict[int, bool] = {}
        via: dict[int, bool] = {}
        stack = [(self._node(task_id), True)]
        while stack:
            x, hard_so_far = stack.pop()
            for y, hard in adjacency[x].items():
                hard_path = hard_so_far and hard
                if role[y] == _TASK:
                    found[y] = found.get(y, False) or hard_path
                elif via.get(y) is None or (hard_path and not via[y]):
                    epic = epic_of[y]
                    if role[x] != _TASK and epic_of[x] == epic and epic is not None and self._epic_size[epic]:
                        continue  # the epic's own tasks stand for its barrier pair
                    via[y] = hard_path
                    stack.append((y, hard_path))
        wanted = {None: None, "hard": True, "soft": False}[kind]
        return sorted(self._label[n] for n, hard in found.items() if wanted is None or hard == wanted)

    def _analyse(self) -> _Analysis:
        if self._cache is None:
            self._cache = self._compute()
        return self._cache

    def _compute(self) -> _Analysis:
        count = len(self._ord)
        order = sorted(range(count), key=self._ord.__getitem__)
        succ, pred, weight, estimate = self._succ, self._pred, self._weight, self._estimate
        batch_of = [0] * count
        reach = [0] * count  # tasks on the longest chain ending at a node, the node included
        for n in order:
            before = pred[n]
            level = max(map(reach.__getitem__, before)) if before else 0
            batch_of[n] = level
            reach[n] = level + weight[n]
        remaining = [0.0] * count
        for n in reversed(order):
            after = succ[n]
            remaining[n] = estimate[n] + (max(map(remaining.__getitem__, after)) if after else 0.0)
        return _Analysis(batch_of=batch_of, remaining=remaining)


def _join(fwd: dict[int, int], a: int, b: int, bwd: dict[int, int]) -> list[int]:
    """The path start ~> a -> b ~> goal from the two search trees."""
    head = [a]
    while fwd[head[-1]] != head[-1]:
        head.append(fwd[head[-1]])
    head.reverse()
    tail = [b]
    while bwd[tail[-1]] != tail[-1]:
        tail.append(bwd[tail[-1]])
    return head + tail


def _check_kind(kind: object) -> None:
    if kind not in KINDS:
        raise InvalidInput(
            "kind", f"unknown dependency kind {kind!r}", fix="use 'hard' (blocks) or 'soft' (orders)"
        )


def _duplicate(what: str, before: int, after: int, hard: bool) -> InvalidInput:
    field = "depends_on" if what == "task" else "epic_depends_on"
    kind = "hard" if hard else "soft"
    return InvalidInput(
        field,
        f"{what} {after} already depends on {what} {before} ({kind})",
        fix="leave it as it is, or remove the dependency first to change its kind",
    )


def _issue(edge: Edge, err: YokeflowError, epic_edge: bool) -> Issue:
    if isinstance(err, CycleError):
        return Issue(
            problem="cycle",
            edge=edge,
            epic_edge=epic_edge,
            field=err.field,
            cycle=err.cycle,
            message=str(err),
        )
    if isinstance(err, NotFound):
        problem: Problem = "unknown"
    elif edge.before == edge.after:
        problem = "self_dependency"
    elif isinstance(err, InvalidInput) and err.field == "kind":
        problem = "invalid_kind"
    else:
        problem = "duplicate"
    return Issue(problem=problem, edge=edge, epic_edge=epic_edge, message=str(err))
