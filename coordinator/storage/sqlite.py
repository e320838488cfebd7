"""SQLite backend: WAL, BEGIN IMMEDIATE writes, safe for several processes on one file.

Write transactions run in place on the event loop's thread, one at a time (an asyncio lock):
SQLite serialises writers anyway and a write statement takes microseconds, so a thread hop per
statement would cost more than the statement and keep the write lock held across loop turns.
Each write transaction first lets the loop run whatever else is ready. The loop's thread never
sleeps in SQLite: while another process holds the database's write lock, `BEGIN IMMEDIATE` is
retried after asyncio sleeps, for up to `busy_timeout_ms`; and the writer makes no WAL
checkpoints (they end in an fsync): a reader makes them, every `CHECKPOINT_EVERY` write
transactions. Reads use a small pool of aiosqlite reader connections, each on a thread of its
own so that a long read never stalls the loop, each read in its own snapshot transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from coordinator.errors import DatabaseLocked, DatabaseUnavailable, InvalidInput, StoreError
from coordinator.storage.base import Clock, CommitHooks, IntegrityViolation, Row, Store

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
_READERS = 4
_LONGEST_BUSY_PAUSE = 0.002
"""Seconds at most between two attempts to take the write lock from another process: a busy
process leaves it free only between its transactions, moments a slower poll would mostly miss."""
CHECKPOINT_EVERY = 200
"""Write transactions between WAL checkpoints (SQLite's own come every 1,000 pages; a claim writes a few)."""

log = logging.getLogger(__name__)
T = TypeVar("T")


@lru_cache(maxsize=512)
def _to_sqlite_placeholders(sql: str) -> str:
    return re.sub(r"\$(\d+)", r"?\1", sql)


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, row, strict=True)}


def sqlite_path_from_url(url: str) -> Path:
    """`sqlite:///relative.db` → relative.db; `sqlite:////abs/file.db` → /abs/file.db."""
    if not url.startswith("sqlite:///"):
        raise InvalidInput(
            "database.url", f"{url!r} is not a SQLite URL", fix="write it as sqlite:///path/to/file.db"
        )
    raw = url[len("sqlite:///") :].split("?", 1)[0]
    if raw in ("", ":memory:"):
        raise InvalidInput(
            "database.url",
            "an in-memory SQLite database cannot be shared by the server's connections",
            fix="give a file path, e.g. sqlite:///.yokeflow/coordinator.db",
        )
    return Path(raw)


class SqliteTx(CommitHooks, ABC):
    """One transaction: statements in SQLite's placeholders, errors as the store's own."""

    backend = "sqlite"

    def __init__(self, store: SqliteStore) -> None:
        super().__init__()
        self._store = store

    @abstractmethod
    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Row]: ...

    @abstractmethod
    async def _run(self, sql: str, args: Sequence[Any]) -> int: ...

    @abstractmethod
    async def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with self._store.translate_errors():
            return await self._rows(_to_sqlite_placeholders(sql), args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def execute(self, sql: str, *args: Any) -> int:
        with self._store.translate_errors():
            return await self._run(_to_sqlite_placeholders(sql), args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._store.translate_errors():
            await self._run_many(_to_sqlite_placeholders(sql), rows)

    async def execute_script(self, script: str) -> None:
        for statement in split_sql_script(script):
            await self.execute(statement)


class WriteTx(SqliteTx):
    """A write transaction on the writer connection, run in place on the event loop's thread."""

    def __init__(self, connection: sqlite3.Connection, store: SqliteStore) -> None:
        super().__init__(store)
        self._connection = connection

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Row]:
        return self._connection.execute(sql, args).fetchall()

    async def _run(self, sql: str, args: Sequence[Any]) -> int:
        return self._connection.execute(sql, args).rowcount

    async def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, rows)


