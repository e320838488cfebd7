"""MCP over streamable HTTP: `ping` (the transport floor) against a claim_task + complete_task cycle.

A uvicorn server runs in a process of its own (this script, started with `--serve`) on SQLite or
PostgreSQL. This process opens 16 or 64 `mcp.Client` sessions — the stateless 2026 protocol
Claude Code speaks, each session with its own worker token — connects them all, and then runs
the phases with every session at once: each session pings, or claims a seeded task and completes
it. Ping and cycle phases alternate within each repeat, so noise on the machine hits both; rates
and latencies are medians over the repeats, and the ratio (per-call rate of the cycle, 2 calls per
cycle, over ping's rate) is the median of the paired ratios. "server CPU" is the server
process's CPU time per call (from /proc), "client CPU" this process's (all sessions' MCP
clients, which check every result against its output schema), "PostgreSQL CPU" that of every
`postgres` process on the machine (SQLite works inside the server process).

    python bench/bench_mcp.py [--backend sqlite|postgresql|both] [--sessions 16,64] [--calls N]
                              [--repeats R] [--profile-server DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import secrets
import shlex
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_claims import Database  # the same throwaway database (bench/ is on the path)

from coordinator.context import OPERATOR
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from launcher.serve import DEFAULT_TOKEN_CACHE_SECONDS, build_http_app

POSTGRES_URL = os.environ.get("YOKEFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WARMUP_CALLS = 4
ANALYZED_TABLES = (
    "projects",
    "epics",
    "agents",
    "tasks",
    "task_dependencies",
    "task_files",
    "task_tests",
    "events",
)


@dataclass
class Phase:
    """One phase of one repeat: how many units in how long, each unit's latency, server CPU."""

    units: int
    seconds: float
    latencies: list[float]
    server_cpu_seconds: float | None
    client_cpu_seconds: float
    database_cpu_seconds: float | None

    @property
    def rate(self) -> float:
        return self.units / self.seconds


@dataclass
class Results:
    pings: list[Phase] = field(default_factory=list)
    cycles: list[Phase] = field(default_factory=list)

    def row(self, backend: str, sessions: int, token_cache: float) -> str:
        ping_rate = statistics.median(p.rate for p in self.pings)
        cycle_rate = statistics.median(c.rate for c in self.cycles)
        ratio = statistics.median(2 * c.rate / p.rate for p, c in zip(self.pings, self.cycles, strict=True))
        server = f"{_cpu(self.pings, 1, 'server')} / {_cpu(self.cycles, 2, 'server')}"
        client = f"{_cpu(self.pings, 1, 'client')} / {_cpu(self.cycles, 2, 'client')}"
        database = _cpu(self.cycles, 2, "database") if backend == "postgresql" else "(in server)"
        return (
            f"| {backend} | {sessions} | {token_cache:g} s | {ping_rate:,.0f} | {_percentiles(self.pings)} "
            f"| {cycle_rate:,.0f} | {2 * cycle_rate:,.0f} | {_percentiles(self.cycles)} | **{ratio:.2f}** "
            f"| {server} | {client} | {database} |"
        )


def _percentiles(phases: list[Phase]) -> str:
    """Median over the repeats of each repeat's p50 and p99, in ms."""
    p50 = statistics.median(statistics.quantiles(p.latencies, n=100)[49] for p in phases)
    p99 = statistics.median(statistics.quantiles(p.latencies, n=100)[98] for p in phases)
    return f"{1000 * p50:.1f} / {1000 * p99:.1f}"


def _cpu(phases: list[Phase], calls_per_unit: int, side: str) -> str:
    """Median CPU ms per call of one side: the server, the client, or the database processes."""
    per_call = [
        seconds / (p.units * calls_per_unit) for p in phases if (seconds := getattr(p, f"{side}_cpu_seconds"))
    ]
    return f"{1000 * statistics.median(per_call):.2f}" if per_call else "n/a"


# ------------------------------------------------------------------------------ the database


