"""Claim + complete cycles per second through the coordination service, beside the raw driver.

Each cycle leases the best ready task and completes it. The service side calls
`coord.work.claim` and `coord.work.complete` (two transactions with every check: the
agent, the budget, the ready condition, the lease, failing tests, dependents, events). The
floor runs the same claim statement and the completion UPDATE with their audit events
directly on the driver (sqlite3 in place, as the store writes; an asyncpg pool), two transactions per cycle and nothing
else. Both sides work through fresh projects of independent tasks in the same run, and
alternate, so machine noise hits both; each figure is the median of the repeats.

    python bench/bench_claims.py [--backend sqlite|postgresql|both] [--tasks N] [--repeats R]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.leasing import claim_sql
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from coordinator.work import Claimed

POSTGRES_URL = os.environ.get("YOKEFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKER_COUNTS = (1, 16, 64)
EVENT_SQL = (
    "INSERT INTO events (project_id, task_id, agent_id, actor, kind, before_status, after_status, payload, "
    "created_at) VALUES ($1, $2, $3, 'bench', $4, $5, $6, '{}', $7)"
)
COMPLETE_SQL = (
    "UPDATE tasks SET status = 'done', result = 'ok', lease_owner = NULL, lease_token = NULL, "
    "lease_expires_at = NULL, completed_at = $2, updated_at = $2 WHERE id = $1 AND lease_token = $3"
)


class Database:
    """A fresh database: a temporary SQLite file, or a PostgreSQL schema dropped at the end."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.schema = f"bench_{secrets.token_hex(4)}"
        self._folder = tempfile.TemporaryDirectory()
        self.url = (
            f"sqlite:///{self._folder.name}/bench.db"
            if backend == "sqlite"
            else f"{POSTGRES_URL}?search_path={self.schema}"
        )

    async def __aenter__(self) -> Database:
        if self.backend == "postgresql":
            connection = await asyncpg.connect(POSTGRES_URL)
            await connection.execute(f'CREATE SCHEMA "{self.schema}"')
            await connection.close()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.backend == "postgresql":
            connection = await asyncpg.connect(POSTGRES_URL)
            await connection.execute(f'DROP SCHEMA "{self.schema}" CASCADE')
            await connection.close()
        self._folder.cleanup()


async def new_project(coord: Coordinator, tasks: int, workers: int) -> tuple[int, list[Caller]]:
    project = await coord.planning.create_project(OPERATOR, name=f"bench-{secrets.token_hex(4)}")
    await coord.planning.create_tasks(
        OPERATOR, [NewTask(title=f"t{i}") for i in range(tasks)], project=project.id
    )
    callers = [
        agent_caller((await coord.agents.register(OPERATOR, persona="implementer", project=project.id)).agent)
        for _ in range(workers)
    ]
    return project.id, callers


async def run_workers(workers: int, cycle: Callable[[int], Awaitable[bool]]) -> tuple[float, list[float]]:
    """Run `workers` loops of `cycle(worker)` until each says no work is left; (seconds, latencies)."""
    latencies: list[float] = []

    async def loop(worker: int) -> None:
        while True:
            started = time.perf_counter()
            if not await cycle(worker):
                return
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(workers)))
    return time.perf_counter() - started, latencies


async def service_side(coord: Coordinator, tasks: int, workers: int) -> tuple[float, list[float]]:
    _, callers = await new_project(coord, tasks, workers)
    claim_latencies: list[float] = []

    async def cycle(worker: int) -> bool:
        started = time.perf_counter()
        outcome = await coord.work.claim(callers[worker])
        claim_latencies.append(time.perf_counter() - started)
        if not isinstance(outcome, Claimed):
            return False
        await coord.work.complete(callers[worker], task_id=outcome.task.id, lease_id=outcome.lease.lease_id)
        return True

    seconds, _ = await run_workers(workers, cycle)
    return seconds, claim_latencies


