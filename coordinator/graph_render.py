"""Views of a dependency graph: JSON for tools and the dashboard, Mermaid source, and plain text."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from coordinator.graph import CriticalPath, DependencyGraph, Edge
from coordinator.records import DependencyKind


class GraphNode(BaseModel):
    """A task in the JSON view (`to_json`), as the MCP tools and the REST API answer it."""

    id: int
    title: str | None
    status: str | None
    epic: int | None
    priority: int
    estimate: float
    remaining: float = Field(description="Its estimate plus the longest chain of estimates after it.")
    batch: int = Field(description="Its batch, counted from 1.")
    on_critical_path: bool


class GraphEdge(BaseModel):
    before: int = Field(description="The task (or epic) that comes first.")
    after: int = Field(description="The task (or epic) that depends on it.")
    kind: DependencyKind
    critical: bool = Field(description="True for the edges of the critical path.")


class GraphData(BaseModel):
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    epic_edges: list[GraphEdge] = Field(description="Epic dependencies (every task of `after` waits).")
    batches: list[list[int]] = Field(description="Task ids per batch, first batch first.")
    critical_path: CriticalPath


STATUS_STYLES = {
    "in_progress": "fill:#fff3bf,stroke:#f08c00",
    "merging": "fill:#e5dbff,stroke:#7048e8",
    "done": "fill:#d3f9d8,stroke:#2f9e44",
    "failed": "fill:#ffe3e3,stroke:#e03131",
    "conflict": "fill:#ffe8cc,stroke:#e8590c",
    "rejected": "fill:#ffe3e3,stroke:#c92a2a",
    "cancelled": "fill:#f1f3f5,stroke:#868e96,color:#868e96",
}
CRITICAL_STYLE = "stroke:#d9480f,stroke-width:3px"
_ARROWS = {"hard": "-->", "soft": "-.->"}
_MERMAID_ESCAPES = {'"': "#quot;", "#": "#35;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}


@dataclass(frozen=True)
class _View:
    """What every renderer needs, computed once."""

    batches: list[list[int]]
    remaining: dict[int, float]
    critical: CriticalPath
    critical_edges: set[tuple[int, int]]

    @classmethod
    def of(cls, graph: DependencyGraph) -> _View:
        critical = graph.critical_path()
        return cls(
            batches=graph.batches(),
            remaining=graph.remaining_path(),
            critical=critical,
            critical_edges=set(zip(critical.tasks, critical.tasks[1:], strict=False)),
        )


def to_json(
    graph: DependencyGraph,
    titles: Mapping[int, str] | None = None,
    statuses: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """Nodes (with batch numbers from 1), edges, batches and the critical path as plain data."""
    view = _View.of(graph)
    batch_of = {task: number for number, batch in enumerate(view.batches, 1) for task in batch}
    on_path = set(view.critical.tasks)
    titles, statuses = titles or {}, statuses or {}
    return {
        "nodes": [
            {
                "id": task.id,
                "title": titles.get(task.id),
                "status": statuses.get(task.id),
                "epic": task.epic,
                "priority": task.priority,
                "estimate": task.estimate,
                "remaining": view.remaining[task.id],
                "batch": batch_of[task.id],
                "on_critical_path": task.id in on_path,
            }
            for task in graph.tasks()
        ],
        "edges": [
            _edge_json(edge, (edge.before, edge.after) in view.critical_edges) for edge in graph.edges()
        ],
        "epic_edges": [_edge_json(edge, False) for edge in graph.epic_edges()],
        "batches": view.batches,
        "critical_path": view.critical.model_dump(),
    }


def to_mermaid(
    graph: DependencyGraph,
    titles: Mapping[int, str] | None = None,
    statuses: Mapping[int, str] | None = None,
    epic_names: Mapping[int, str] | None = None,
) -> str:
    """`flowchart TD` source: epics as subgraphs, soft edges dashed, the critical path highlighted."""
    view = _View.of(graph)
    titles, statuses, epic_names = titles or {}, statuses or {}, epic_names or {}
    tasks = graph.tasks()
    lines = ["flowchart TD"]
    for epic in sorted({t.epic for t in tasks if t.epic is not None} | _epics_of(graph.epic_edges())):
        lines.append(
            f'    subgraph {_epic_id(epic)}["{_mermaid_text(epic_names.get(epic, f"epic {epic}"))}"]'
        )
        lines.extend(f"        {_task_node(t.id, titles)}" for t in tasks if t.epic == epic)
        lines.append("    end")
    lines.extend(f"    {_task_node(t.id, titles)}" for t in tasks if t.epic is None)
    critical_links = []
    for number, edge in enumerate(graph.edges()):  # links are numbered in order for linkStyle
        lines.append(f"    {_task_id(edge.before)} {_ARROWS[edge.kind]} {_task_id(edge.after)}")
        if (edge.before, edge.after) in view.critical_edges:
            critical_links.append(str(number))
    lines.extend(
        f"    {_epic_id(e.before)} {_ARROWS[e.kind]} {_epic_id(e.after)}" for e in graph.epic_edges()
    )
    lines.append(f"    classDef critical {CRITICAL_STYLE}")
    if view.critical.tasks:
        lines.append(f"    class {','.join(_task_id(t) for t in view.critical.tasks)} critical")
    if critical_links:
        lines.append(f"    linkStyle {','.join(critical_links)} {CRITICAL_STYLE}")
    for status, style in STATUS_STYLES.items():
        members = [_task_id(t.id) for t in tasks if statuses.get(t.id) == status]
        if members:
            lines.append(f"    classDef {status} {style}")
            lines.append(f"    class {','.join(members)} {status}")
    return "\n".join(lines) + "\n"


def to_ascii(
    graph: DependencyGraph,
    titles: Mapping[int, str] | None = None,
    statuses: Mapping[int, str] | None = None,
    *,
    width: int = 100,
    title_width: int = 28,
) -> str:
    """Batches as rows of `id title [status]` cells wrapped at `width`; `*` marks the critical path."""
    width = max(width, 40)
    title_width = max(4, min(title_width, width - 20))
    view = _View.of(graph)
    titles, statuses = titles or {}, statuses or {}
    on_path = set(view.critical.tasks)
    lines: list[str] = []
    for number, batch in enumerate(view.batches, 1):
        lines.append(f"Batch {number} ({len(batch)} task{'s' if len(batch) != 1 else ''})")
        cells = [
            f"{'*' if task in on_path else ' '}{task}"
            + (f" {_shorten(titles[task], title_width)}" if task in titles else "")
            + (f" [{_shorten(statuses[task], 12)}]" if task in statuses else "")
            for task in batch
        ]
        lines.extend(_wrap_cells(cells, width))
    path = " -> ".join(str(task) for task in view.critical.tasks) or "(no tasks)"
    summary = f"* critical path (length {view.critical.length:g}): {path}"
    lines.extend(textwrap.wrap(summary, width, subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines) + "\n"


def _edge_json(edge: Edge, critical: bool) -> dict[str, Any]:
    return {"before": edge.before, "after": edge.after, "kind": edge.kind, "critical": critical}


def _epics_of(edges: list[Edge]) -> set[int]:
    return {edge.before for edge in edges} | {edge.after for edge in edges}


def _task_id(task: int) -> str:
    return f"t{task}" if task >= 0 else f"tn{-task}"


def _epic_id(epic: int) -> str:
    return f"epic_{epic}" if epic >= 0 else f"epic_n{-epic}"


def _task_node(task: int, titles: Mapping[int, str]) -> str:
    label = f"{task}: {_shorten(titles[task], 60)}" if task in titles else str(task)
    return f'{_task_id(task)}["{_mermaid_text(label)}"]'


def _mermaid_text(text: str) -> str:
    return "".join(_MERMAID_ESCAPES.get(char, char) for char in _one_line(text))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _shorten(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _wrap_cells(cells: list[str], width: int) -> list[str]:
    """Cells joined by two spaces, indented, never past `width`."""
    lines, current = [], "  "
    for cell in cells:
        if current.strip() and len(current) + 2 + len(cell) > width:
            lines.append(current.rstrip())
            current = "  "
        current += ("  " if current.strip() else "") + cell
    if current.strip():
        lines.append(current.rstrip())
    return lines
