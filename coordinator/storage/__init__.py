"""Storage: one `Store` interface; the database URL picks the backend."""

from __future__ import annotations

import time
from dataclasses import dataclass

from coordinator.errors import UnsupportedDatabase
from coordinator.storage.base import Clock, IntegrityViolation, Row, SchemaStatus, Store, Tx
from coordinator.storage.migrations import migrate, require_current_schema, schema_status

__all__ = [
    "IntegrityViolation",
    "Row",
    "SchemaStatus",
    "Store",
    "StoreOptions",
    "Tx",
    "backend_of",
    "migrate",
    "open_store",
    "require_current_schema",
    "schema_status",
]


@dataclass(frozen=True)
class StoreOptions:
    """Backend tuning taken from the `database` config section."""

    sqlite_synchronous: str = "NORMAL"
    sqlite_busy_timeout_ms: int = 5000
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout_seconds: float = 10.0


def backend_of(url: str) -> str:
    """`sqlite` or `postgresql` for a database URL; anything else is refused."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise UnsupportedDatabase(
        f"database.url: unknown database scheme {scheme or url!r}",
        fix="use sqlite:///path/to/file.db (the default) or postgresql://user@host:5432/dbname",
    )


async def open_store(
    url: str,
    *,
    options: StoreOptions | None = None,
    create: bool = True,
    prepare: bool = True,
    clock: Clock = time.time,
) -> Store:
    """Open the database at `url`.

    With `prepare` (the default) pending migrations are applied and a schema newer than
    this code is refused; `create=False` refuses to create a missing SQLite file.
    """
    options = options or StoreOptions()
    store: Store
    if backend_of(url) == "sqlite":
        from coordinator.storage.sqlite import SqliteStore

        store = await SqliteStore.open(
            url,
            create=create,
            synchronous=options.sqlite_synchronous,
            busy_timeout_ms=options.sqlite_busy_timeout_ms,
            clock=clock,
        )
    else:
        from coordinator.storage.postgres import PostgresStore

        store = await PostgresStore.open(
            url,
            min_size=options.pool_min_size,
            max_size=options.pool_max_size,
            connect_timeout=options.connect_timeout_seconds,
            clock=clock,
        )
    if prepare:
        try:
            await migrate(store)
        except BaseException:
            await store.close()
            raise
    return store
