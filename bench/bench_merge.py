"""Merges per minute through the merge queue, beside the bare git work of the same merges.

Each measurement starts from a fresh temporary git repository (one commit on `main`) and a fresh
database: a project of 50 tasks, 4 agents with their worktrees, each agent claiming, committing
one file of its own in its worktree and completing task after task, until every task is
`merging` with its own branch (none of this is timed). The queue side then times
`coord.merges.drain()` until all of them are merged — with `parallel.test_command` unset (gate
off) and set to `true` (a trivial gate) — and checks that every task is `done` and `main` holds
every file. The floor works on a copy of the same repository made before the drain (the same
branches, the same objects) and does only the git work a merge needs, through
`coordinator.gitcli.Git`: `merge-tree --write-tree`, `commit-tree` and `update-ref` per branch,
and with the gate on also `checkout --detach` of the merge commit in a worktree and `sh -c true`
there. Pre-detection is timed per branch before the drain: `MergeEngine.predetect("main",
branch)` beside a bare `git merge-tree --write-tree main branch`, alternating. Queue and floor
runs alternate (their order flips each repeat); rates are medians over the repeats, the ratio
the median of the paired ratios.

    python bench/bench_merge.py [--backend sqlite|postgresql|both] [--branches N] [--repeats R]
                                [--agents A] [--profile]

`--profile` counts and times every git command the queue side starts (per merge, by command).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_claims import Database  # the same throwaway database (bench/ is on the path)

from coordinator.config import Config
from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.gitcli import Git, GitResult
from coordinator.planning import NewTask
from coordinator.records import TaskStatus
from coordinator.service import Coordinator
from coordinator.work import Claimed

IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}
GATES: dict[str, str | None] = {"off": None, "true": "true"}


class GitTally:
    """While on, every `Git.result` call is counted and timed under its git command."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.merges: dict[str, int] = defaultdict(int)
        self.drain_seconds: dict[str, float] = defaultdict(float)
        self.gate = ""
        self._original = Git.result

    def __enter__(self) -> GitTally:
        tally, original = self, self._original

        async def result(git: Git, *args: str, **kwargs: Any) -> GitResult:
            started = time.perf_counter()
            try:
                return await original(git, *args, **kwargs)
            finally:
                tally.calls[(tally.gate, _command(args))].append(time.perf_counter() - started)

        Git.result = result  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        Git.result = self._original  # type: ignore[method-assign]

    def report(self) -> list[str]:
        lines = []
        for gate, merges in self.merges.items():
            rows = sorted(((c, t) for (g, c), t in self.calls.items() if g == gate), key=lambda r: -sum(r[1]))
            git_seconds = sum(sum(t) for _, t in rows)
            calls = sum(len(t) for _, t in rows)
            per = 1000 / merges
            lines.append(
                f"gate {gate}: {per * self.drain_seconds[gate]:.1f} ms per merge, of which {calls / merges:.1f} git "
                f"commands {per * git_seconds:.1f} ms; the rest (database, Python, `sh`) "
                f"{per * (self.drain_seconds[gate] - git_seconds):.1f} ms"
            )
            lines += [
                f"    git {c:<16} {len(t) / merges:5.1f} per merge  {per * sum(t):6.1f} ms" for c, t in rows
            ]
        return lines


def _command(args: tuple[str, ...]) -> str:
    """The git command in `git [-c key=value]... command ...`."""
    rest = list(args)
    while rest[:1] == ["-c"]:
        rest = rest[2:]
    return rest[0] if rest else ""


def make_repo(path: Path) -> Path:
    """A repository with one commit (README.md) on `main`, checked out."""
    path.mkdir(parents=True)
    for args in (
        ["init", "-q", "--initial-branch=main"],
        ["add", "README.md"],
        ["commit", "-q", "-m", "initial"],
    ):
        if args[0] == "add":
            (path / "README.md").write_text("# bench\n")
        subprocess.run(["git", *args], cwd=path, env={**os.environ, **IDENTITY}, check=True)
    return path


