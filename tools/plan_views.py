"""Results of the dependency-graph tools, and the epic filter YokeFlow's tools take.

Without an epic the tools pass the plan service's project-wide views through. With one
(`epic_id`, as YokeFlow prompts send it) the view is the epic's own subgraph — its tasks and the
dependencies among them — rebuilt from the project's graph and drawn by the same renderers;
dependencies that cross the epic's boundary are listed apart (`external_edges`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from coordinator.context import Caller
from coordinator.errors import CycleError, InvalidInput, StateConflict
from coordinator.graph import DependencyGraph, Issue, ValidationReport
from coordinator.graph_render import GraphData, GraphEdge, to_ascii, to_json, to_mermaid
from coordinator.plans import GraphFormat
from tools.runtime import Runtime

Renderer = Callable[[DependencyGraph, Mapping[int, str], Mapping[int, str]], dict[str, Any] | str]
RENDERERS: dict[GraphFormat, Renderer] = {"json": to_json, "mermaid": to_mermaid, "ascii": to_ascii}


class DependencyGraphView(BaseModel):
    """The dependency graph as data (format json) or as a drawing (mermaid, ascii)."""

    format: GraphFormat
    epic_id: int | None = Field(description="The epic the view is limited to, if any.")
    graph: GraphData | None = Field(description="Format json: nodes, edges, batches, critical path.")
    text: str | None = Field(description="Format mermaid or ascii: the drawing.")
    external_edges: list[GraphEdge] = Field(
        description="With epic_id: the dependencies between the epic's tasks and other tasks (not drawn)."
    )


class ParallelBatches(BaseModel):
    epic_id: int | None = Field(description="The epic the batches are limited to, if any.")
    batches: list[list[int]] = Field(
        description="Task ids per batch, first batch first: every dependency of a task (hard or soft) "
        "is in an earlier batch; within a batch, claim order."
    )


class DependencyCheck(BaseModel):
    """What validate_dependencies found."""

    ok: bool = Field(description="True when there is no issue.")
    epic_id: int | None = Field(description="The epic the check is limited to, if any.")
    issues: list[Issue]
    cycles: list[list[int]] = Field(
        description="Each cycle found, as task (or epic) ids, first id repeated last."
    )
    message: str

    @classmethod
    def of(cls, report: ValidationReport, epic_id: int | None) -> DependencyCheck:
        count = len(report.issues)
        return cls(
            ok=report.ok,
            epic_id=epic_id,
            issues=report.issues,
            cycles=report.cycles,
            message="the dependencies are valid: no cycle, unknown task, self-dependency or duplicate"
            if report.ok
            else f"{count} problem{'s' if count != 1 else ''} found; each issue names the edge and the fix",
        )


@dataclass(frozen=True)
class EpicScope:
    """One epic's tasks, to limit a project-wide view to them."""

    epic_id: int
    project_id: int
    task_ids: frozenset[int]

    def subgraph(self, view: GraphData) -> DependencyGraph:
        """The epic's tasks and the dependencies among them, plus the epic's own epic dependencies."""
        graph = DependencyGraph()
        epics = {self.epic_id} | {e for edge in self._epic_edges(view) for e in (edge.before, edge.after)}
        for epic in sorted(epics):
            graph.add_epic(epic)
        for node in view.nodes:
            if node.id in self.task_ids:
                graph.add_task(node.id, node.priority, node.estimate, epic=node.epic)
        for edge in view.edges:
            if edge.before in self.task_ids and edge.after in self.task_ids:
                graph.add_edge(edge.before, edge.after, edge.kind)
        for edge in self._epic_edges(view):
            graph.add_epic_edge(edge.before, edge.after, edge.kind)
        return graph

    def external_edges(self, view: GraphData) -> list[GraphEdge]:
        """Dependencies with exactly one end in the epic."""
        return [
            edge.model_copy(update={"critical": False})
            for edge in view.edges
            if (edge.before in self.task_ids) != (edge.after in self.task_ids)
        ]

    def report(self, report: ValidationReport) -> ValidationReport:
        """The issues of task edges that touch the epic's tasks, and of epic edges that touch the epic."""

        def touches(issue: Issue) -> bool:
            ends = {issue.edge.before, issue.edge.after}
            return self.epic_id in ends if issue.epic_edge else not ends.isdisjoint(self.task_ids)

        return ValidationReport(issues=[issue for issue in report.issues if touches(issue)])

    def _epic_edges(self, view: GraphData) -> list[GraphEdge]:
        return [e for e in view.epic_edges if self.epic_id in (e.before, e.after)]


@contextmanager
def stored_cycles_explained() -> Iterator[None]:
    """Report a cycle in the stored dependencies as the state it is, not as a bad argument.

    The tools never store one; it comes from data written some other way.
    """
    try:
        yield
    except CycleError as exc:
        raise StateConflict(
            f"the stored dependencies hold the cycle {' -> '.join(map(str, exc.cycle))}",
            fix="list the broken edges with validate_dependencies and drop one with remove_dependency",
        ) from exc


async def epic_scope(rt: Runtime, caller: Caller, epic_id: int, project: int | str | None) -> EpicScope:
    """The epic's tasks; the epic names its project (a `project` that disagrees is refused)."""
    detail = await rt.observe.get_epic(caller, epic_id=epic_id)
    owner = detail.epic.project_id
    if project is not None and str(project) != str(owner) and not await _lists(rt, caller, project, epic_id):
        raise InvalidInput(
            "epic_id",
            f"epic {epic_id} belongs to project {owner}, not to project {project!r}",
            fix="omit project (the epic names its project), or pick an epic of that project with list_epics",
        )
    return EpicScope(epic_id, owner, frozenset(task.id for task in detail.tasks))


async def _lists(rt: Runtime, caller: Caller, project: int | str, epic_id: int) -> bool:
    """Whether `project` (named by name, or by an id written differently) holds the epic."""
    return any(epic.id == epic_id for epic in await rt.observe.list_epics(caller, project=project))


async def epic_graph(rt: Runtime, caller: Caller, scope: EpicScope) -> tuple[DependencyGraph, GraphData]:
    """The epic's subgraph and the project's graph it was cut from."""
    view = GraphData.model_validate(await rt.coord.plans.graph_view(caller, project=scope.project_id))
    return scope.subgraph(view), view


def draw(graph: DependencyGraph, view: GraphData, format: GraphFormat) -> dict[str, Any] | str:
    """`graph` in `format`, with the titles and states of the project's view."""
    titles = {node.id: node.title for node in view.nodes if node.title is not None}
    statuses = {node.id: node.status for node in view.nodes if node.status is not None}
    return RENDERERS[format](graph, titles, statuses)


def graph_result(
    format: GraphFormat,
    drawn: dict[str, Any] | str,
    *,
    epic_id: int | None = None,
    external_edges: list[GraphEdge] | None = None,
) -> DependencyGraphView:
    return DependencyGraphView(
        format=format,
        epic_id=epic_id,
        graph=GraphData.model_validate(drawn) if isinstance(drawn, dict) else None,
        text=drawn if isinstance(drawn, str) else None,
        external_edges=external_edges or [],
    )
