"""Properties of the dependency graph on random graphs, checked against networkx."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.errors import CycleError
from coordinator.graph import DependencyGraph, Kind


@dataclass
class RandomDag:
    graph: DependencyGraph
    reference: nx.DiGraph  # same tasks and edges; edge attribute "kind"
    estimates: dict[int, float]


@st.composite
def random_dags(draw: st.DrawFn, max_tasks: int = 25) -> RandomDag:
    """A DAG whose edges follow a hidden random order, added to the graph in random order."""
    count = draw(st.integers(1, max_tasks))
    order = draw(st.permutations(range(count)))
    estimates = {t: draw(st.sampled_from([0.5, 1.0, 2.0, 3.5])) for t in range(count)}
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, count - 1), st.integers(0, count - 1)), max_size=3 * count, unique=True
        )
    )
    kinds: list[Kind] = draw(
        st.lists(st.sampled_from(["hard", "soft"]), min_size=len(pairs), max_size=len(pairs))
    )
    graph, reference = DependencyGraph(), nx.DiGraph()
    for task in draw(st.permutations(range(count))):
        graph.add_task(task, priority=draw(st.integers(0, 2)), estimate=estimates[task])
        reference.add_node(task)
    for (a, b), kind in zip(pairs, kinds, strict=True):
        before, after = order[min(a, b)], order[max(a, b)]
        if before != after and not reference.has_edge(before, after):
            graph.add_edge(before, after, kind)
            reference.add_edge(before, after, kind=kind)
    return RandomDag(graph, reference, estimates)


@given(random_dags())
def test_every_batch_follows_all_its_hard_and_soft_predecessors(dag: RandomDag) -> None:
    batch_of = {task: n for n, batch in enumerate(dag.graph.batches()) for task in batch}
    assert sorted(batch_of) == sorted(dag.reference.nodes)
    for before, after in dag.reference.edges:
        assert batch_of[before] < batch_of[after]
    for task, level in batch_of.items():  # Kahn levels: as early as the predecessors allow
        assert level == max((batch_of[p] + 1 for p in dag.reference.predecessors(task)), default=0)


@given(random_dags(), st.data())
def test_an_edge_that_closes_a_cycle_is_rejected_and_changes_nothing(
    dag: RandomDag, data: st.DataObject
) -> None:
    closing = [(b, a) for a, b in dag.reference.edges] + [
        (b, a) for a in dag.reference for b in nx.descendants(dag.reference, a)
    ]
    if not closing:
        return
    before, after = data.draw(st.sampled_from(closing))
    edges, batches, remaining = dag.graph.edges(), dag.graph.batches(), dag.graph.remaining_path()
    with pytest.raises(CycleError) as caught:
        dag.graph.add_edge(before, after, data.draw(st.sampled_from(["hard", "soft"])))
    cycle = caught.value.cycle
    assert cycle[0] == cycle[-1] == after and cycle[-2] == before
    assert all(dag.reference.has_edge(x, y) for x, y in itertools.pairwise(cycle[:-1]))
    assert (dag.graph.edges(), dag.graph.batches(), dag.graph.remaining_path()) == (edges, batches, remaining)


@given(random_dags())
def test_critical_path_length_is_the_longest_remaining_path_and_a_real_chain(dag: RandomDag) -> None:
    remaining = dag.graph.remaining_path()
    critical = dag.graph.critical_path()
    assert critical.length == max(remaining.values())
    assert critical.length == pytest.approx(sum(dag.estimates[t] for t in critical.tasks))
    assert all(dag.reference.has_edge(x, y) for x, y in itertools.pairwise(critical.tasks))


@given(random_dags())
def test_remaining_path_is_estimate_plus_the_longest_successor(dag: RandomDag) -> None:
    remaining = dag.graph.remaining_path()
    for task in dag.reference:
        after = [remaining[s] for s in dag.reference.successors(task)]
        assert remaining[task] == pytest.approx(dag.estimates[task] + max(after, default=0.0))
        if not after:
            assert remaining[task] == dag.estimates[task]


@settings(max_examples=60)
@given(
    st.integers(2, 30),
    st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29), st.booleans()), max_size=120),
)
def test_random_edges_are_accepted_exactly_when_networkx_finds_no_cycle(
    count: int, attempts: list[tuple[int, int, bool]]
) -> None:
    graph, reference = DependencyGraph(), nx.DiGraph()
    for task in range(count):
        graph.add_task(task)
        reference.add_node(task)
    for a, b, remove in attempts:
        before, after = a % count, b % count
        if before == after:
            continue
        if reference.has_edge(before, after):
            if remove:
                graph.remove_edge(before, after)
                reference.remove_edge(before, after)
            continue
        closes = nx.has_path(reference, after, before)
        try:
            graph.add_edge(before, after)
        except CycleError:
            assert closes
        else:
            assert not closes
            reference.add_edge(before, after)
    assert sorted((e.before, e.after) for e in graph.edges()) == sorted(reference.edges)


@st.composite
def epic_plans(draw: st.DrawFn) -> tuple[DependencyGraph, nx.DiGraph]:
    """Random epics (some empty), tasks, epic edges and task edges, with the expanded reference:
    every task of B after every task of A whenever epic B depends on A, even through empty epics."""
    epics = draw(st.integers(1, 5))
    tasks = draw(st.lists(st.one_of(st.none(), st.integers(0, epics - 1)), min_size=1, max_size=15))
    graph, epic_graph = DependencyGraph(), nx.DiGraph()
    for epic_id in range(epics):
        graph.add_epic(epic_id)
        epic_graph.add_node(epic_id)
    for task, epic in enumerate(tasks):
        graph.add_task(task, epic=epic)
    for a, b in draw(st.lists(st.tuples(st.integers(0, epics - 1), st.integers(0, epics - 1)), max_size=8)):
        if a != b and not epic_graph.has_edge(a, b) and not nx.has_path(epic_graph, b, a):
            graph.add_epic_edge(a, b)
            epic_graph.add_edge(a, b)
    reference = nx.DiGraph()
    reference.add_nodes_from(range(len(tasks)))
    for a, epic_a in enumerate(tasks):
        for b, epic_b in enumerate(tasks):
            if epic_a is not None and epic_b is not None and epic_b in nx.descendants(epic_graph, epic_a):
                reference.add_edge(a, b)
    for a, b in draw(st.lists(st.tuples(st.integers(0, len(tasks) - 1), st.integers(0, len(tasks) - 1)))):
        if a != b and not reference.has_edge(a, b):
            try:
                graph.add_edge(a, b)
            except CycleError:
                assert nx.has_path(reference, b, a)
            else:
                assert not nx.has_path(reference, b, a)
                reference.add_edge(a, b)
    return graph, reference


@given(epic_plans())
def test_epic_dependencies_order_batches_like_their_full_expansion(
    plan: tuple[DependencyGraph, nx.DiGraph],
) -> None:
    graph, reference = plan
    batch_of = {task: n for n, batch in enumerate(graph.batches()) for task in batch}
    closure = nx.transitive_closure_dag(reference)
    for before, after in closure.edges:
        assert batch_of[before] < batch_of[after]
    expanded = nx.DiGraph()
    expanded.add_nodes_from(reference)
    expanded.add_edges_from((p, task) for task in reference for p in graph.predecessors(task))
    assert set(nx.transitive_closure_dag(expanded).edges) == set(closure.edges)
