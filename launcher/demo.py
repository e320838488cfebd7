"""`yokeflow demo`: a whole project with simulated agents, for a newcomer with nothing configured.

In a temporary folder: a git repository with one commit on main, a SQLite database holding the
sample plan of launcher/demo_plan.yaml, the HTTP server (with the dashboard) on a free loopback
port, and four sim agents in worktrees whose branches go through the merge queue. Progress is
drawn live from the store; the summary at the end compares the makespan with the plan's serial
time and lower bound. Nothing is left running, and the folder is removed unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.config import Config
from coordinator.context import OPERATOR
from coordinator.gitcli import Git
from coordinator.service import Coordinator
from launcher.embedded_server import embedded_server
from launcher.launch import stop_on_signals
from launcher.mcp_client import OPERATOR_PATH, AgentClient
from launcher.progress_view import ProgressView
from launcher.runners.sim import SimOptions, SimRunner, non_negative
from launcher.team import LaunchReport, LaunchSettings, launch

DEMO_PLAN = Path(__file__).with_name("demo_plan.yaml")
DEMO_PERSONAS = ["implementer", "implementer", "implementer", "reviewer"]
DEFAULT_TIME_SCALE = 0.5
_IDENTITY = ("-c", "user.name=YokeFlow demo", "-c", "user.email=demo@yokeflow.invalid")


async def make_repository(path: Path) -> Path:
    """A git repository at `path` with one commit (a README) on main."""
    await asyncio.to_thread(path.mkdir, parents=True)
    git = Git(path)
    await git.run("init", "-q", "--initial-branch=main")
    await asyncio.to_thread(
        (path / "README.md").write_text,
        "# To-do app\n\nBuilt by simulated agents in `yokeflow demo`.\n",
        encoding="utf-8",
    )
    await git.run("add", "README.md")
    await git.run(*_IDENTITY, "commit", "-q", "-m", "Start the to-do app")
    return path


async def import_demo_plan(url: str, config: Config, repo: Path) -> None:
    text = await asyncio.to_thread(DEMO_PLAN.read_text, encoding="utf-8")
    coord = await Coordinator.open(url, config, repo=repo)
    try:
        await coord.plans.import_plan(OPERATOR, text)
    finally:
        await coord.close()


@dataclass(frozen=True)
class DemoSummary:
    """The end of the demo in numbers, all read from the store."""

    report: LaunchReport
    merges: Counter[str]
    makespan_seconds: float | None
    plan: dict[str, Any]
    time_scale: float

    def lines(self) -> list[str]:
        status, tasks = self.report.status, self.report.status["tasks"]
        left = ", ".join(f"{n} {state}" for state, n in tasks.items() if n and state != "done")
        plan, scale = self.plan["makespan"], self.time_scale
        conflicts = self.merges["conflict"] + self.merges["rejected"]
        lines = [
            f"tasks:    {tasks.get('done', 0)} of {status['total_tasks']} done"
            + (f" ({left})" if left else ""),
            f"merges:   {self.merges['merged']} into main, {conflicts} conflict{'s' * (conflicts != 1)}"
            + (" (each resolved by the reviewer on its branch)" if conflicts else ""),
            f"cost:     ${self.report.costs['total_usd']:.2f} of simulated tokens",
        ]
        if self.makespan_seconds is not None:
            lines.append(
                f"makespan: {self.makespan_seconds:.1f} s with {plan['agents']} agents (first claim to last "
                f"merge); serial {plan['serial'] * scale:.1f} s, lower bound {plan['lower_bound'] * scale:.1f} s "
                f"({scale:g} s per estimate unit)"
            )
        lines.append(f"wall time: {self.report.elapsed_seconds:.1f} s, agent start-up included")
        return lines


async def summarize(base: str, report: LaunchReport, time_scale: float) -> DemoSummary:
    async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
        merges = await operator.call("list_merges", limit=1000)
        plan = await operator.call("get_execution_plan")
        events = await all_events(operator)
    claimed = [e["created_at"] for e in events if e["kind"] == "task_claimed"]
    finished = [e["created_at"] for e in events if e["kind"] in ("task_merged", "task_completed")]
    return DemoSummary(
        report=report,
        merges=Counter(merge["status"] for merge in merges["merges"]),
        makespan_seconds=max(finished) - min(claimed) if claimed and finished else None,
        plan=plan,
        time_scale=time_scale,
    )


async def all_events(client: AgentClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after, more = 0, True
    while more:
        page = await client.call("get_events", after_id=after, limit=1000)
        events += page["events"]
        after, more = page["next_after_id"], page["more"]
    return events


@contextlib.contextmanager
def demo_folder(keep: bool) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="yokeflow-demo-"))
    try:
        yield folder
    finally:
        if keep:
            print(f"kept:     {folder} (repository in app/, agent logs in logs/)")
        else:
            shutil.rmtree(folder, ignore_errors=True)


async def run_demo(
    *, time_scale: float = DEFAULT_TIME_SCALE, keep: bool = False, live: bool | None = None
) -> int:
    """Run the demo from start to end; the exit code (0 when every task was merged)."""
    with demo_folder(keep) as folder:
        repo = await make_repository(folder / "app")
        url = f"sqlite:///{folder / 'coordinator.db'}"
        config = Config()
        await import_demo_plan(url, config, repo)
        settings = LaunchSettings(
            runner=SimRunner(SimOptions(time_scale=time_scale)),
            personas=DEMO_PERSONAS,
            log_dir=folder / "logs",
        )
        stop = asyncio.Event()
        with stop_on_signals(stop):
            async with embedded_server(url, config, repo=repo) as base:
                print(f"yokeflow demo: 4 sim agents build a to-do app from a 24-task plan in {repo}")
                print(f"dashboard: {base}/ (while the demo runs)")
                report = await launch(base, settings, stop, watch=ProgressView(sys.stdout, live=live))
                summary = await summarize(base, report, time_scale)
        for line in summary.lines():
            print(line)
    if report.stopped:
        return 130
    return 0 if report.ok else 1


def add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `demo` to the `yokeflow` command line."""
    demo = commands.add_parser(
        "demo",
        help="run a whole sample project with simulated agents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--time-scale",
        type=non_negative,
        default=DEFAULT_TIME_SCALE,
        help=f"seconds of simulated work per estimate unit (default {DEFAULT_TIME_SCALE})",
    )
    demo.add_argument("--keep", action="store_true", help="keep the temporary folder (repository, logs)")
    demo.set_defaults(handler=cmd_demo)


async def cmd_demo(args: argparse.Namespace) -> int:
    return await run_demo(time_scale=args.time_scale, keep=args.keep)
