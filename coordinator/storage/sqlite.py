"""SQLite backend (aiosqlite): WAL, BEGIN IMMEDIATE writes, safe for several processes on one file.

Inside one process, write transactions queue on an asyncio lock (one writer connection),
so concurrent coroutines never spin on SQLite's busy handler; across processes,
`BEGIN IMMEDIATE` plus `busy_timeout` serialise writers. Reads use a small pool of
reader connections, each read in its own snapshot transaction.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiosqlite

from coordinator.errors import DatabaseLocked, DatabaseUnavailable, InvalidInput, StoreError
from coordinator.storage.base import Clock, CommitHooks, IntegrityViolation, Row, Store

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
_READERS = 4


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


_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class SqliteTx(CommitHooks):
    """A transaction on one aiosqlite connection.

    A write transaction begins with its first statement: when that statement writes, sqlite3
    itself issues `BEGIN IMMEDIATE` before it, in the same call on aiosqlite's thread (the
    writer connection's `isolation_level`); otherwise the transaction sends `BEGIN IMMEDIATE`
    first. Either way every statement runs inside the transaction, one thread hop sooner.
    """

    backend = "sqlite"

    def __init__(self, connection: aiosqlite.Connection, store: SqliteStore, *, begin: str | None) -> None:
        super().__init__()
        self._connection = connection
        self._store = store
        self._begin = begin

    async def _prepare(self, sql: str) -> str:
        """The statement in SQLite's placeholders, once the transaction has begun (or will with it)."""
        if self._begin is not None:
            begin, self._begin = self._begin, None
            if not _WRITES.match(sql):
                await self._connection.execute(begin)
        return _to_sqlite_placeholders(sql)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with self._store.translate_errors():
            rows = await self._connection.execute_fetchall(await self._prepare(sql), args)
        return list(rows)  # type: ignore[arg-type]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def execute(self, sql: str, *args: Any) -> int:
        with self._store.translate_errors():
            cursor = await self._connection.execute(await self._prepare(sql), args)
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._store.translate_errors():
            await self._connection.executemany(await self._prepare(sql), rows)

    async def execute_script(self, script: str) -> None:
        for statement in split_sql_script(script):
            await self.execute(statement)


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
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._reader_count = 0
        self._all: list[aiosqlite.Connection] = []

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
        store._writer = await store._connect(first=True)
        return store

    def describe(self) -> str:
        return f"SQLite database {self.path}"

    async def _connect(self, *, first: bool = False) -> aiosqlite.Connection:
        """A connection; the first one is the writer, whose writing statements begin a transaction."""
        try:
            connection = await aiosqlite.connect(self.path, isolation_level="IMMEDIATE" if first else None)
        except sqlite3.Error as exc:
            raise DatabaseUnavailable(
                f"cannot open the SQLite database {self.path}: {exc}",
                fix="check that the path is a writable file and not a folder",
            ) from exc
        connection.row_factory = _dict_row  # type: ignore[assignment]
        self._all.append(connection)
        with self.translate_errors():
            try:
                await connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                if first:
                    # Reading the header fails here (not later) when the file is not a database.
                    await connection.execute_fetchall("PRAGMA journal_mode = WAL")
                await connection.execute(f"PRAGMA synchronous = {self.synchronous}")
                await connection.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
                    raise
                await self.close()
                raise DatabaseUnavailable(
                    f"{self.path} is not a usable SQLite database: {exc}",
                    fix="point database.url at a coordinator database or at a new file",
                ) from exc
        return connection

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

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._writer is None:
            raise StoreError("the store is closed")
        async with self._write_lock:
            yield self._writer

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._readers.empty() and self._reader_count < _READERS:
            self._reader_count += 1
            await self._readers.put(await self._connect())
        connection = await self._readers.get()
        try:
            yield connection
        finally:
            self._readers.put_nowait(connection)

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[SqliteTx]:
        opener = self._writing() if write else self._reading()
        async with opener as connection:
            tx = SqliteTx(connection, self, begin="BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield tx
                await tx.run_before_commit()
                if connection.in_transaction:
                    with self.translate_errors():
                        await connection.execute("COMMIT")
            except BaseException:
                # Also when a caller was cancelled while a statement ran: it may still have begun
                # the transaction on aiosqlite's thread, and calls run there in order.
                with suppress(sqlite3.Error):
                    await connection.execute("ROLLBACK")
                raise

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
        connections, self._all = self._all, []
        self._writer = None
        for connection in connections:
            with suppress(Exception):
                await connection.close()


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
