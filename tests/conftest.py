"""Shared fixtures: a fresh real database per test, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from coordinator.storage import Store, open_store

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def postgres_base_url() -> str:
    return os.environ.get("YOKEFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL suite not run: {reason} (set YOKEFLOW_TEST_POSTGRES_URL)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; with CI=true a skipped PostgreSQL suite is a failure", pytrace=False)
    pytest.skip(message)


_POSTGRES_CHECK: list[str | None] = []


def _check_postgres_once() -> str | None:
    """None when PostgreSQL answers, else why not (asked once per test run)."""
    if not _POSTGRES_CHECK:

        async def probe() -> str | None:
            try:
                connection = await asyncpg.connect(postgres_base_url(), timeout=5)
            except Exception as exc:
                return f"cannot connect to {postgres_base_url()}: {exc}"
            await connection.close()
            return None

        _POSTGRES_CHECK.append(asyncio.run(probe()))
    return _POSTGRES_CHECK[0]


class Database:
    """A fresh database for one test: a SQLite file, or a PostgreSQL schema of its own."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.backend = backend
        self.schema = f"yf_test_{secrets.token_hex(6)}"
        if backend == "sqlite":
            self.url = f"sqlite:///{tmp_path / 'coordinator.db'}"
        else:
            self.url = f"{postgres_base_url()}?search_path={self.schema}"

    async def create(self) -> None:
        if self.backend == "postgresql":
            connection = await asyncpg.connect(postgres_base_url())
            await connection.execute(f'CREATE SCHEMA "{self.schema}"')
            await connection.close()

    async def drop(self) -> None:
        if self.backend == "postgresql":
            connection = await asyncpg.connect(postgres_base_url())
            await connection.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            await connection.close()

    async def open(self, **kwargs: object) -> Store:
        return await open_store(self.url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        reason = _check_postgres_once()
        if reason:
            _postgres_unavailable(reason)
    return str(request.param)


@pytest.fixture
async def database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(backend, tmp_path)
    await db.create()
    try:
        yield db
    finally:
        await db.drop()


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    opened = await database.open()
    try:
        yield opened
    finally:
        await opened.close()


class ManualClock:
    """A clock the test moves by hand, so lease expiry is deterministic."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    yield ManualClock()


@pytest.fixture
def make_clock() -> Callable[[], ManualClock]:
    return ManualClock


@pytest.fixture
async def coord(database: Database, clock: ManualClock) -> AsyncIterator[object]:
    """A coordinator on a fresh database, with a hand-moved clock."""
    from coordinator.service import Coordinator

    opened = await Coordinator.open(database.url, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def local(database: Database) -> AsyncIterator[object]:
    """A coordinator on a fresh database with the real clock: the setup side of tests that also
    serve the database over HTTP (opened first, it migrates)."""
    from coordinator.service import Coordinator

    opened = await Coordinator.open(database.url)
    try:
        yield opened
    finally:
        await opened.close()
