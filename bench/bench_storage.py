"""Claim-shaped transactions per second: our Store against the raw driver, same SQL, same run.

Each transaction leases the next pending task (one `UPDATE … WHERE id = (SELECT … LIMIT 1)
RETURNING`) and appends its audit event, then commits — the write path of `claim_task`.
Both sides run the identical SQL on the identical table; between measurements the claimed
tasks go back to `pending` and the events are deleted, so every measurement starts from
the same state. Store and raw runs alternate and each figure is the median of several
repeats; the ratio is the median of the paired (adjacent) store/raw ratios, which cancels
most of the noise of a shared machine.

    python bench/bench_storage.py [--backend sqlite|postgresql|both] [--transactions N]
                                  [--postgres-url URL] [--profile store|raw]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import platform
import pstats
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from coordinator.errors import YokeflowError
from coordinator.storage import Store, StoreOptions, open_store

DEFAULT_POSTGRES_URL = os.environ.get(
    "YOKEFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SIDES = ("store", "raw")
LEASE_SECONDS = 600.0

# A ready task is pending or holds an expired lease, as in the real claim. The `status IN (…)`
# term repeats the predicate of the partial index idx_tasks_claim word for word: SQLite only
# uses a partial index when the query states its predicate (PostgreSQL proves it either way).
CLAIM_SQL = """
UPDATE tasks
   SET status = 'in_progress', attempts = attempts + 1, lease_owner = NULL,
       lease_token = $2, lease_expires_at = $3, updated_at = $4
 WHERE id = (SELECT id FROM tasks
              WHERE project_id = $1 AND status IN ('pending', 'in_progress')
                AND (status = 'pending' OR lease_expires_at < $4) AND available_at <= $4
              ORDER BY priority, remaining_path DESC, id
              LIMIT 1{lock})
RETURNING id, attempts"""
EVENT_SQL = (
    "INSERT INTO events (project_id, task_id, actor, kind, before_status, after_status, payload, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
SEED_PROJECT_SQL = "INSERT INTO projects (name, created_at, updated_at) VALUES ($1, $2, $2) RETURNING id"
SEED_TASK_SQL = (
    "INSERT INTO tasks (project_id, title, priority, remaining_path, created_at, updated_at)"
    " VALUES ($1, $2, $3, $4, $5, $5)"
)
RESET_SQL = (
    "UPDATE tasks SET status = 'pending', lease_token = NULL, lease_expires_at = NULL"
    " WHERE project_id = $1 AND status = 'in_progress'"
)

ClaimFn = Callable[[int], Awaitable[None]]


def claim_sql(backend: str) -> str:
    """The claim statement; PostgreSQL skips rows other transactions are leasing."""
    return CLAIM_SQL.format(lock=" FOR UPDATE SKIP LOCKED" if backend == "postgresql" else "")


def sqlite_sql(sql: str) -> str:
    """`$1` → `?1`: SQLite's numbered placeholders (what a raw sqlite3 user would write)."""
    for number in range(9, 0, -1):
        sql = sql.replace(f"${number}", f"?{number}")
    return sql


def claim_args(project_id: int, seq: int) -> tuple[tuple[Any, ...], Callable[[int], tuple[Any, ...]]]:
    """Arguments of the claim statement, and a function giving the event's arguments for the claimed task."""
    now = time.time()
    token = f"bench-{seq}"
    payload = f'{{"lease_token":"{token}"}}'

    def event_args(task_id: int) -> tuple[Any, ...]:
        return (project_id, task_id, "bench", "task.claimed", "pending", "in_progress", payload, now)

    return (project_id, token, now + LEASE_SECONDS, now), event_args


def sqlite_claim_plan(connection: sqlite3.Connection, project_id: int) -> str:
    sql = "EXPLAIN QUERY PLAN " + sqlite_sql(claim_sql("sqlite"))
    rows = connection.execute(sql, claim_args(project_id, 0)[0]).fetchall()
    return "; ".join(str(row[3]) for row in rows)


