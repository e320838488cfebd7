"""PostgreSQL backend (asyncpg pool): every change in one transaction, claims with SKIP LOCKED.

JSONB columns travel as JSON text, the same as SQLite's, so queries and row decoding are
shared. `LISTEN/NOTIFY` on one channel is a wake-up hint for other instances; the tables
stay the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from coordinator.errors import DatabaseUnavailable, StoreError
from coordinator.storage.base import Clock, CommitHooks, IntegrityViolation, Row, Store


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def _setup_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("jsonb", "json"):
        await connection.set_type_codec(
            type_name, encoder=str, decoder=str, schema="pg_catalog", format="text"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's session reset on release (one round trip per transaction).

    Safe because the store leaves no session state on pooled connections: no session SET,
    only transaction-scoped advisory locks, and LISTEN on a connection of its own.
    asyncpg still rolls back an open transaction before a connection goes back to the pool.
    """


class PostgresTx(CommitHooks):
    """A transaction on one pooled asyncpg connection."""

    backend = "postgresql"

    def __init__(self, connection: asyncpg.Connection) -> None:
        super().__init__()
        self.connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _translate_errors():
            records = await self.connection.fetch(sql, *args)
        return [dict(record) for record in records]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        with _translate_errors():
            record = await self.connection.fetchrow(sql, *args)
        return None if record is None else dict(record)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        with _translate_errors():
            return await self.connection.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> int:
        with _translate_errors():
            status = await self.connection.execute(sql, *args)
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with _translate_errors():
            await self.connection.executemany(sql, rows)

    async def execute_script(self, script: str) -> None:
        with _translate_errors():
            await self.connection.execute(script)


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityViolation(str(exc)) from exc


class PostgresStore(Store):
    backend = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool, *, clock: Clock) -> None:
        super().__init__(url, clock=clock)
        self.pool = pool
        self._listener: asyncpg.Connection | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        clock: Clock,
    ) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout,
                init=_setup_connection,
                reset=_keep_session,
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"cannot connect to PostgreSQL at {redact_url(url)}: {exc}",
                fix="check that the server is running and reachable, and that database.url "
                "(or YOKEFLOW_DATABASE_URL) names an existing database and a user allowed to use it",
            ) from exc
        return cls(url, pool, clock=clock)

    def describe(self) -> str:
        return f"PostgreSQL database {redact_url(self.url)}"

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            connection = await self.pool.acquire()
        except (OSError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable(
                f"lost the connection to {self.describe()}: {exc}",
                fix="check that the PostgreSQL server is running",
            ) from exc
        try:
            yield connection
        finally:
            await self.pool.release(connection)

    async def read_row(self, sql: str, *args: Any) -> Row | None:
        async with self._acquire() as connection:
            with _translate_errors():
                record = await connection.fetchrow(sql, *args)
        return None if record is None else dict(record)

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[PostgresTx]:
        async with self._acquire() as connection, connection.transaction(readonly=not write):
            tx = PostgresTx(connection)
            yield tx
            await tx.run_before_commit()

    async def listen(self, channel: str, on_notify: Callable[[], None]) -> bool:
        """LISTEN on a dedicated connection (outside the pool); a NOTIFY is only a hint."""
        if self._listener is None:
            self._listener = await asyncpg.connect(self.url)
        await self._listener.add_listener(channel, lambda *_: on_notify())
        return True

    async def close(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.close(timeout=5)
        try:
            await asyncio.wait_for(self.pool.close(), timeout=10)
        except TimeoutError as exc:
            self.pool.terminate()
            raise StoreError(
                "PostgreSQL connections did not close within 10 s; they were terminated"
            ) from exc
