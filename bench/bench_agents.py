"""Sim agents through the real server on the scheduling suite's DAG shapes: makespan against the bound.

For each shape and k agents: a fresh temporary git repository and SQLite database, the shape
imported as a plan (estimates 1-3, drawn from a fixed seed; no predicted files, so no file
conflicts keep tasks apart and the schedule is the dependencies' alone), the HTTP server with the
merge queue on (a task is done, and its dependents ready, once its branch is merged into main),
and k sim agent processes launched through `launcher.team.launch`. A sim agent works a task for
estimate x --time-scale seconds, then commits in its worktree and completes the task.

The project is paused until every agent process has started and connected to the server (an
agent process takes about 3 s of CPU to start, mostly importing mcp, and 8 of them share 2 CPUs),
then resumed; the makespan runs from the first task_claimed event to the last task_merged event
of the store's log, so start-up is not in it. Beside it: the lower bound max(longest chain,
total work / k) x time scale and the pull-by-remaining-path makespan of coordinator.scheduling
(the simulation of bench/bench_scheduling.py) for the same graph and estimates. The shapes are
those of bench_scheduling scaled down to 16-24 tasks, so a run takes seconds. Linux only: the
gate and the CPU figures read /proc.

    python bench/bench_agents.py [--shapes chain,fan,diamonds,layered,app] [--agents 1,2,4,8]
                                 [--time-scale S] [--repeats N] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_scheduling as scheduling  # the scheduling suite's shapes (bench/ is on the path)
from bench_scheduling import Shape

from coordinator.config import Config
from coordinator.context import OPERATOR
from coordinator.graph import DependencyGraph
from coordinator.scheduling import lower_bound, pull_makespan
from coordinator.service import Coordinator
from launcher.demo import all_events, make_repository
from launcher.embedded_server import embedded_server
from launcher.mcp_client import OPERATOR_PATH, AgentClient
from launcher.runners.sim import SimOptions, SimRunner
from launcher.team import LaunchSettings, launch

PROJECT = "bench-agents"
CONNECT_TIMEOUT_SECONDS = 120.0

# --------------------------------------------------------------------- the shapes, scaled down

# bench_scheduling's shapes at sizes that take seconds, not minutes, with real agents.
SHAPES: dict[str, Callable[[random.Random], Shape]] = {
    "chain": partial(scheduling.chain, n=16),
    "fan": partial(scheduling.fan, n=16),
    "diamonds": partial(scheduling.diamonds, count=5),
    "layered": partial(scheduling.layered, layers=4, width=6),
    "app": partial(scheduling.app, sizes=(3, 7, 7, 3), crossing=2),
}


@dataclass(frozen=True)
class Workload:
    """A shape with its estimates (whole units of 1-3), as a graph and as a plan file."""

    shape: Shape
    estimates: list[int]

    @classmethod
    def make(cls, name: str, seed: int) -> Workload:
        rng = random.Random(seed)
        shape = SHAPES[name](rng)
        return cls(shape, [rng.choice((1, 2, 3)) for _ in shape.epics])

    @property
    def tasks(self) -> int:
        return len(self.estimates)

    def graph(self) -> DependencyGraph:
        return self.shape.graph([float(e) for e in self.estimates])

    def plan(self) -> tuple[str, dict[str, int]]:
        """The plan file (JSON) and, per plan path, the shape's task index."""
        epic_keys: list[int | None] = [*sorted({e for e in self.shape.epics if e is not None})] or [None]
        after = {task: [e.before for e in self.shape.edges if e.after == task] for task in range(self.tasks)}
        epics: list[dict[str, Any]] = []
        paths: dict[str, int] = {}
        for position, epic in enumerate(epic_keys):
            tasks: list[dict[str, Any]] = []
            for task in (t for t in range(self.tasks) if self.shape.epics[t] == epic):
                paths[f"epics[{position}].tasks[{len(tasks)}]"] = task
                tasks.append(
                    {
                        "key": f"t{task}",
                        "title": f"Task {task}",
                        "estimate": self.estimates[task],
                        "depends_on": [f"t{before}" for before in after[task]],
                    }
                )
            epics.append(
                {
                    "key": "work" if epic is None else f"e{epic}",
                    "name": "Work" if epic is None else f"Epic {epic}",
                    "depends_on": [f"e{e.before}" for e in self.shape.epic_edges if e.after == epic],
                    "tasks": tasks,
                }
            )
        return json.dumps({"project": PROJECT, "epics": epics}), paths