async def postgres_claim_plan(pool: asyncpg.Pool, project_id: int) -> str:
    rows = await pool.fetch("EXPLAIN (COSTS OFF) " + claim_sql("postgresql"), *claim_args(project_id, 0)[0])
    lines = (str(row[0]).strip().removeprefix("->  ") for row in rows)
    return "; ".join(line for line in lines if "Scan" in line or "Sort" in line)


def plan_warning(plan: str) -> str:
    """Flag a claim that sorts every candidate: the figures then measure a sort, not a claim."""
    sorts = "TEMP B-TREE" in plan or "Sort" in plan
    return " — WARNING: the claim sorts every candidate (no usable index)" if sorts else ""


class NoPendingTask(RuntimeError):
    """The seeded tasks ran out: raise --seed-tasks or lower --transactions."""


# --------------------------------------------------------------------------- claim functions


def store_claimer(store: Store, project_id: int) -> ClaimFn:
    sql = claim_sql(store.backend)

    async def claim(seq: int) -> None:
        args, event_args = claim_args(project_id, seq)
        async with store.transaction() as tx:
            row = await tx.fetchrow(sql, *args)
            if row is None:
                raise NoPendingTask
            await tx.execute(EVENT_SQL, *event_args(row["id"]))

    return claim


def raw_sqlite_claimer(connection: sqlite3.Connection, project_id: int) -> ClaimFn:
    """sqlite3 itself, in place on the loop's thread (as the store runs its writes)."""
    sql, event_sql = sqlite_sql(claim_sql("sqlite")), sqlite_sql(EVENT_SQL)

    async def claim(seq: int) -> None:
        args, event_args = claim_args(project_id, seq)
        connection.execute("BEGIN IMMEDIATE")
        try:
            rows = connection.execute(sql, args).fetchall()
            if not rows:
                raise NoPendingTask
            connection.execute(event_sql, event_args(rows[0][0]))
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    return claim


def raw_postgres_claimer(pool: asyncpg.Pool, project_id: int) -> ClaimFn:
    sql = claim_sql("postgresql")

    async def claim(seq: int) -> None:
        args, event_args = claim_args(project_id, seq)
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(sql, *args)
            if row is None:
                raise NoPendingTask
            await connection.execute(EVENT_SQL, *event_args(row["id"]))

    return claim


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Measurement:
    rate: float  # transactions per second
    cpu_per_tx: float  # seconds of this process's CPU (all threads) per transaction
    latencies: list[float]  # seconds, one per transaction


async def measure(claim: ClaimFn, transactions: int, workers: int) -> Measurement:
    """Run `transactions` claims spread over `workers` concurrent tasks."""
    sequence = iter(range(transactions))
    latencies: list[float] = []

    async def worker() -> None:
        for seq in sequence:  # shared iterator: each number is taken by exactly one worker
            started = time.perf_counter()
            await claim(seq)
            latencies.append(time.perf_counter() - started)

    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Measurement(transactions / elapsed, cpu / transactions, latencies)


@dataclass
class Harness:
    """One backend, seeded, with both claim functions and a way back to the seeded state."""

    backend: str
    describe: str
    claimers: dict[str, ClaimFn]
    reset: Callable[[], Awaitable[None]]


@dataclass
class Result:
    backend: str
    workers: int
    runs: dict[str, list[Measurement]] = field(default_factory=lambda: {side: [] for side in SIDES})

    def rate(self, side: str) -> float:
        return statistics.median(m.rate for m in self.runs[side])

    def ratio(self) -> float:
        """Median of the paired ratios (store and raw runs measured next to each other)."""
        pairs = zip(self.runs["store"], self.runs["raw"], strict=True)
        return statistics.median(store.rate / raw.rate for store, raw in pairs)

    def cpu_us(self, side: str) -> float:
        return 1e6 * statistics.median(m.cpu_per_tx for m in self.runs[side])

    def percentile_ms(self, side: str, q: float) -> float:
        latencies = sorted(x for m in self.runs[side] for x in m.latencies)
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]


@dataclass(frozen=True)
class Plan:
    transactions: int
    workers: tuple[int, ...]
    repeats: int
    warmup: int
    verbose: bool = False


def side_order(index: int) -> tuple[str, ...]:
    """Alternate which side goes first, so drift during the run does not favour one."""
    return SIDES if index % 2 == 0 else SIDES[::-1]


