"""Renderers: JSON, Mermaid and plain text views of a dependency graph."""

from __future__ import annotations

import json
import random
import re

from coordinator.graph import DependencyGraph
from coordinator.graph_render import to_ascii, to_json, to_mermaid

_NODE = r't(?:n)?\d+\["[^"\n]*"\]'
_MERMAID_LINE = re.compile(
    "|".join(
        [
            r"flowchart TD",
            rf"    {_NODE}",
            rf"        {_NODE}",
            r'    subgraph epic_n?\d+\["[^"\n]*"\]',
            r"    end",
            r"    (t(?:n)?\d+|epic_n?\d+) (-->|-\.->) (t(?:n)?\d+|epic_n?\d+)",
            r"    classDef [a-z_]+ [a-z-]+:[^\s;]+(,[a-z-]+:[^\s,;]+)*",
            r"    class t(?:n)?\d+(,t(?:n)?\d+)* [a-z_]+",
            r"    linkStyle \d+(,\d+)* [a-z-]+:[^\s;]+(,[a-z-]+:[^\s,;]+)*",
        ]
    )
)


def sample() -> DependencyGraph:
    """Epic 1 (tasks 1, 2) before epic 2 (tasks 3, 4); 4 -soft-> 5; 6 alone; estimates = ids."""
    graph = DependencyGraph()
    graph.add_epic(1)
    graph.add_epic(2)
    for task in range(1, 7):
        graph.add_task(task, estimate=task, epic=1 if task < 3 else 2 if task < 5 else None)
    graph.add_edge(1, 2)
    graph.add_edge(3, 4)
    graph.add_edge(4, 5, "soft")
    graph.add_epic_edge(1, 2)
    return graph


def large(count: int = 200) -> tuple[DependencyGraph, dict[int, str]]:
    rng = random.Random(3)
    graph = DependencyGraph()
    for task in range(count):
        graph.add_task(task, estimate=rng.choice([1.0, 2.0, 3.0]))
    for task in range(1, count):
        for before in rng.sample(range(task), k=min(task, 2)):
            graph.add_edge(before, task, rng.choice(["hard", "soft"]))
    titles = {t: f"Task {t}: " + "implement the thing carefully " * rng.randint(0, 6) for t in range(count)}
    return graph, titles


def test_json_lists_nodes_edges_batches_and_the_critical_path() -> None:
    view = to_json(sample(), titles={1: "Schema"}, statuses={1: "done"})
    json.dumps(view)
    first = view["nodes"][0]
    assert first == {
        "id": 1,
        "title": "Schema",
        "status": "done",
        "epic": 1,
        "priority": 0,
        "estimate": 1.0,
        "remaining": 15.0,
        "batch": 1,
        "on_critical_path": True,
    }
    assert view["batches"] == [[1, 6], [2], [3], [4], [5]]
    assert view["critical_path"] == {"tasks": [1, 2, 3, 4, 5], "length": 15.0}
    assert {"before": 4, "after": 5, "kind": "soft", "critical": True} in view["edges"]
    assert view["epic_edges"] == [{"before": 1, "after": 2, "kind": "hard", "critical": False}]


def test_mermaid_is_a_flowchart_of_valid_lines() -> None:
    source = to_mermaid(
        sample(),
        titles={1: 'Create "schema" <db> & #1 [x]\nnext line', 2: "`code`"},
        statuses={1: "done", 3: "in_progress"},
        epic_names={1: 'The "DB" epic'},
    )
    lines = source.splitlines()
    assert lines[0] == "flowchart TD"
    for line in lines:
        assert _MERMAID_LINE.fullmatch(line), line
    assert 't1["1: Create #quot;schema#quot; #lt;db#gt; #amp; #35;1 [x] next line"]' in source
    assert 't2["2: #96;code#96;"]' in source
    assert 'subgraph epic_1["The #quot;DB#quot; epic"]' in source
    assert "    t4 -.-> t5" in lines
    assert "    epic_1 --> epic_2" in lines
    assert "    class t1,t2,t3,t4,t5 critical" in lines
    assert "    class t1 done" in lines
    assert source.count("subgraph") == source.count("    end\n") == 2


def test_mermaid_node_ids_are_safe_for_negative_ids() -> None:
    graph = DependencyGraph()
    graph.add_task(-3)
    graph.add_task(4)
    graph.add_edge(-3, 4)
    lines = to_mermaid(graph).splitlines()
    assert "    tn3 --> t4" in lines
    assert all(_MERMAID_LINE.fullmatch(line) for line in lines)


def test_mermaid_of_a_large_graph_has_only_valid_lines() -> None:
    graph, titles = large()
    for line in to_mermaid(graph, titles).splitlines():
        assert _MERMAID_LINE.fullmatch(line), line


def test_ascii_shows_batches_as_rows_and_marks_the_critical_path() -> None:
    text = to_ascii(sample(), titles={1: "Schema", 2: "Models"}, statuses={2: "in_progress"})
    assert text.splitlines() == [
        "Batch 1 (2 tasks)",
        "  *1 Schema   6",
        "Batch 2 (1 task)",
        "  *2 Models [in_progress]",
        "Batch 3 (1 task)",
        "  *3",
        "Batch 4 (1 task)",
        "  *4",
        "Batch 5 (1 task)",
        "  *5",
        "* critical path (length 15): 1 -> 2 -> 3 -> 4 -> 5",
    ]


def test_ascii_at_200_tasks_wraps_and_truncates_within_the_width() -> None:
    graph, titles = large()
    for width in (100, 200):
        text = to_ascii(graph, titles, {t: "pending" for t in titles}, width=width)
        assert max(len(line) for line in text.splitlines()) <= width
        cells = re.findall(r"[ *](\d+) Task \1:", text)
        assert sorted(map(int, cells)) == list(range(200))
    assert "..." in to_ascii(graph, titles)


def test_ascii_of_an_empty_graph() -> None:
    assert to_ascii(DependencyGraph()) == "* critical path (length 0): (no tasks)\n"