# --------------------------------------------------------------------- holding the work back


def _agent_processes() -> list[int]:
    """Pids of this process's children that run `launcher.agent_process`."""
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"launcher.agent_process" in Path(entry.path, "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _connected(pids: list[int], port: int) -> int:
    """How many of these processes hold an established TCP connection to 127.0.0.1:port."""
    sockets = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].split(":")[1], 16) == port:
            sockets.add(f"socket:[{fields[9]}]")
    count = 0
    for pid in pids:
        try:
            links = {os.readlink(fd.path) for fd in os.scandir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        count += bool(links & sockets)
    return count


TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CPUS = os.cpu_count() or 1


def _process_cpu(pid: int | str) -> tuple[float, float]:
    """CPU seconds of a process (utime + stime) and of the children it has reaped (cutime + cstime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return (int(fields[11]) + int(fields[12])) / TICK, (int(fields[13]) + int(fields[14])) / TICK


@dataclass(frozen=True)
class Sample:
    """CPU seconds used so far by the whole machine (all CPUs), by this process (the server and the
    bench), by its reaped children (the merge queue's git commands, agents that have exited) and by
    each live agent process (with its reaped git commands)."""

    at: float
    machine: float
    own: float
    children: float
    agents: dict[int, float]

    @classmethod
    def take(cls) -> Sample:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        own, children = _process_cpu("self")
        agents = {pid: sum(_process_cpu(pid)) for pid in _agent_processes()}
        return cls(time.time(), (sum(values) - idle) / TICK, own, children, agents)

    def run_cpu_since(self, first: Sample) -> float:
        """CPU seconds this run used from `first` to here. An agent that exited meanwhile has its
        whole life in `children` now, so what it had used by `first` is taken off."""
        agents = sum(self.agents.get(pid, 0.0) - used for pid, used in first.agents.items())
        return self.own - first.own + self.children - first.children + agents


@dataclass
class Gate:
    """Keeps the project paused until all k agent processes are connected, then resumes it; meanwhile
    samples CPU use (the launcher calls `watch` about every 0.5 s)."""

    url: str
    config: Config
    port: int
    agents: int
    started: float = field(default_factory=time.time)
    opened_at: float | None = None
    samples: list[Sample] = field(default_factory=list)

    async def watch(self, operator: AgentClient, status: dict[str, Any]) -> None:
        if self.opened_at is None:
            if _connected(_agent_processes(), self.port) < self.agents:
                if time.time() - self.started > CONNECT_TIMEOUT_SECONDS:
                    raise RuntimeError(
                        f"{self.agents} agents did not connect in {CONNECT_TIMEOUT_SECONDS:g} s"
                    )
                return
            self.samples.append(Sample.take())
            coord = await Coordinator.open(self.url, self.config)
            try:
                await coord.planning.set_project_status(OPERATOR, project=PROJECT, status="active")
            finally:
                await coord.close()
            self.opened_at = time.time()
            # Any planning call through the server wakes the agents' waiting claims at once.
            await operator.call("build_execution_plan")
        else:
            self.samples.append(Sample.take())

    def busy(self, start: float, end: float) -> tuple[float, float] | None:
        """Share of all CPUs used by this run and by the machine, from the last sample before `start`
        to the first after `end`."""
        before = [s for s in self.samples if s.at <= start]
        after = [s for s in self.samples if s.at >= end]
        if not before or not after or after[0].at <= before[-1].at:
            return None
        first, last = before[-1], after[0]
        capacity = CPUS * (last.at - first.at)
        return last.run_cpu_since(first) / capacity, (last.machine - first.machine) / capacity


# --------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Run:
    makespan: float  # first claim to last merge, seconds
    startup: float  # launch to all agents connected
    cpu_busy: tuple[float, float] | None  # share of all CPUs: this run's processes, the whole machine
    dispatch: list[float]  # per task: ready (dependencies merged) and an agent free -> claimed by it
    branch: list[float]  # per task: claimed -> branch ready (the server's git work)
    agent: list[float]  # per task: branch ready -> completed, less the simulated work
    merge: list[float]  # per task: completed -> merged


async def run_once(work: Workload, agents: int, time_scale: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="yokeflow-bench-agents-") as name:
        folder = Path(name)
        repo = await make_repository(folder / "app")
        url = f"sqlite:///{folder / 'coordinator.db'}"
        config = Config()
        text, paths = work.plan()
        coord = await Coordinator.open(url, config, repo=repo)
        try:
            imported = await coord.plans.import_plan(OPERATOR, text)
            await coord.planning.set_project_status(OPERATOR, project=PROJECT, status="paused")
        finally:
            await coord.close()
        index = {task_id: paths[path] for path, task_id in imported.task_ids.items()}
        settings = LaunchSettings(
            runner=SimRunner(SimOptions(time_scale=time_scale)),
            personas=["implementer"] * agents,
            log_dir=folder / "logs",
        )
        async with embedded_server(url, config, repo=repo) as base:
            gate = Gate(url, config, urlsplit(base).port or 0, agents)
            report = await launch(base, settings, asyncio.Event(), watch=gate.watch)
            async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
                events = await all_events(operator)
    if not report.ok or report.status["tasks"].get("done") != work.tasks:
        raise RuntimeError(
            f"{work.shape.name}, {agents} agents: the run did not finish: {report.status['tasks']}"
        )
    at: dict[str, dict[int, float]] = {"task_claimed": {}, "task_branch_ready": {}, "task_completed": {}}
    merged: dict[int, float] = {}
    claimed_by: dict[int, int] = {}
    done_by: dict[int, list[float]] = {}  # per agent: when it completed each of its tasks
    for event in events:
        kind, task = event["kind"], int(event.get("task_id") or 0)
        if kind in at:
            at[kind].setdefault(task, event["created_at"])
        if kind == "task_claimed":
            claimed_by.setdefault(task, event["agent_id"])
        elif kind == "task_completed":
            done_by.setdefault(event["agent_id"], []).append(event["created_at"])
        elif kind == "task_merged":
            merged[task] = event["created_at"]
    claimed, ready, completed = at["task_claimed"], at["task_branch_ready"], at["task_completed"]
    if len(merged) != work.tasks or len(claimed) != work.tasks:
        raise RuntimeError(f"{work.shape.name}, {agents} agents: {len(merged)} of {work.tasks} tasks merged")
    assert gate.opened_at is not None
    opened, graph = gate.opened_at, work.graph()
    task_id = {position: task for task, position in index.items()}
    dispatch = []
    for task, at_claim in claimed.items():
        before = [merged[task_id[p]] for p in graph.predecessors(index[task], "hard")]
        free = [t for t in done_by.get(claimed_by[task], []) if t <= at_claim]
        dispatch.append(at_claim - max([opened, *before, *free]))
    first, last = min(claimed.values()), max(merged.values())
    return Run(
        makespan=last - first,
        startup=opened - gate.started,
        cpu_busy=gate.busy(first, last),
        dispatch=dispatch,
        branch=[ready[t] - claimed[t] for t in claimed if t in ready],
        agent=[
            completed[t] - ready.get(t, claimed[t]) - work.estimates[index[t]] * time_scale for t in completed
        ],
        merge=[merged[t] - completed[t] for t in completed],
    )


# --------------------------------------------------------------------- the report


def _ints(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",")})
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers of 1 or more, comma-separated")
    return values


def _shapes(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",")]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown shape {unknown[0]!r}; choose from {', '.join(SHAPES)}")
    return names


def _ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.0f}" if values else "-"


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


async def amain(args: argparse.Namespace, command: str, git: str) -> None:
    load_start, began = _load(), time.monotonic()
    rows, details = [], []
    for name in args.shapes:
        work = Workload.make(name, args.seed)
        graph = work.graph()
        chain_tasks = len(graph.critical_path().tasks)
        base: float | None = None
        for agents in args.agents:
            runs = []
            for repeat in range(args.repeats):
                run = await run_once(work, agents, args.time_scale)
                runs.append(run)
                print(
                    f"{work.shape.name}, {agents} agents, repeat {repeat + 1}: makespan {run.makespan:.2f} s "
                    f"(start-up {run.startup:.1f} s)",
                    file=sys.stderr,
                )
            bound = lower_bound(graph, agents) * args.time_scale
            simulated = pull_makespan(graph, agents) * args.time_scale
            serial = pull_makespan(graph, 1) * args.time_scale
            measured = statistics.median(r.makespan for r in runs)
            base = measured if base is None else base
            busy = [r.cpu_busy for r in runs if r.cpu_busy is not None]
            cpu = (
                f"{100 * statistics.median(b[0] for b in busy):.0f}% / "
                f"{100 * statistics.median(b[1] for b in busy):.0f}%"
                if busy
                else "-"
            )
            excess = measured - simulated
            speedup = f"{base / measured:.2f}" if args.agents[0] == 1 else "-"
            rows.append(
                f"| {work.shape.name} | {work.tasks} ({chain_tasks}) | {agents} | {bound:.2f} s | "
                f"{simulated:.2f} s ({simulated / bound:.2f}) | {measured:.2f} s (**{measured / bound:.2f}**) | "
                f"{speedup} / {serial / simulated:.2f} | {1000 * excess / work.tasks:.0f} ms / "
                f"{1000 * excess / chain_tasks:.0f} ms | {cpu} |"
            )
            details.append(
                f"| {work.shape.name} | {agents} | {_ms([x for r in runs for x in r.dispatch])} | "
                f"{_ms([x for r in runs for x in r.branch])} | "
                f"{_ms([x for r in runs for x in r.agent])} | {_ms([x for r in runs for x in r.merge])} | "
                f"{statistics.median(r.startup for r in runs):.1f} s |"
            )
    print(f"`{command}`\n")
    print(
        f"- Python {platform.python_version()} on {platform.system()}, {os.cpu_count()} CPUs; git {git}; "
        f"load average {load_start} at the start, {_load()} at the end; "
        f"{time.monotonic() - began:.0f} s in all"
    )
    print(
        f"- time scale {args.time_scale:g} s per estimate unit; estimates 1-3 (seed {args.seed}); "
        f"{args.repeats} run(s) per row, medians\n"
    )
    print(
        "| shape | tasks (on the longest chain) | agents | lower bound | simulated pull (÷ bound) | "
        "measured (÷ bound) | speed-up over 1 agent, measured / simulated | "
        "(measured - simulated) / tasks, / tasks on the longest chain | "
        "CPUs used, by the run / by the machine |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\nPer task in ms, median over the tasks of every run of the row:\n")
    print(
        "| shape | agents | ready and an agent free → claimed | claimed → branch ready | "
        "branch ready → completed, beyond the work | completed → merged | "
        "start-up (launch to all agents connected) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(details))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=_shapes, default=list(SHAPES), help="comma-separated (default all)")
    parser.add_argument(
        "--agents", type=_ints, default=[1, 2, 4, 8], help="comma-separated (default 1,2,4,8)"
    )
    parser.add_argument("--time-scale", type=float, default=0.25, help="seconds per estimate unit (0.25)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per shape and k (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random shapes and the estimates")
    args = parser.parse_args(argv)
    if not args.time_scale > 0 or args.repeats < 1:
        parser.error("--time-scale must be above 0 and --repeats at least 1")
    command = "python bench/bench_agents.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    git = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    asyncio.run(amain(args, command.strip(), git))


if __name__ == "__main__":
    main()
