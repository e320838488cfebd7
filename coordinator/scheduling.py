"""Discrete-event simulation of k agents working through a dependency graph."""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from coordinator.errors import InvalidInput
from coordinator.graph import DependencyGraph


def barrier_makespan(batches: Sequence[Sequence[int]], durations: Mapping[int, float], agents: int) -> float:
    """Finish time when batch n+1 starts only after every task of batch n has finished.

    Inside a batch the tasks go, in the order given, to whichever agent is free first.
    """
    _check_agents(agents)
    total = 0.0
    for batch in batches:
        free_at = [0.0] * min(agents, len(batch))
        for task in batch:
            heapq.heappush(free_at, heapq.heappop(free_at) + durations[task])
        total += max(free_at, default=0.0)
    return total


def pull_makespan(graph: DependencyGraph, agents: int, durations: Mapping[int, float] | None = None) -> float:
    """Finish time when every idle agent takes the ready task with the longest remaining path.

    A task is ready once its hard dependencies have finished; soft ones only shape the order
    through the remaining path (computed from the estimates, as a real claim would be).
    """
    _check_agents(agents)
    took = _durations(graph, durations)
    remaining = graph.remaining_path()
    successors = {task: graph.successors(task, "hard") for task in took}
    waiting = {task: len(graph.predecessors(task, "hard")) for task in took}
    ready = [(-remaining[task], task) for task, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < agents:
            task = heapq.heappop(ready)[1]
            heapq.heappush(running, (now + took[task], task))
        now = running[0][0]
        while running and running[0][0] == now:
            for successor in successors[heapq.heappop(running)[1]]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    heapq.heappush(ready, (-remaining[successor], successor))
    return now


def lower_bound(graph: DependencyGraph, agents: int, durations: Mapping[int, float] | None = None) -> float:
    """No schedule can beat max(longest chain of hard dependencies, total work / agents)."""
    _check_agents(agents)
    took = _durations(graph, durations)
    finish: dict[int, float] = {}
    for batch in graph.batches():  # batches list every task after all of its predecessors
        for task in batch:
            before = graph.predecessors(task, "hard")
            finish[task] = took[task] + max((finish[p] for p in before), default=0.0)
    return max(max(finish.values(), default=0.0), sum(took.values()) / agents)


def _durations(graph: DependencyGraph, durations: Mapping[int, float] | None) -> dict[int, float]:
    """Per task: the given duration, or its estimate when none is given."""
    given = durations or {}
    took = {task.id: float(given.get(task.id, task.estimate)) for task in graph.tasks()}
    negative = [task for task, seconds in took.items() if not seconds >= 0.0]
    if negative:
        raise InvalidInput(
            "durations",
            f"task {negative[0]} has duration {took[negative[0]]}",
            fix="give durations of 0 or more",
        )
    return took


def _check_agents(agents: int) -> None:
    if agents < 1:
        raise InvalidInput("agents", f"{agents} agents cannot work on anything", fix="use 1 or more agents")