async def seed(url: str, sessions: int, tasks: int) -> list[str]:
    """A project of `tasks` independent tasks and `sessions` workers; their tokens.

    On PostgreSQL the tables are then analyzed, as autovacuum would do within a minute: with the
    statistics of the empty tables, a claim's check for predicted files walks every task.
    """
    coord = await Coordinator.open(url)
    try:
        project = await coord.planning.create_project(OPERATOR, name=f"bench-{secrets.token_hex(4)}")
        specs = [NewTask(title=f"task {i}") for i in range(tasks)]
        for start in range(0, tasks, 500):
            await coord.planning.create_tasks(OPERATOR, specs[start : start + 500], project=project.id)
        tokens = []
        for i in range(sessions):
            registered = await coord.agents.register(
                OPERATOR, persona="implementer", project=project.id, name=f"w{i}"
            )
            tokens.append(registered.token)
        if coord.store.backend == "postgresql":
            async with coord.store.transaction() as tx:
                await tx.execute(f"ANALYZE {', '.join(ANALYZED_TABLES)}")
        return tokens
    finally:
        await coord.close()


# -------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server_process(url: str, profile_to: Path | None, token_cache: float) -> Iterator[tuple[str, int]]:
    """`python bench/bench_mcp.py --serve URL` on a free port: (base URL, pid); stopped with SIGINT."""
    port = free_port()
    command = [
        sys.executable,
        __file__,
        "--serve",
        url,
        "--port",
        str(port),
        "--token-cache",
        str(token_cache),
    ]
    if profile_to is not None:
        command += ["--profile-to", str(profile_to)]
    process = subprocess.Popen(command)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server stopped with exit code {process.returncode}")
            try:
                if httpx2.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up within 60 s")
            time.sleep(0.1)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(url: str, port: int, profile_to: str | None, token_cache: float) -> None:
    """The server side: every MCP path of `yokeflow serve --http`, without access logs."""
    app = build_http_app(url, token_cache_seconds=token_cache)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    profiler = cProfile.Profile() if profile_to else None
    try:
        if profiler is not None:
            profiler.enable()
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it stopped on
        pass
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU time of every `postgres` process on this machine (Linux), None elsewhere."""
    total = 0.0
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")].startswith("postgres"):
            total += cpu_seconds(int(pid)) or 0.0
    return total


# -------------------------------------------------------------------------------- the clients


@asynccontextmanager
async def sessions_of(url: str, tokens: list[str]) -> AsyncIterator[list[Client]]:
    """One connected client session per token."""
    async with AsyncExitStack() as stack:
        clients = []
        for token in tokens:
            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
            )
            clients.append(
                await stack.enter_async_context(Client(streamable_http_client(url, http_client=http)))
            )
        yield clients


async def call(client: Client, name: str, arguments: dict[str, object] | None = None) -> dict[str, object]:
    result = await client.call_tool(name, arguments or {})
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{name} failed: {result.content}")
    return result.structured_content


async def ping(client: Client) -> None:
    await call(client, "ping")


async def cycle(client: Client) -> None:
    claimed = await call(client, "claim_task")
    if claimed["status"] != "claimed":
        raise RuntimeError(f"no task to claim (seed more): {claimed['message']}")
    task, lease = claimed["task"], claimed["lease"]
    assert isinstance(task, dict) and isinstance(lease, dict)
    await call(client, "complete_task", {"task_id": task["id"], "lease_id": lease["lease_id"]})


async def run_phase(
    clients: list[Client], unit: Callable[[Client], Awaitable[None]], per_session: int, pid: int
) -> Phase:
    """Every session runs `unit` `per_session` times, all sessions at once."""
    latencies: list[float] = []

    async def loop(client: Client) -> None:
        for _ in range(per_session):
            started = time.perf_counter()
            await unit(client)
            latencies.append(time.perf_counter() - started)

    before = (cpu_seconds(pid), time.process_time(), postgres_cpu_seconds())
    started = time.perf_counter()
    await asyncio.gather(*(loop(client) for client in clients))
    seconds = time.perf_counter() - started
    after = (cpu_seconds(pid), time.process_time(), postgres_cpu_seconds())
    server, client, database = (
        b - a if a is not None and b is not None else None for a, b in zip(before, after, strict=True)
    )
    assert client is not None
    return Phase(len(latencies), seconds, latencies, server, client, database)


async def measure(
    backend: str,
    session_counts: list[int],
    calls: int,
    repeats: int,
    profile_dir: Path | None,
    token_cache: float,
) -> list[str]:
    rows = []
    async with Database(backend) as db:
        plans = {n: (max(1, calls // n), max(1, calls // (2 * n))) for n in session_counts}
        tokens = {
            n: await seed(db.url, n, n * (cycles * repeats + WARMUP_CALLS))
            for n, (_, cycles) in plans.items()
        }
        profile_to = profile_dir / f"server-{backend}-cache{token_cache:g}.prof" if profile_dir else None
        with server_process(db.url, profile_to, token_cache) as (base, pid):
            for n, (pings, cycles) in plans.items():
                results = Results()
                async with sessions_of(f"{base}/mcp/worker", tokens[n]) as clients:
                    await run_phase(clients, ping, WARMUP_CALLS, pid)
                    await run_phase(clients, cycle, WARMUP_CALLS // 2, pid)
                    for _ in range(repeats):
                        results.pings.append(await run_phase(clients, ping, pings, pid))
                        results.cycles.append(await run_phase(clients, cycle, cycles, pid))
                rows.append(results.row(backend, n, token_cache))
                print(f"measured: {rows[-1]}", file=sys.stderr, flush=True)
        if profile_to is not None:
            print_profile(profile_to)
    return rows


def print_profile(path: Path, lines: int = 30) -> None:
    print(f"\nServer profile ({path}), by own time:", file=sys.stderr)
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)


def environment(backends: list[str], load_at_start: float) -> list[str]:
    lines = [
        f"- Python {platform.python_version()} on {platform.system()}, {os.cpu_count()} CPUs; "
        f"load average {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
        f"- server: uvicorn {uvicorn.__version__}, log level warning, streamable HTTP with SSE responses (the default)",
    ]
    if "sqlite" in backends:
        lines.append(f"- SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)")
    if "postgresql" in backends:
        lines.append("- PostgreSQL on 127.0.0.1, pool of 10")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sessions", default="16,64", help="comma-separated session counts")
    parser.add_argument("--calls", type=int, default=1200, help="calls per phase, split over the sessions")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile-server", type=Path, metavar="DIR", help="run the server under cProfile")
    parser.add_argument(
        "--token-cache",
        default=f"{DEFAULT_TOKEN_CACHE_SECONDS:g}",
        metavar="SECONDS,…",
        help="how long the server remembers a token's agent; several values compare them "
        f"(default {DEFAULT_TOKEN_CACHE_SECONDS:g}; 0 = off)",
    )
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.profile_to, float(args.token_cache))
        return
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    session_counts = [int(n) for n in args.sessions.split(",")]
    if args.profile_server:
        args.profile_server.mkdir(parents=True, exist_ok=True)
    print(f"`python bench/bench_mcp.py {shlex.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    load_at_start = os.getloadavg()[0]
    rows = []
    for backend in backends:
        for token_cache in (float(seconds) for seconds in args.token_cache.split(",")):
            rows += asyncio.run(
                measure(backend, session_counts, args.calls, args.repeats, args.profile_server, token_cache)
            )
    print("\n".join(environment(backends, load_at_start)))
    print()
    print(
        "| backend | sessions | token cache | ping calls/s | ping p50 / p99 ms | cycles/s "
        "| cycle calls/s (2 x cycles) | cycle p50 / p99 ms | cycle calls/s ÷ ping calls/s "
        "| server CPU ms/call, ping / cycle | client CPU ms/call, ping / cycle | PostgreSQL CPU ms/call, cycle |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