async def run_plan(harness: Harness, plan: Plan) -> list[Result]:
    for side in SIDES:
        await measure(harness.claimers[side], plan.warmup, max(plan.workers))
        await harness.reset()
    results = [Result(harness.backend, workers) for workers in plan.workers]
    for repeat in range(plan.repeats):
        for level, result in enumerate(results):
            for side in side_order(repeat + level):
                measurement = await measure(harness.claimers[side], plan.transactions, result.workers)
                result.runs[side].append(measurement)
                await harness.reset()
                if plan.verbose:
                    log_run(result, side, measurement)
    return results


def log_run(result: Result, side: str, measurement: Measurement) -> None:
    print(
        f"{result.backend:<10} {result.workers:>3} workers  {side:<5} {measurement.rate:8,.0f} tx/s "
        f"{1e6 * measurement.cpu_per_tx:6.0f} µs CPU/tx",
        file=sys.stderr,
    )


async def profile_side(harness: Harness, plan: Plan, side: str) -> None:
    """cProfile one measurement at the highest concurrency (event-loop thread only)."""
    profiler = cProfile.Profile()
    profiler.enable()
    await measure(harness.claimers[side], plan.transactions, max(plan.workers))
    profiler.disable()
    await harness.reset()
    print(f"\n### cProfile: {harness.backend} {side}, {plan.transactions} tx, {max(plan.workers)} workers\n")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)


# --------------------------------------------------------------------------- backends


async def seed(store: Store, tasks: int) -> int:
    """One project with `tasks` pending tasks of mixed priority and remaining path."""
    rng = random.Random(42)
    now = time.time()
    async with store.transaction() as tx:
        project_id = int(await tx.fetchval(SEED_PROJECT_SQL, f"bench-{uuid.uuid4().hex[:8]}", now))
        rows = [
            (project_id, f"task {i}", rng.randrange(5), round(rng.uniform(1, 50), 2), now)
            for i in range(tasks)
        ]
        await tx.executemany(SEED_TASK_SQL, rows)
    return project_id


@asynccontextmanager
async def sqlite_harness(seed_tasks: int) -> AsyncIterator[Harness]:
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as folder:
        path = Path(folder) / "bench.db"
        options = StoreOptions()
        store = await open_store(f"sqlite:///{path}", options=options)
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            project_id = await seed(store, seed_tasks)
            for pragma in (
                "PRAGMA journal_mode = WAL",
                f"PRAGMA synchronous = {options.sqlite_synchronous}",
                f"PRAGMA busy_timeout = {options.sqlite_busy_timeout_ms}",
                "PRAGMA foreign_keys = ON",
                "ANALYZE",
            ):
                connection.execute(pragma)
            plan = sqlite_claim_plan(connection, project_id)

            async def reset() -> None:
                connection.execute(sqlite_sql(RESET_SQL), (project_id,))
                connection.execute("DELETE FROM events")
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

            yield Harness(
                "sqlite",
                f"SQLite {sqlite3.sqlite_version} (sqlite3 in place), "
                f"WAL, synchronous={options.sqlite_synchronous}; claim plan: {plan}{plan_warning(plan)}",
                {
                    "store": store_claimer(store, project_id),
                    "raw": raw_sqlite_claimer(connection, project_id),
                },
                reset,
            )
        finally:
            connection.close()
            await store.close()


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


@asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """A new PostgreSQL schema for this run, dropped (with everything in it) at the end."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
    finally:
        await admin.close()


@asynccontextmanager
async def postgres_harness(url: str, seed_tasks: int, pool_size: int) -> AsyncIterator[Harness]:
    async with fresh_schema(url) as schema:
        bench_url = with_search_path(url, schema)
        options = StoreOptions(pool_min_size=pool_size, pool_max_size=pool_size)
        store = await open_store(bench_url, options=options)
        pool = await asyncpg.create_pool(bench_url, min_size=pool_size, max_size=pool_size)
        try:
            project_id = await seed(store, seed_tasks)

            async def reset() -> None:
                async with pool.acquire() as connection:
                    await connection.execute(RESET_SQL, project_id)
                    await connection.execute("DELETE FROM events")
                    await connection.execute("VACUUM (ANALYZE) tasks, events")

            await reset()
            version = await pool.fetchval("SHOW server_version")
            plan = await postgres_claim_plan(pool, project_id)
            yield Harness(
                "postgresql",
                f"PostgreSQL {version}, asyncpg {asyncpg.__version__}, pool of {pool_size} on both sides; "
                f"claim plan: {plan}{plan_warning(plan)}",
                {"store": store_claimer(store, project_id), "raw": raw_postgres_claimer(pool, project_id)},
                reset,
            )
        finally:
            await pool.close()
            await store.close()


def open_harness(backend: str, args: argparse.Namespace) -> AbstractAsyncContextManager[Harness]:
    if backend == "sqlite":
        return sqlite_harness(args.seed_tasks)
    return postgres_harness(args.postgres_url, args.seed_tasks, args.pool_size)


# --------------------------------------------------------------------------- report


def markdown_table(results: Sequence[Result]) -> str:
    lines = [
        "| backend | workers | store tx/s | raw tx/s | store/raw "
        "| p50 ms store / raw | p99 ms store / raw | CPU µs/tx store / raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p50 = f"{r.percentile_ms('store', 0.50):.2f} / {r.percentile_ms('raw', 0.50):.2f}"
        p99 = f"{r.percentile_ms('store', 0.99):.2f} / {r.percentile_ms('raw', 0.99):.2f}"
        cpu = f"{r.cpu_us('store'):.0f} / {r.cpu_us('raw'):.0f}"
        lines.append(
            f"| {r.backend} | {r.workers} | {r.rate('store'):,.0f} | {r.rate('raw'):,.0f} "
            f"| {r.ratio():.2f} | {p50} | {p99} | {cpu} |"
        )
    return "\n".join(lines)


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(["python", "bench/bench_storage.py", *argv])


def environment_lines(describes: Sequence[str]) -> list[str]:
    cpus = os.cpu_count()
    return [f"- Python {platform.python_version()} on {platform.system()}, {cpus} CPUs", *describes]


# --------------------------------------------------------------------------- CLI


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def worker_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(positive_int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give worker counts like 1,16,64") from exc
    return levels


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--transactions", type=positive_int, default=1200, help="per measurement")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--workers", type=worker_levels, default=(1, 16, 64), help="e.g. 1,16,64")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--warmup", type=positive_int, default=500, help="transactions per side")
    parser.add_argument("--seed-tasks", type=positive_int, default=20_000)
    parser.add_argument("--pool-size", type=positive_int, default=StoreOptions().pool_max_size)
    parser.add_argument("--profile", choices=SIDES, help="also cProfile one run of this side")
    parser.add_argument("--verbose", action="store_true", help="log every measurement to stderr")
    args = parser.parse_args(argv)
    if max(args.transactions, args.warmup) > args.seed_tasks:
        parser.error("--transactions and --warmup must not exceed --seed-tasks (each run claims that many)")
    return args


async def main_async(args: argparse.Namespace) -> list[Result]:
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    plan = Plan(args.transactions, args.workers, args.repeats, args.warmup, args.verbose)
    results: list[Result] = []
    describes: list[str] = []
    for backend in backends:
        async with open_harness(backend, args) as harness:
            describes.append(f"- {harness.describe}")
            results += await run_plan(harness, plan)
            if args.profile:
                await profile_side(harness, plan, args.profile)
    print("\n".join(environment_lines(describes)))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        results = asyncio.run(main_async(args))
    except (OSError, asyncpg.PostgresError, YokeflowError) as exc:
        print(
            f"bench_storage: cannot run the benchmark: {exc}. Fix: check that PostgreSQL is reachable at "
            "--postgres-url (or run with --backend sqlite)",
            file=sys.stderr,
        )
        return 2
    print(f"\n{command_line(argv)}\n")
    print(markdown_table(results))
    print(
        f"\n{args.transactions} claim transactions per measurement, median of {args.repeats}; "
        f"store/raw is the median of paired ratios; latencies pooled over the repeats. "
        f"Took {time.perf_counter() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
