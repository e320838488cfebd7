"""The dependency graph: edges and their errors, batches, remaining and critical path, epics, validation."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from coordinator.errors import CycleError, InvalidInput, NotFound
from coordinator.graph import DependencyGraph, Edge, TaskNode


def graph_of(*tasks: int | tuple[int, float], edges: Sequence[tuple[int, int]] = ()) -> DependencyGraph:
    """Tasks given as ids or (id, estimate); edges as (before, after) hard dependencies."""
    graph = DependencyGraph()
    for task in tasks:
        task_id, estimate = task if isinstance(task, tuple) else (task, 1.0)
        graph.add_task(task_id, estimate=estimate)
    for before, after in edges:
        graph.add_edge(before, after)
    return graph


# ---------------------------------------------------------------------- adding and errors


def test_a_cycle_is_rejected_naming_it_in_dependency_order() -> None:
    graph = graph_of(12, 15, 19, edges=[(12, 15), (15, 19)])
    with pytest.raises(CycleError) as caught:
        graph.add_edge(19, 12)
    assert caught.value.cycle == [12, 15, 19, 12]
    assert "12 -> 15 -> 19 -> 12" in str(caught.value)
    assert caught.value.field == "depends_on"
    assert graph.edges() == [Edge(12, 15), Edge(15, 19)]


def test_soft_edges_take_part_in_cycles() -> None:
    graph = graph_of(1, 2)
    graph.add_edge(1, 2, "soft")
    with pytest.raises(CycleError):
        graph.add_edge(2, 1, "soft")


def test_unknown_task_is_not_found_and_named() -> None:
    graph = graph_of(1)
    with pytest.raises(NotFound, match="task 42 does not exist in this project"):
        graph.add_edge(1, 42)
    with pytest.raises(NotFound, match="task 42 does not exist"):
        graph.predecessors(42)


def test_self_dependency_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="task 7 cannot depend on itself") as caught:
        graph_of(7).add_edge(7, 7)
    assert caught.value.field == "depends_on"
    assert caught.value.fix


def test_duplicate_edge_names_both_tasks_and_the_kind() -> None:
    graph = graph_of(1, 2, edges=[(1, 2)])
    with pytest.raises(InvalidInput, match=r"task 2 already depends on task 1 \(hard\)"):
        graph.add_edge(1, 2, "soft")


def test_unknown_kind_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        graph_of(1, 2).add_edge(1, 2, "medium")  # type: ignore[arg-type]
    assert caught.value.field == "kind"


@pytest.mark.parametrize("estimate", [0, -1.5, float("nan"), float("inf")])
def test_estimate_must_be_a_positive_number(estimate: float) -> None:
    graph = DependencyGraph()
    with pytest.raises(InvalidInput) as caught:
        graph.add_task(3, estimate=estimate)
    assert caught.value.field == "estimate"
    assert 3 not in graph


def test_a_task_id_is_added_once() -> None:
    graph = graph_of(1)
    with pytest.raises(InvalidInput, match="task 1 is already in the graph"):
        graph.add_task(1)


def test_check_edge_reports_without_changing_anything() -> None:
    graph = graph_of(1, 2, 3, edges=[(1, 2), (2, 3)])
    graph.check_edge(1, 3)
    assert not graph.has_edge(1, 3)
    with pytest.raises(CycleError) as caught:
        graph.check_edge(3, 1)
    assert caught.value.cycle == [1, 2, 3, 1]
    assert graph.edges() == [Edge(1, 2), Edge(2, 3)]


def test_removing_an_edge_allows_the_reverse() -> None:
    graph = graph_of(1, 2, edges=[(1, 2)])
    graph.remove_edge(1, 2)
    graph.add_edge(2, 1)
    assert graph.batches() == [[2], [1]]
    with pytest.raises(NotFound, match="task 2 does not depend on task 1"):
        graph.remove_edge(1, 2)


def test_edges_added_against_the_current_order_keep_everything_consistent() -> None:
    """A chain built from its end, then squeezed: every later answer must still be right."""
    graph = graph_of(*range(300))
    for task in range(299, 0, -1):
        graph.add_edge(task - 1, task)
    for extra in range(1000, 1200):  # each one lands between the previous one and task 1
        graph.add_task(extra)
        graph.add_edge(extra - 1 if extra > 1000 else 0, extra)
        graph.add_edge(extra, 1)
    batches = graph.batches()
    assert [batch[0] for batch in batches] == [0, *range(1000, 1200), *range(1, 300)]
    with pytest.raises(CycleError):
        graph.add_edge(299, 1100)


# ---------------------------------------------------------------------- reading


def test_batches_are_kahn_levels_ordered_by_priority_then_remaining_path_then_id() -> None:
    graph = DependencyGraph()
    graph.add_task(1)
    graph.add_task(2, priority=-1)
    graph.add_task(3, estimate=5)
    graph.add_task(4)
    graph.add_task(5)
    graph.add_task(6)
    graph.add_edge(1, 5)
    graph.add_edge(4, 6, "soft")
    assert graph.batches() == [[2, 3, 1, 4], [5, 6]]


def test_soft_edges_order_batches_but_do_not_block() -> None:
    graph = graph_of(1, 2, 3)
    graph.add_edge(1, 3, "soft")
    graph.add_edge(2, 3)
    assert graph.batches() == [[1, 2], [3]]
    assert graph.predecessors(3) == [1, 2]
    assert graph.predecessors(3, "hard") == [2]
    assert graph.predecessors(3, "soft") == [1]
    assert graph.successors(1) == [3]


def test_remaining_and_critical_path_by_estimates() -> None:
    # 1(2) -> 2(3) -> 4(1); 1 -> 3(1) -> 4; 5(4) alone
    graph = graph_of((1, 2), (2, 3), (3, 1), (4, 1), (5, 4), edges=[(1, 2), (1, 3), (2, 4), (3, 4)])
    assert graph.remaining_path() == {1: 6.0, 2: 4.0, 3: 2.0, 4: 1.0, 5: 4.0}
    critical = graph.critical_path()
    assert critical.tasks == [1, 2, 4]
    assert critical.length == 6.0


def test_an_empty_graph_has_no_batches_and_an_empty_critical_path() -> None:
    graph = DependencyGraph()
    assert graph.batches() == []
    assert graph.critical_path().tasks == []
    assert graph.critical_path().length == 0.0
    assert len(graph) == 0


def test_accessors_list_tasks_and_edges() -> None:
    graph = DependencyGraph()
    graph.add_epic(4)
    graph.add_task(1, priority=2, estimate=3, epic=4)
    graph.add_task(2)
    graph.add_edge(1, 2, "soft")
    assert graph.tasks() == [TaskNode(1, 2, 3.0, 4), TaskNode(2, 0, 1.0, None)]
    assert graph.edges() == [Edge(1, 2, "soft")]
    assert graph.has_edge(1, 2)
    assert not graph.has_edge(2, 1)


# ---------------------------------------------------------------------- epics


def epic_graph() -> DependencyGraph:
    """Epic 1 = tasks 10, 11; epic 2 = tasks 20, 21; epic 3 = task 30; epic 2 depends on epic 1."""
    graph = DependencyGraph()
    for epic in (1, 2, 3):
        graph.add_epic(epic)
    for task, epic in ((10, 1), (11, 1), (20, 2), (21, 2), (30, 3)):
        graph.add_task(task, epic=epic)
    graph.add_epic_edge(1, 2)
    return graph


def test_an_epic_dependency_puts_every_task_of_one_epic_after_every_task_of_the_other() -> None:
    graph = epic_graph()
    assert graph.batches() == [[10, 11, 30], [20, 21]]
    assert graph.predecessors(20) == [10, 11]
    assert graph.successors(11) == [20, 21]
    assert graph.edges() == []
    assert graph.epic_edges() == [Edge(1, 2)]
    assert graph.remaining_path()[10] == 2.0
    assert graph.critical_path().length == 2.0


def test_a_task_joining_an_epic_later_inherits_its_dependencies() -> None:
    graph = epic_graph()
    graph.add_task(12, estimate=4, epic=1)
    assert graph.predecessors(21) == [10, 11, 12]
    assert graph.critical_path().tasks == [12, 20]


def test_an_epic_cycle_names_the_epics() -> None:
    graph = epic_graph()
    graph.add_epic_edge(2, 3)
    with pytest.raises(CycleError) as caught:
        graph.add_epic_edge(3, 1)
    assert caught.value.cycle == [1, 2, 3, 1]
    assert caught.value.field == "epic_depends_on"


def test_a_task_edge_against_the_epic_order_names_the_tasks() -> None:
    graph = epic_graph()
    with pytest.raises(CycleError) as caught:
        graph.add_edge(21, 10)
    assert caught.value.cycle == [10, 21, 10]
    assert caught.value.field == "depends_on"


def test_an_empty_epic_still_passes_its_dependencies_on() -> None:
    graph = epic_graph()
    graph.add_epic(4)
    graph.add_epic_edge(2, 4)
    graph.add_epic_edge(4, 3)
    assert graph.predecessors(30) == [20, 21]
    assert graph.batches() == [[10, 11], [20, 21], [30]]


def test_a_soft_epic_dependency_makes_soft_task_dependencies() -> None:
    graph = epic_graph()
    graph.add_epic_edge(2, 3, "soft")
    assert graph.predecessors(30, "soft") == [20, 21]
    assert graph.predecessors(30, "hard") == []
    assert graph.predecessors(20, "hard") == [10, 11]


def test_epic_errors_name_the_epic() -> None:
    graph = epic_graph()
    with pytest.raises(NotFound, match="epic 9 does not exist"):
        graph.add_epic_edge(1, 9)
    with pytest.raises(NotFound, match="epic 9 does not exist"):
        graph.add_task(99, epic=9)
    assert 99 not in graph
    with pytest.raises(InvalidInput, match="epic 2 cannot depend on itself"):
        graph.add_epic_edge(2, 2)
    with pytest.raises(InvalidInput, match=r"epic 2 already depends on epic 1 \(hard\)"):
        graph.add_epic_edge(1, 2)
    with pytest.raises(InvalidInput, match="epic 1 is already in the graph"):
        graph.add_epic(1)


def test_removing_an_epic_dependency() -> None:
    graph = epic_graph()
    graph.remove_epic_edge(1, 2)
    assert graph.batches() == [[10, 11, 20, 21, 30]]
    with pytest.raises(NotFound, match="epic 2 does not depend on epic 1"):
        graph.remove_epic_edge(1, 2)


# ---------------------------------------------------------------------- validating a whole plan


def test_validate_reports_every_broken_edge_and_keeps_the_rest() -> None:
    report = DependencyGraph.validate(
        [TaskNode(1), TaskNode(2), TaskNode(3)],
        [Edge(1, 2), Edge(2, 3), Edge(3, 1), Edge(2, 2), Edge(1, 2), Edge(1, 42), Edge(1, 3, "medium")],  # type: ignore[arg-type]
    )
    assert not report.ok
    assert [(i.problem, i.edge) for i in report.issues] == [
        ("cycle", Edge(3, 1)),
        ("self_dependency", Edge(2, 2)),
        ("duplicate", Edge(1, 2)),
        ("unknown", Edge(1, 42)),
        ("invalid_kind", Edge(1, 3, "medium")),  # type: ignore[arg-type]
    ]
    assert report.cycles == [[1, 2, 3, 1]]
    assert "task 42 does not exist" in report.issues[3].message


def test_validate_checks_epic_dependencies() -> None:
    report = DependencyGraph.validate(
        [TaskNode(1, epic=1), TaskNode(2, epic=2)],
        [Edge(2, 1)],
        epics=[3],
        epic_edges=[Edge(1, 2), Edge(2, 3), Edge(3, 1), Edge(1, 8)],
    )
    assert [(i.problem, i.epic_edge, i.field) for i in report.issues] == [
        ("cycle", True, "epic_depends_on"),
        ("unknown", True, None),
        ("cycle", False, "depends_on"),
    ]
    assert report.cycles == [[1, 2, 3, 1], [1, 2, 1]]


def test_validate_accepts_a_sound_plan() -> None:
    report = DependencyGraph.validate([TaskNode(1), TaskNode(2)], [Edge(1, 2, "soft")])
    assert report.ok
    assert report.issues == []
