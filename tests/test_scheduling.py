"""The scheduling simulator: batch barrier, dynamic pull by remaining path, and the lower bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.errors import InvalidInput
from coordinator.graph import DependencyGraph
from coordinator.scheduling import barrier_makespan, lower_bound, pull_makespan


def crossed() -> DependencyGraph:
    """A(3) -> C(1) and B(1) -> D(3): batches [A, B], [C, D]."""
    graph = DependencyGraph()
    for task, estimate in (("A", 3), ("B", 1), ("C", 1), ("D", 3)):
        graph.add_task(ord(task), estimate=estimate)
    graph.add_edge(ord("A"), ord("C"))
    graph.add_edge(ord("B"), ord("D"))
    return graph


def estimates(graph: DependencyGraph) -> dict[int, float]:
    return {task.id: task.estimate for task in graph.tasks()}


def test_the_barrier_waits_for_the_slowest_task_of_each_batch() -> None:
    graph = crossed()
    assert barrier_makespan(graph.batches(), estimates(graph), agents=2) == 6.0  # 3 + 3
    assert barrier_makespan(graph.batches(), estimates(graph), agents=1) == 8.0


def test_pulling_by_remaining_path_overlaps_the_batches() -> None:
    graph = crossed()
    # t=0 A and B start; t=1 B ends, D starts; t=3 A ends, C starts; both end at t=4
    assert pull_makespan(graph, agents=2) == 4.0
    assert pull_makespan(graph, agents=1) == 8.0
    assert lower_bound(graph, agents=2) == 4.0


def test_pull_takes_the_longest_remaining_path_first() -> None:
    graph = DependencyGraph()
    for task, estimate in ((1, 1), (2, 1), (3, 1), (4, 5)):
        graph.add_task(task, estimate=estimate)
    graph.add_edge(3, 4)
    # 3 (remaining 6) and 1 start; at t=1, 4 and 2 start; 4 ends at 6. Taking 1 and 2 first would end at 7.
    assert pull_makespan(graph, agents=2) == 6.0
    assert graph.batches() == [[3, 1, 2], [4]]
    assert barrier_makespan(graph.batches(), estimates(graph), agents=2) == 7.0


def test_list_scheduling_within_one_batch() -> None:
    graph = DependencyGraph()
    for task, estimate in ((1, 3), (2, 2), (3, 2), (4, 1)):
        graph.add_task(task, estimate=estimate)
    assert graph.batches() == [[1, 2, 3, 4]]
    assert barrier_makespan(graph.batches(), estimates(graph), agents=2) == 4.0
    assert pull_makespan(graph, agents=2) == 4.0
    assert lower_bound(graph, agents=2) == 4.0
    assert lower_bound(graph, agents=8) == 3.0


def test_soft_dependencies_do_not_make_anyone_wait() -> None:
    graph = DependencyGraph()
    graph.add_task(1, estimate=2)
    graph.add_task(2, estimate=2)
    graph.add_edge(1, 2, "soft")
    assert pull_makespan(graph, agents=2) == 2.0
    assert lower_bound(graph, agents=2) == 2.0
    assert barrier_makespan(graph.batches(), estimates(graph), agents=2) == 4.0


def test_epic_dependencies_make_tasks_wait() -> None:
    graph = DependencyGraph()
    graph.add_epic(1)
    graph.add_epic(2)
    for task, epic in ((1, 1), (2, 1), (3, 2), (4, 2)):
        graph.add_task(task, estimate=task, epic=epic)
    graph.add_epic_edge(1, 2)
    assert pull_makespan(graph, agents=4) == 6.0  # 2, then 4
    assert lower_bound(graph, agents=4) == 6.0


def test_given_durations_replace_the_estimates() -> None:
    graph = crossed()
    durations = {ord("A"): 1.0, ord("B"): 1.0, ord("C"): 1.0, ord("D"): 1.0}
    assert pull_makespan(graph, agents=2, durations=durations) == 2.0
    assert lower_bound(graph, agents=1, durations=durations) == 4.0


def test_bad_arguments_are_invalid_input() -> None:
    graph = crossed()
    with pytest.raises(InvalidInput) as caught:
        pull_makespan(graph, agents=0)
    assert caught.value.field == "agents"
    with pytest.raises(InvalidInput, match="agents"):
        barrier_makespan([[1]], {1: 1.0}, agents=0)
    with pytest.raises(InvalidInput) as caught:
        lower_bound(graph, agents=1, durations={ord("A"): -1.0})
    assert caught.value.field == "durations"


def test_nothing_to_do_takes_no_time() -> None:
    graph = DependencyGraph()
    assert (pull_makespan(graph, 3), lower_bound(graph, 3), barrier_makespan([], {}, 3)) == (0.0, 0.0, 0.0)


@st.composite
def random_graphs(draw: st.DrawFn) -> DependencyGraph:
    count = draw(st.integers(1, 20))
    graph = DependencyGraph()
    for task in range(count):
        graph.add_task(task, estimate=draw(st.sampled_from([0.5, 1.0, 2.0, 4.0])))
    for a, b, hard in draw(
        st.lists(st.tuples(st.integers(0, count - 1), st.integers(0, count - 1), st.booleans()))
    ):
        if a < b and not graph.has_edge(a, b):
            graph.add_edge(a, b, "hard" if hard else "soft")
    return graph


@given(random_graphs(), st.integers(1, 5))
def test_no_schedule_beats_the_lower_bound_and_one_agent_works_serially(
    graph: DependencyGraph, agents: int
) -> None:
    bound = lower_bound(graph, agents)
    serial = sum(estimates(graph).values())
    assert pull_makespan(graph, agents) >= bound - 1e-9
    assert barrier_makespan(graph.batches(), estimates(graph), agents) >= bound - 1e-9
    assert pull_makespan(graph, 1) == pytest.approx(serial)
    assert barrier_makespan(graph.batches(), estimates(graph), 1) == pytest.approx(serial)