class RawDriver:
    """The same two transactions per cycle, straight on the driver."""

    def __init__(self, backend: str, url: str) -> None:
        self.backend = backend
        self.url = url
        self.sql = claim_sql(backend, avoid_file_conflicts=True)
        self._sqlite: sqlite3.Connection | None = None
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self.backend == "sqlite":
            self._sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self._sqlite.row_factory = sqlite3.Row
            for pragma in (
                "journal_mode = WAL",
                "synchronous = NORMAL",
                "busy_timeout = 5000",
                "foreign_keys = ON",
            ):
                self._sqlite.execute(f"PRAGMA {pragma}")
        else:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=10)

    async def close(self) -> None:
        if self._sqlite:
            self._sqlite.close()
        if self._pool:
            await self._pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Callable[..., Awaitable[list[dict[str, object]]]]]:
        """Yield `run(sql, *args) -> rows` inside one write transaction."""
        if self._sqlite is not None:
            connection = self._sqlite
            connection.execute("BEGIN IMMEDIATE")

            async def run_sqlite(sql: str, *args: object) -> list[dict[str, object]]:
                return [dict(r) for r in connection.execute(sql.replace("$", "?"), args)]

            yield run_sqlite
            connection.execute("COMMIT")
            return
        assert self._pool is not None
        async with self._pool.acquire() as pg, pg.transaction():

            async def run_pg(sql: str, *args: object) -> list[dict[str, object]]:
                return [dict(r) for r in await pg.fetch(sql, *args)]

            yield run_pg

    async def cycle(self, project_id: int, agent_id: int) -> bool:
        now = time.time()
        async with self.transaction() as run:
            rows = await run(
                self.sql, project_id, now, "implementer", agent_id, secrets.token_hex(6), now + 300, 300.0
            )
            if not rows:
                return False
            task_id, token = rows[0]["id"], rows[0]["lease_token"]
            await run(EVENT_SQL, project_id, task_id, agent_id, "task_claimed", "pending", "in_progress", now)
        async with self.transaction() as run:
            await run(COMPLETE_SQL, task_id, time.time(), token)
            await run(EVENT_SQL, project_id, task_id, agent_id, "task_completed", "in_progress", "done", now)
        return True


async def raw_side(coord: Coordinator, raw: RawDriver, tasks: int, workers: int) -> tuple[float, list[float]]:
    project_id, callers = await new_project(coord, tasks, workers)
    agent_ids = [c.agent.id for c in callers if c.agent]
    return await run_workers(workers, lambda w: raw.cycle(project_id, agent_ids[w]))


async def measure(backend: str, tasks: int, repeats: int) -> list[str]:
    rows = []
    async with Database(backend) as db:
        coord = await Coordinator.open(db.url)
        raw = RawDriver(backend, db.url)
        await raw.open()
        try:
            await service_side(coord, 50, 4)  # warm up both paths
            await raw_side(coord, raw, 50, 4)
            for workers in WORKER_COUNTS:
                service_rates, raw_rates, claims = [], [], []
                for _ in range(repeats):
                    seconds, latencies = await service_side(coord, tasks, workers)
                    service_rates.append(tasks / seconds)
                    claims += latencies
                    seconds, _ = await raw_side(coord, raw, tasks, workers)
                    raw_rates.append(tasks / seconds)
                service, floor = statistics.median(service_rates), statistics.median(raw_rates)
                p50 = p99 = ""
                if workers == WORKER_COUNTS[-1]:
                    ordered = sorted(claims)
                    p50 = f"{1000 * ordered[len(ordered) // 2]:.1f} ms"
                    p99 = f"{1000 * ordered[int(len(ordered) * 0.99)]:.1f} ms"
                rows.append(
                    f"| {backend} | {workers} | {service:,.0f} | {floor:,.0f} | {service / floor:.2f} | {p50} | {p99} |"
                )
        finally:
            await raw.close()
            await coord.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--tasks", type=int, default=600, help="tasks per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"`python bench/bench_claims.py {shlex.join(sys.argv[1:])}`".replace(" `", "`"))
    print()
    print("| backend | workers | service cycles/s | raw floor cycles/s | ratio | claim p50 | claim p99 |")
    print("|---|---|---|---|---|---|---|")
    for backend in backends:
        for row in asyncio.run(measure(backend, args.tasks, args.repeats)):
            print(row, flush=True)


if __name__ == "__main__":
    main()
