"""The dependency graph at scale: a random layered DAG of 100,000 tasks and 300,000 hard edges.

Measures, in one run: building the graph; batches + critical path + remaining-path keys; adding
random edges one at a time with the cycle check (accepted or rejected); the peak memory of the
process. The floor is one plain pass over the edge list building adjacency lists, timed in the
same run, so the ratios hold on a noisy machine; the input edge list is frozen out of the garbage
collector's passes, which the graph's own objects are not. For contrast it also times the check a naive
implementation would do per edge: one depth-first search from `after` over the whole graph.

    python bench/bench_graph.py [--tasks N] [--edges M] [--layers L] [--probes P] [--seed S]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.errors import CycleError
from coordinator.graph import DependencyGraph

TARGETS = {"analysis": 2.0, "add_edge_median": 0.005, "peak_mb": 500.0}


def layered_edges(tasks: int, edges: int, layers: int, rng: random.Random) -> list[tuple[int, int]]:
    """Distinct edges from a task of layer i to one of layers i+1..i+3 (ids are layer-major)."""
    width = tasks // layers
    found: set[tuple[int, int]] = set()
    while len(found) < edges:
        layer = rng.randrange(layers - 1)
        target = rng.randrange(layer + 1, min(layer + 4, layers))
        found.add((layer * width + rng.randrange(width), target * width + rng.randrange(width)))
    edge_list = list(found)
    rng.shuffle(edge_list)
    return edge_list


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def adjacency(tasks: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    succ: list[list[int]] = [[] for _ in range(tasks)]
    for before, after in edges:
        succ[before].append(after)
    return succ


def naive_reaches(succ: list[list[int]], start: int, goal: int) -> bool:
    """Plain iterative DFS over the whole graph, as a per-edge check without an order would do."""
    seen, stack = {start}, [start]
    while stack:
        for node in succ[stack.pop()]:
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                stack.append(node)
    return False


def build(tasks: int, edges: list[tuple[int, int]], rng: random.Random) -> DependencyGraph:
    graph = DependencyGraph()
    for task in range(tasks):
        graph.add_task(task, priority=rng.randrange(3), estimate=rng.choice((0.5, 1.0, 2.0, 3.0)))
    for before, after in edges:
        graph.add_edge(before, after)
    return graph


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=300_000)
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)

    edges = layered_edges(args.tasks, args.edges, args.layers, rng)
    gc.collect()
    gc.freeze()  # the input edge list is the benchmark's, not the graph's: keep it out of GC passes
    floor = min(timed(lambda: adjacency(args.tasks, edges)) for _ in range(3))
    start = time.perf_counter()
    graph = build(args.tasks, edges, rng)
    build_seconds = time.perf_counter() - start
    analysis = timed(lambda: (graph.batches(), graph.critical_path(), graph.remaining_path()))
    batches, critical = len(graph.batches()), graph.critical_path()

    probe_times: list[float] = []
    against: list[float] = []  # edges from a layer to the same or an earlier one: these need a search
    accepted = rejected = 0
    width = args.tasks // args.layers
    while len(probe_times) < args.probes:
        before, after = rng.randrange(args.tasks), rng.randrange(args.tasks)
        if before == after or graph.has_edge(before, after):
            continue
        start = time.perf_counter()
        try:
            graph.add_edge(before, after)
            accepted += 1
        except CycleError:
            rejected += 1
        probe_times.append(time.perf_counter() - start)
        if before // width >= after // width:
            against.append(probe_times[-1])
    probe_times.sort()
    against_median = statistics.median(against)
    median = statistics.median(probe_times)
    p99 = probe_times[min(len(probe_times) - 1, int(len(probe_times) * 0.99))]

    succ = adjacency(args.tasks, edges)
    naive = statistics.median(
        timed(lambda: naive_reaches(succ, rng.randrange(args.tasks), -1)) for _ in range(20)
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def verdict(value: float, target: float, unit: str) -> str:
        return f"< {target:g} {unit}: {'met' if value < target else 'MISSED'}"

    command = "python bench/bench_graph.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"`{command.strip()}`\n")
    print(
        f"Random layered DAG: {args.tasks:,} tasks in {args.layers} layers, {len(edges):,} hard edges "
        f"(each to one of the next 3 layers); {batches} batches, critical path of "
        f"{len(critical.tasks)} tasks (length {critical.length:g}).\n"
    )
    print("| measure | time | ratio to floor | target |")
    print("|---|---|---|---|")
    print(f"| floor: one pass over the edge list building adjacency lists | {floor:.3f} s | 1.0 | |")
    print(
        f"| build: {args.tasks:,} add_task + {len(edges):,} add_edge (each cycle-checked) "
        f"| {build_seconds:.2f} s | {build_seconds / floor:.1f} | |"
    )
    print(
        f"| batches + critical path + remaining-path keys | {analysis:.3f} s | {analysis / floor:.1f} "
        f"| {verdict(analysis, TARGETS['analysis'], 's')} |"
    )
    print(
        f"| add_edge with cycle check, median of {args.probes} random edges "
        f"({accepted} accepted, {rejected} rejected as cycles) | {median * 1e3:.3f} ms "
        f"| {median / floor:.5f} | {verdict(median * 1e3, TARGETS['add_edge_median'] * 1e3, 'ms')} |"
    )
    print(
        f"| add_edge with cycle check, median of the {len(against)} edges against the layer order "
        f"| {against_median * 1e3:.3f} ms | {against_median / floor:.5f} | |"
    )
    print(f"| add_edge with cycle check, p99 | {p99 * 1e3:.3f} ms | {p99 / floor:.5f} | |")
    worst = probe_times[-1]
    print(f"| add_edge with cycle check, max | {worst * 1e3:.3f} ms | {worst / floor:.5f} | |")
    print(
        f"| for contrast: one plain DFS over the whole graph (median of 20) "
        f"| {naive * 1e3:.1f} ms | {naive / floor:.3f} | |"
    )
    print(
        f"| peak memory of the process (RSS) | {peak_mb:.0f} MB | | {verdict(peak_mb, TARGETS['peak_mb'], 'MB')} |"
    )


if __name__ == "__main__":
    main()