class ReadTx(SqliteTx):
    """A snapshot read on a reader connection (aiosqlite's thread); it begins with its first statement."""

    def __init__(self, connection: aiosqlite.Connection, store: SqliteStore) -> None:
        super().__init__(store)
        self._connection = connection
        self._begun = False

    async def _begin(self) -> None:
        if not self._begun:
            self._begun = True
            await self._connection.execute("BEGIN")

    async def _rows(self, sql: str, args: Sequence[Any]) -> list[Row]:
        await self._begin()
        return list(await self._connection.execute_fetchall(sql, args))  # type: ignore[arg-type]

    async def _run(self, sql: str, args: Sequence[Any]) -> int:
        await self._begin()
        return (await self._connection.execute(sql, args)).rowcount

    async def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._begin()
        await self._connection.executemany(sql, rows)


def split_sql_script(script: str) -> list[str]:
    """Split a script into complete statements (SQLite's own parser decides where one ends)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip().strip(";").strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise StoreError(f"the SQL script ends with an incomplete statement: {buffer.strip()[:80]!r}")
    return statements


class SqliteStore(Store):
    backend = "sqlite"

    def __init__(
        self,
        url: str,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        clock: Clock,
    ) -> None:
        super().__init__(url, clock=clock)
        self.path = path
        self.synchronous = synchronous.upper()
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: sqlite3.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._reader_count = 0
        self._all_readers: list[aiosqlite.Connection] = []
        self._commits_since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create: bool,
        synchronous: str = "NORMAL",
        busy_timeout_ms: int = 5000,
        clock: Clock,
    ) -> SqliteStore:
        path = sqlite_path_from_url(url)
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise InvalidInput(
                "database.sqlite_synchronous",
                f"{synchronous!r} is not a SQLite synchronous mode",
                fix=f"use one of {', '.join(SYNCHRONOUS_MODES)}",
            )
        if not create and not path.is_file():
            raise DatabaseUnavailable(
                f"the SQLite database {path} does not exist",
                fix="run `yokeflow db migrate` to create it, or check database.url",
            )
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailable(
                    f"cannot create the folder {path.parent} for the SQLite database: {exc.strerror}",
                    fix="choose a writable location in database.url",
                ) from exc
        store = cls(url, path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms, clock=clock)
        # Processes opening a new file at once race to switch it to WAL; the loser is told
        # "locked" at once (SQLite's deadlock avoidance), without waiting: it tries again.
        store._writer = await store._retry_while_locked(partial(asyncio.to_thread, store._open_writer))
        return store

    def describe(self) -> str:
        return f"SQLite database {self.path}"

    def _pragmas(self, *, writer: bool) -> list[str]:
        # Setting WAL on the writer, which opens first, reads the file's header: a file that is
        # not a database fails here, not at its first query.
        wal = ["PRAGMA journal_mode = WAL"] if writer else []
        return [
            f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}",
            *wal,
            f"PRAGMA synchronous = {self.synchronous}",
            "PRAGMA foreign_keys = ON",
        ]

    @contextmanager
    def _opening(self) -> Iterator[None]:
        """Errors of opening a connection and setting its pragmas, as the store's own."""
        with self.translate_errors():
            try:
                yield
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
                    raise
                raise DatabaseUnavailable(
                    f"{self.path} is not a usable SQLite database: {exc}",
                    fix="point database.url at a coordinator database or at a new file",
                ) from exc

    def _open_writer(self) -> sqlite3.Connection:
        """The writer connection (opened on a worker thread, used on the loop's thread)."""
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._cannot_open(exc) from exc
        try:
            with self._opening():
                for pragma in self._pragmas(writer=True):
                    connection.execute(pragma)
                # From now on it runs on the loop's thread, which must never sleep in SQLite
                # nor wait for a checkpoint's fsync.
                connection.execute("PRAGMA busy_timeout = 0")
                connection.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            connection.close()
            raise
        connection.row_factory = _dict_row
        return connection

    async def _open_reader(self) -> aiosqlite.Connection:
        try:
            connection = await aiosqlite.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._cannot_open(exc) from exc
        connection.row_factory = _dict_row  # type: ignore[assignment]
        self._all_readers.append(connection)
        with self._opening():
            for pragma in self._pragmas(writer=False):
                await connection.execute(pragma)
        return connection

    def _cannot_open(self, exc: sqlite3.Error) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"cannot open the SQLite database {self.path}: {exc}",
            fix="check that the path is a writable file and not a folder",
        )

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn sqlite3 exceptions into the store's own errors."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc):
                raise
            raise DatabaseLocked(
                f"{self.describe()} stayed locked by another process for more than {self.busy_timeout_ms} ms",
                fix="stop the process holding the lock (another server, or a `sqlite3` shell with an "
                "open transaction), or raise database.sqlite_busy_timeout_ms",
            ) from exc

    async def _retry_while_locked(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, tried again after asyncio sleeps while another process holds the
        database's lock, for up to `busy_timeout_ms`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout_ms / 1000
        pause = 0.001
        while True:
            try:
                return await attempt()
            except DatabaseLocked:
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            pause = min(2 * pause, _LONGEST_BUSY_PAUSE)

    async def _in_place(self, connection: sqlite3.Connection, statement: str) -> None:
        """Run a statement on the writer, here on the loop's thread (it never sleeps in SQLite)."""
        with self.translate_errors():
            connection.execute(statement)

    @asynccontextmanager
    async def _write_transaction(self) -> AsyncIterator[WriteTx]:
        # Its statements never yield to the loop: let other tasks run first, so that a loop of
        # write transactions (a worker, an import) cannot keep the rest of the server waiting.
        await asyncio.sleep(0)
        async with self._write_lock:
            connection = self._writer
            if connection is None:
                raise StoreError("the store is closed")
            try:
                await self._retry_while_locked(partial(self._in_place, connection, "BEGIN IMMEDIATE"))
                tx = WriteTx(connection, self)
                yield tx
                await tx.run_before_commit()
                await self._retry_while_locked(partial(self._in_place, connection, "COMMIT"))
                self._after_commit()
            except BaseException:
                if connection.in_transaction:
                    with suppress(sqlite3.Error):
                        connection.execute("ROLLBACK")
                raise

    def _after_commit(self) -> None:
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= CHECKPOINT_EVERY and self._checkpointing is None:
            self._commits_since_checkpoint = 0
            self._checkpointing = asyncio.create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database file on a reader's thread, blocking nobody (PASSIVE)."""
        try:
            async with self._reading() as connection:
                await connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (sqlite3.Error, DatabaseUnavailable) as exc:
            log.warning("WAL checkpoint of %s failed (the next one retries): %s", self.path, exc)
        finally:
            self._checkpointing = None

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._readers.empty() and self._reader_count < _READERS:
            self._reader_count += 1
            await self._readers.put(await self._open_reader())
        connection = await self._readers.get()
        try:
            yield connection
        finally:
            self._readers.put_nowait(connection)

    @asynccontextmanager
    async def _read_transaction(self) -> AsyncIterator[ReadTx]:
        async with self._reading() as connection:
            try:
                tx = ReadTx(connection, self)
                yield tx
                await tx.run_before_commit()
                if connection.in_transaction:
                    await connection.execute("COMMIT")
            except BaseException:
                # Also when a caller was cancelled while a statement ran: it may still have begun
                # the transaction on aiosqlite's thread, and calls run there in order.
                with suppress(sqlite3.Error):
                    await connection.execute("ROLLBACK")
                raise

    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[SqliteTx]:
        return self._write_transaction() if write else self._read_transaction()

    async def read_row(self, sql: str, *args: Any) -> Row | None:
        async with self._reading() as connection:  # readers are in autocommit between transactions
            with self.translate_errors():
                rows: list[Row] = list(await connection.execute_fetchall(_to_sqlite_placeholders(sql), args))  # type: ignore[arg-type]
        return rows[0] if rows else None

    async def integrity_problems(self) -> list[str]:
        async with self.transaction(write=False) as tx:
            rows = await tx.fetch("PRAGMA integrity_check")
            problems = [str(next(iter(r.values()))) for r in rows]
            fk_rows = await tx.fetch("PRAGMA foreign_key_check")
        problems = [p for p in problems if p != "ok"]
        problems += [
            f"foreign key violation in {r['table']} row {r['rowid']} -> {r['parent']}" for r in fk_rows
        ]
        return problems

    async def close(self) -> None:
        if self._checkpointing is not None:
            await self._checkpointing
        readers, self._all_readers = self._all_readers, []
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        for connection in readers:
            with suppress(Exception):
                await connection.close()


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
