"""`yokeflow launch`: start persona agents as supervised processes and wait until the work is done.

With --coordination-mode every agent pulls its own work (claim_task) until nothing is left;
without it the launcher claims each task itself and starts one agent session per task. The
server is the one at --server, or one started here on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2

from coordinator.errors import ConfigError, InvalidInput
from launcher.embedded_server import embedded_server
from launcher.personas import DEFAULT_PERSONAS, describe, known_personas, parse_personas, slot_personas
from launcher.progress_view import ProgressView
from launcher.runners.base import Runner
from launcher.runners.command import CommandRunner
from launcher.runners.sim import SimRunner, add_sim_options, options_from
from launcher.supervisor import RestartPolicy
from launcher.team import LaunchSettings, launch, summary_lines

RUNNERS = ("claude", "command", "sim")


def make_runner(args: argparse.Namespace, command: list[str]) -> Runner:
    if args.runner == "sim":
        return SimRunner(options_from(args))
    if args.runner == "command":
        return CommandRunner(command)
    return claude_runner()


def claude_runner() -> Runner:
    """The Claude Agent SDK runner, imported only when asked for; its check() names a missing SDK, CLI or key."""
    module = importlib.import_module("launcher.runners.claude")
    runner: Runner = module.ClaudeRunner()
    return runner


# ------------------------------------------------------------------------------- command line


def add_launch_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `launch` to the `yokeflow` command line."""
    launch_cmd = commands.add_parser(
        "launch",
        help="start persona agents that pull their own work",
        description="Register one agent per slot and run each as a supervised process until the project "
        "is done (or Ctrl-C: agents hand back their leases). Agents get YOKEFLOW_URL, YOKEFLOW_TOKEN, "
        "YOKEFLOW_AGENT_ID, YOKEFLOW_WORKTREE, YOKEFLOW_PERSONA and PORT (4000 + 10 per agent) in their "
        "environment.",
    )
    launch_cmd.add_argument(
        "--coordination-mode",
        action="store_true",
        help="agents claim their own tasks (without it the launcher claims each task and starts one "
        "agent session per task)",
    )
    launch_cmd.add_argument(
        "--personas",
        default=DEFAULT_PERSONAS,
        help=f"agents per persona, e.g. implementer=3,reviewer=1 (default {DEFAULT_PERSONAS})",
    )
    launch_cmd.add_argument(
        "--runner", choices=RUNNERS, default="claude", help="how agents run (default claude)"
    )
    launch_cmd.add_argument(
        "--max-concurrency",
        type=int,
        metavar="N",
        help="most agents at once (default parallel.max_concurrency of the config)",
    )
    launch_cmd.add_argument("--server", metavar="URL", help="a running server (default: start one here)")
    launch_cmd.add_argument("--project", help="the project to work on (default: the server's)")
    launch_cmd.add_argument(
        "--repo", metavar="PATH", help="the git repository (default: --root if it is one)"
    )
    launch_cmd.add_argument("--no-repo", action="store_true", help="work without git worktrees and merges")
    launch_cmd.add_argument(
        "--max-restarts",
        type=int,
        default=RestartPolicy.max_restarts,
        metavar="N",
        help="restarts per crashed agent",
    )
    launch_cmd.add_argument("--log-dir", metavar="PATH", help="agent logs (default <root>/.yokeflow/logs)")
    add_sim_options(launch_cmd)
    launch_cmd.add_argument(
        "command", nargs=argparse.REMAINDER, help="--runner command: the command after --, e.g. -- ./agent.sh"
    )
    launch_cmd.set_defaults(handler=cmd_launch)


def settings_from(args: argparse.Namespace, max_concurrency: int) -> LaunchSettings:
    """The launch settings the command line asks for; every mistake is reported before anything starts."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command and args.runner != "command":
        raise InvalidInput(
            "command", f"{' '.join(command)!r} is only for --runner command", fix="add --runner command"
        )
    limit = max_concurrency if args.max_concurrency is None else args.max_concurrency
    if limit < 1:
        raise InvalidInput("--max-concurrency", f"{limit} is less than 1", fix="give 1 or more")
    if args.max_restarts < 0:
        raise InvalidInput("--max-restarts", f"{args.max_restarts} is negative", fix="give 0 or more")
    personas = slot_personas(parse_personas(args.personas, known_personas()), limit)
    return LaunchSettings(
        runner=make_runner(args, command),
        personas=personas,
        coordination=args.coordination_mode,
        project=args.project,
        log_dir=Path(args.log_dir) if args.log_dir else Path(args.root).resolve() / ".yokeflow" / "logs",
        policy=RestartPolicy(max_restarts=args.max_restarts),
    )


async def check_server(url: str) -> str:
    """The base URL of the server at `url` (an MCP URL is accepted too), once it answers."""
    base = url.rstrip("/").removesuffix("/mcp")
    try:
        async with httpx2.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{base}/api/health")
    except httpx2.TransportError as exc:
        raise ConfigError(
            f"cannot reach the server at {base}: {exc}",
            fix="start it with `yokeflow serve --http`, or leave --server out to start one here",
        ) from None
    if answer.status_code != 200:
        raise ConfigError(
            f"{base}/api/health answered {answer.status_code}: this is not a yokeflow server",
            fix="give the base URL `yokeflow serve --http` printed, e.g. http://127.0.0.1:8765",
        )
    return base


@contextlib.asynccontextmanager
async def server_for(args: argparse.Namespace) -> AsyncIterator[str]:
    """The server to use: --server, or one started here for the configured database."""
    if args.server:
        yield await check_server(args.server)
        return
    from launcher.cli import _config_and_url
    from launcher.serve import repository_for, with_project

    config, url = _config_and_url(args)
    async with embedded_server(url, with_project(config, args.project), repo=repository_for(args)) as base:
        yield base


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set `stop` instead of interrupting, while the block runs."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def asked() -> None:
        if not stop.is_set():
            print("stopping the agents (they hand back their leases)...", file=sys.stderr)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, asked)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def cmd_launch(args: argparse.Namespace) -> int:
    from launcher.cli import _config_and_url

    config, _ = _config_and_url(args)
    settings = settings_from(args, config.parallel.max_concurrency)
    await settings.runner.check()
    stop = asyncio.Event()
    with stop_on_signals(stop):
        async with server_for(args) as base:
            print(
                f"launch: {len(settings.personas)} {settings.runner.name} agents ({describe(settings.personas)}) "
                f"on {base}{' pulling their own work' if settings.coordination else ', one session per task'}; "
                f"logs in {settings.log_dir}; Ctrl-C stops them"
            )
            print(f"dashboard: {base}/ (while the agents run)", flush=True)
            report = await launch(base, settings, stop, watch=ProgressView(sys.stdout))
    for line in summary_lines(report):
        print(line)
    if report.stopped:
        return 130
    return 0 if report.ok else 1