def copy_repo(source: Path, target: Path) -> None:
    """The checkout and its .git (every branch and object as they are), without the worktrees."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".worktrees"), symlinks=True)
    shutil.rmtree(target / ".git" / "worktrees", ignore_errors=True)


@dataclass
class Setup:
    coord: Coordinator
    project_id: int
    repo: Path
    floor_repo: Path
    tasks: list[int]
    branches: list[str]


async def make_branches(coord: Coordinator, branches: int, agents: int) -> tuple[int, list[int], list[str]]:
    """A project whose `branches` tasks are all `merging`, each with one commit adding its own file."""
    project = await coord.planning.create_project(OPERATOR, name="bench")
    created = await coord.planning.create_tasks(
        OPERATOR, [NewTask(title=f"part {i}") for i in range(branches)], project=project.id
    )
    callers: list[Caller] = []
    for i in range(agents):
        registered = await coord.agents.register(
            OPERATOR, persona="implementer", name=f"a{i}", project=project.id
        )
        callers.append(agent_caller(registered.agent))
    made: dict[int, str] = {}

    async def work(caller: Caller) -> None:
        while isinstance(claimed := await coord.work.claim(caller), Claimed):
            assert claimed.worktree and claimed.task.branch
            worktree = Path(claimed.worktree)
            name = f"part_{claimed.task.id}.txt"
            await asyncio.to_thread((worktree / name).write_text, f"part {claimed.task.id}\n")
            git = Git(worktree, env=IDENTITY)
            await git.run("add", name)
            await git.run("commit", "-q", "-m", f"task {claimed.task.id}")
            done = await coord.work.complete(
                caller, task_id=claimed.task.id, lease_id=claimed.lease.lease_id, summary="done"
            )
            if done.status != TaskStatus.MERGING:
                raise SystemExit(f"task {claimed.task.id} completed as {done.status}, not merging")
            made[claimed.task.id] = claimed.task.branch

    await asyncio.gather(*(work(c) for c in callers))
    if sorted(made) != sorted(t.id for t in created):
        raise SystemExit(f"only {len(made)} of {branches} tasks reached merging")
    ids = sorted(made)
    return project.id, ids, [made[i] for i in ids]


async def check_main(repo: Path, tasks: list[int], side: str) -> None:
    listed = set((await Git(repo).run("ls-tree", "--name-only", "main")).split("\n"))
    missing = [t for t in tasks if f"part_{t}.txt" not in listed]
    if missing:
        raise SystemExit(f"{side}: main lacks the files of {len(missing)} tasks, e.g. task {missing[0]}")


async def queue_side(setup: Setup, tally: GitTally | None) -> float:
    """Seconds for `drain()` to merge every branch; fails unless each task is done and main has its file."""
    if tally is None:
        started = time.perf_counter()
        runs = await setup.coord.merges.drain()
        seconds = time.perf_counter() - started
    else:
        with tally:
            started = time.perf_counter()
            runs = await setup.coord.merges.drain()
            seconds = time.perf_counter() - started
        tally.merges[tally.gate] += len(runs)
        tally.drain_seconds[tally.gate] += seconds
    outcomes = [r.outcome.status if r.outcome else f"blocked: {r.blocked}" for r in runs]
    if len(runs) != len(setup.tasks) or set(outcomes) != {"merged"}:
        raise SystemExit(f"queue: {len(runs)} merges ran, outcomes {sorted(set(outcomes))}")
    for task_id in setup.tasks:
        task = (await setup.coord.observe.get_task(OPERATOR, task_id=task_id)).task
        if task.status != TaskStatus.DONE:
            raise SystemExit(f"queue: task {task_id} ended {task.status}, not done")
    await check_main(setup.repo, setup.tasks, "queue")
    return seconds


async def floor_side(setup: Setup, gate: str | None) -> float:
    """Seconds for the bare git work of the same merges on the copy of the repository."""
    git = Git(setup.floor_repo)
    identity = ("-c", "user.name=Bench", "-c", "user.email=bench@localhost")
    started = time.perf_counter()
    head = await git.run("rev-parse", "refs/heads/main")
    integration = setup.floor_repo / ".worktrees" / "_integration"
    if gate is not None:
        await git.run("worktree", "add", "--detach", "--quiet", str(integration))
    for task_id, branch in zip(setup.tasks, setup.branches, strict=True):
        tree = await git.run("merge-tree", "--write-tree", head, f"refs/heads/{branch}")
        commit = await git.run(
            *identity,
            "commit-tree",
            tree,
            "-p",
            head,
            "-p",
            f"refs/heads/{branch}",
            "-m",
            f"Merge task {task_id}",
        )
        if gate is not None:
            await git.run("checkout", "--detach", "--quiet", commit, cwd=integration)
            proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", gate, cwd=integration)
            if await proc.wait() != 0:
                raise SystemExit(f"floor: the gate failed on {commit}")
        await git.run("update-ref", "refs/heads/main", commit, head)
        head = commit
    seconds = time.perf_counter() - started
    await check_main(setup.floor_repo, setup.tasks, "floor")
    return seconds


async def predetect_times(setup: Setup) -> tuple[list[float], list[float]]:
    """Per branch, `MergeEngine.predetect` and a bare `git merge-tree --write-tree`, alternating."""
    ws = await setup.coord.workspaces.of_project(setup.project_id)
    assert ws is not None
    git = Git(setup.repo)
    await ws.engine.predetect("main", setup.branches[0])  # the engine checks git's version once
    engine_times, raw_times = [], []
    for branch in setup.branches:
        started = time.perf_counter()
        pre = await ws.engine.predetect("main", branch)
        engine_times.append(time.perf_counter() - started)
        if pre.tree is None or pre.ahead != 1:
            raise SystemExit(f"predetect: {branch} should merge cleanly, one commit ahead: {pre}")
        started = time.perf_counter()
        await git.run("merge-tree", "--write-tree", "main", branch)
        raw_times.append(time.perf_counter() - started)
    return engine_times, raw_times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def measure_once(
    backend: str, gate_name: str, args: argparse.Namespace, repeat: int, tally: GitTally | None
) -> tuple[float, float, list[float], list[float]]:
    """One queue run and one floor run on identical repositories; (queue s, floor s, predetect, raw)."""
    gate = GATES[gate_name]
    config = Config.model_validate({"parallel": {"test_command": gate}})
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as folder:
        repo = make_repo(Path(folder) / "repo")
        async with Database(backend) as db:
            coord = await Coordinator.open(db.url, config, repo=repo)
            try:
                project_id, tasks, branches = await make_branches(coord, args.branches, args.agents)
                setup = Setup(coord, project_id, repo, Path(folder) / "floor", tasks, branches)
                copy_repo(repo, setup.floor_repo)
                engine_times, raw_times = await predetect_times(setup) if gate is None else ([], [])
                if repeat % 2 == 0:
                    queue = await queue_side(setup, tally)
                    floor = await floor_side(setup, gate)
                else:
                    floor = await floor_side(setup, gate)
                    queue = await queue_side(setup, tally)
            finally:
                await coord.close()
    return queue, floor, engine_times, raw_times


def measure(backend: str, args: argparse.Namespace, tally: GitTally | None) -> tuple[list[str], str]:
    """The table rows of the queue against the floor, and the row of the pre-detection times."""
    rows = []
    predetect: list[float] = []
    raw: list[float] = []
    for gate_name in GATES:
        if tally:
            tally.gate = f"{gate_name} ({backend})"
        queue_rates, floor_rates, ratios = [], [], []
        for repeat in range(args.repeats):
            queue, floor, engine_times, raw_times = asyncio.run(
                measure_once(backend, gate_name, args, repeat, tally)
            )
            queue_rates.append(60 * args.branches / queue)
            floor_rates.append(60 * args.branches / floor)
            ratios.append(floor / queue)
            predetect += engine_times
            raw += raw_times
        queue_rate, floor_rate = statistics.median(queue_rates), statistics.median(floor_rates)
        rows.append(
            f"| {backend} | {gate_name} | {queue_rate:,.0f} | {60_000 / queue_rate:.1f} ms | {floor_rate:,.0f} | "
            f"{60_000 / floor_rate:.1f} ms | {statistics.median(ratios):.2f} |"
        )
    ms = [1000 * statistics.median(predetect), 1000 * percentile(predetect, 0.95)]
    ms += [1000 * statistics.median(raw), 1000 * percentile(raw, 0.95)]
    timing = (
        f"| {backend} | {len(predetect)} | {ms[0]:.1f} ms | {ms[1]:.1f} ms | {ms[2]:.1f} ms | {ms[3]:.1f} ms | "
        f"{ms[2] / ms[0]:.2f} |"
    )
    return rows, timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--branches", type=int, default=50, help="agent branches per measurement")
    parser.add_argument("--agents", type=int, default=4, help="agents making the branches (not timed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile", action="store_true", help="count and time the git commands of the queue side"
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    tally = GitTally() if args.profile else None
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"`python bench/bench_merge.py {shlex.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    print(
        f"- {git_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start"
    )
    print()
    print(
        "| backend | test gate | queue merges/min | per merge | floor merges/min | per merge | queue/floor |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    timings = []
    for backend in backends:
        rows, timing = measure(backend, args, tally)
        timings.append(timing)
        print("\n".join(rows), flush=True)
    print()
    print(f"- load average {os.getloadavg()[0]:.2f} at the end")
    print()
    print(
        "| backend | branches timed | predetect p50 | predetect p95 | bare merge-tree p50 | p95 | bare/predetect p50 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(timings))
    if tally:
        print()
        print("\n".join(tally.report()))


if __name__ == "__main__":
    main()
