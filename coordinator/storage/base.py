"""The storage interface: one `Store` with a connector per backend (SQLite, PostgreSQL).

Queries are written once, in PostgreSQL's `$1` placeholder style; the SQLite backend
rewrites the placeholders. Every change happens inside `store.transaction()`, which
commits on success and rolls back on any exception.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

Row = dict[str, Any]
Clock = Callable[[], float]


class IntegrityViolation(Exception):
    """A constraint of the schema refused a write (unique key, foreign key, check)."""


class Tx(Protocol):
    """One open transaction. SQL uses `$1`-style placeholders on every backend."""

    backend: str

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement and return the number of rows it changed."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def execute_script(self, script: str) -> None:
        """Run several `;`-separated statements without parameters (migrations)."""
        ...

    def before_commit(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` inside this transaction just before it commits (in the order added)."""
        ...


class CommitHooks:
    """The `before_commit` part of a Tx, shared by both backends."""

    def __init__(self) -> None:
        self._hooks: list[Callable[[], Awaitable[None]]] = []

    def before_commit(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._hooks.append(hook)

    async def run_before_commit(self) -> None:
        hooks, self._hooks = self._hooks, []
        for hook in hooks:
            await hook()


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against the migrations this code ships."""

    current: int
    latest: int
    applied: list[int]
    pending: list[int]
    checksum_mismatches: list[int]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and self.current == self.latest


class Store(ABC):
    """A transactional connection to one coordinator database."""

    backend: ClassVar[str]

    def __init__(self, url: str, *, clock: Clock = time.time) -> None:
        self.url = url
        self.clock = clock

    @abstractmethod
    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[Tx]:
        """Open a transaction. `write=False` promises no writes (a snapshot read)."""

    @abstractmethod
    async def read_row(self, sql: str, *args: Any) -> Row | None:
        """The first row of one read statement, run on its own: a single statement reads one
        consistent snapshot, so it needs no transaction around it (one round trip, not three)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """A short, password-free description of the database for messages."""

    async def integrity_problems(self) -> list[str]:
        """Problems a database-level integrity check finds (empty when healthy)."""
        return []

    async def listen(self, channel: str, on_notify: Callable[[], None]) -> bool:
        """Call `on_notify` when another process signals `channel`; False if the backend cannot."""
        return False


def encode_json(value: Any) -> str:
    """Serialise a value for a JSON column (compact, stable key order)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def decode_json(value: Any) -> Any:
    """Read a JSON column as stored by either backend."""
    if value is None or not isinstance(value, str | bytes):
        return value
    return json.loads(value)
