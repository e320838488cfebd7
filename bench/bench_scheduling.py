"""Makespan of a batch barrier against dynamic pull by remaining path, on several DAG shapes.

For each shape, k agents and seed, task durations are drawn at random (log-normal, fixed seeds).
Each figure is a makespan divided by the lower bound max(longest chain, total work / k) of the
same graph and durations, so 1.00 is optimal; figures are means over the seeds. "pull" orders by
remaining paths computed from exact estimates; "pull, rough" from estimates off by up to +-50%.
No wall-clock time is measured: the simulation is deterministic.

    python bench/bench_scheduling.py [--seeds N]
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.graph import DependencyGraph, Edge
from coordinator.scheduling import barrier_makespan, lower_bound, pull_makespan

AGENTS = (1, 2, 4, 8)


class Shape:
    """Tasks (with optional epics), task edges and epic edges, independent of durations."""

    def __init__(
        self, name: str, epics: Sequence[int | None], edges: list[Edge], epic_edges: Sequence[Edge] = ()
    ) -> None:
        self.name, self.epics, self.edges, self.epic_edges = name, epics, edges, list(epic_edges)

    def graph(self, estimates: list[float]) -> DependencyGraph:
        graph = DependencyGraph()
        for epic_id in sorted({e for e in self.epics if e is not None}):
            graph.add_epic(epic_id)
        for task, (epic, estimate) in enumerate(zip(self.epics, estimates, strict=True)):
            graph.add_task(task, estimate=estimate, epic=epic)
        for edge in self.epic_edges:
            graph.add_epic_edge(edge.before, edge.after)
        for edge in self.edges:
            graph.add_edge(edge.before, edge.after)
        return graph


def chain(rng: random.Random, n: int = 40) -> Shape:
    return Shape(f"chain of {n}", [None] * n, [Edge(t, t + 1) for t in range(n - 1)])


def fan(rng: random.Random, n: int = 40) -> Shape:
    middle = range(1, n + 1)
    return Shape(
        f"fan-out 1 -> {n} -> 1",
        [None] * (n + 2),
        [Edge(0, t) for t in middle] + [Edge(t, n + 1) for t in middle],
    )


def diamonds(rng: random.Random, count: int = 10) -> Shape:
    """Diamonds in series: top -> three sides -> bottom, each bottom the next top."""
    edges = []
    for d in range(count):
        top, bottom = 4 * d, 4 * d + 4
        edges += [Edge(top, side) for side in range(top + 1, top + 4)]
        edges += [Edge(side, bottom) for side in range(top + 1, top + 4)]
    return Shape(f"{count} diamonds in series", [None] * (4 * count + 1), edges)


def layered(rng: random.Random, layers: int = 10, width: int = 20) -> Shape:
    """`layers` layers of `width` tasks; each task after 2 random tasks of the 2 layers before it."""
    edges = {
        Edge(rng.randrange(max(0, layer - 2) * width, layer * width), layer * width + t)
        for layer in range(1, layers)
        for t in range(width)
        for _ in range(2)
    }
    n = layers * width
    return Shape(f"random layered, {n} tasks", [None] * n, sorted(edges, key=lambda e: (e.before, e.after)))


def app(rng: random.Random, sizes: tuple[int, int, int, int] = (6, 14, 14, 6), crossing: int = 4) -> Shape:
    """A 4-epic app: foundation before backend and frontend, both before release; inside each epic
    tasks follow 0-2 earlier ones; `crossing` frontend tasks wait for backend tasks (API before page)."""
    size_of = dict(enumerate(sizes))
    epics = [epic for epic, size in size_of.items() for _ in range(size)]
    start = {epic: epics.index(epic) for epic in size_of}
    edges: set[Edge] = set()
    for task, epic in enumerate(epics):
        earlier = range(start[epic], task)
        for before in rng.sample(earlier, k=min(len(earlier), rng.randint(0, 2))):
            edges.add(Edge(before, task))
    for _ in range(crossing):
        edges.add(Edge(rng.randrange(start[1], start[2]), rng.randrange(start[2], start[3])))
    epic_edges = [Edge(0, 1), Edge(0, 2), Edge(1, 3), Edge(2, 3)]
    return Shape(
        f"4-epic app plan, {len(epics)} tasks",
        epics,
        sorted(edges, key=lambda e: (e.before, e.after)),
        epic_edges,
    )


SHAPES: list[Callable[[random.Random], Shape]] = [chain, fan, diamonds, layered, app]


def ratios(make: Callable[[random.Random], Shape], agents: int, seed: int) -> tuple[float, float, float]:
    """(barrier / bound, pull / bound, rough pull / bound) for one seed."""
    rng = random.Random(seed)
    shape = make(rng)
    durations = [rng.lognormvariate(0.0, 0.6) for _ in shape.epics]
    exact = shape.graph(durations)
    rough = shape.graph([d * rng.uniform(0.5, 1.5) for d in durations])
    took = dict(enumerate(durations))
    bound = lower_bound(exact, agents, took)
    return (
        barrier_makespan(exact.batches(), took, agents) / bound,
        pull_makespan(exact, agents, took) / bound,
        pull_makespan(rough, agents, took) / bound,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    command = "python bench/bench_scheduling.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"`{command.strip()}`\n")
    print(f"Makespan / lower bound, mean over {args.seeds} seeds (1.00 = optimal; lower is better).\n")
    print("| shape | tasks | agents | batch barrier | pull by remaining path | pull, rough estimates |")
    print("|---|---|---|---|---|---|")
    for make in SHAPES:
        for agents in AGENTS:
            runs = [ratios(make, agents, seed) for seed in range(args.seeds)]
            barrier, pull, rough = (statistics.mean(run[i] for run in runs) for i in range(3))
            shape = make(random.Random(0))
            print(
                f"| {shape.name} | {len(shape.epics)} | {agents} | {barrier:.2f} | {pull:.2f} | {rough:.2f} |"
            )


if __name__ == "__main__":
    main()
