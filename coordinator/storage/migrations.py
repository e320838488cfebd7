"""Numbered SQL migrations per backend (`schema/<backend>/NNN_name.sql`) and their bookkeeping."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

from coordinator.errors import SchemaMismatch, StoreError
from coordinator.resources import resource_dir
from coordinator.storage.base import SchemaStatus, Store, Tx

_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  DOUBLE PRECISION NOT NULL
)"""
_MIGRATION_LOCK_KEY = 0x59F10C00  # pg_advisory_xact_lock key shared by all migrators


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@cache
def shipped_migrations(backend: str) -> tuple[Migration, ...]:
    """The migrations this code ships for a backend, in order, numbered 1..n without gaps."""
    folder = resource_dir("schema") / backend
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise StoreError(f"unexpected file {path.name} in schema/{backend}/ (expected NNN_name.sql)")
        migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise StoreError(
                f"schema/{backend}/ has no migration {expected:03d} before {migration.version:03d}"
            )
    return tuple(migrations)


async def _bookkeeping_exists(tx: Tx) -> bool:
    if tx.backend == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    else:
        sql = "SELECT 1 WHERE to_regclass('schema_migrations') IS NOT NULL"
    return await tx.fetchval(sql) is not None


async def _applied(tx: Tx) -> dict[int, str]:
    if not await _bookkeeping_exists(tx):
        return {}
    rows = await tx.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    return {int(row["version"]): str(row["checksum"]) for row in rows}


def _status(backend: str, applied: dict[int, str]) -> SchemaStatus:
    shipped = shipped_migrations(backend)
    by_version = {m.version: m for m in shipped}
    return SchemaStatus(
        current=max(applied, default=0),
        latest=len(shipped),
        applied=sorted(applied),
        pending=[m.version for m in shipped if m.version not in applied],
        checksum_mismatches=sorted(
            v for v, checksum in applied.items() if v in by_version and by_version[v].checksum != checksum
        ),
    )


def _refuse_newer(store: Store, status: SchemaStatus) -> None:
    if status.current > status.latest:
        raise SchemaMismatch(
            f"{store.describe()} has schema version {status.current}, newer than this yokeflow "
            f"understands (up to {status.latest}); nothing was changed",
            fix="upgrade yokeflow-coordinator (pip install -U yokeflow-coordinator), "
            "or point database.url at another database",
        )


async def schema_status(store: Store) -> SchemaStatus:
    async with store.transaction(write=False) as tx:
        return _status(store.backend, await _applied(tx))


async def migrate(store: Store, *, up_to: int | None = None) -> list[int]:
    """Apply every pending migration (up to version `up_to`, if given) in one transaction; return the
    versions applied."""
    async with store.transaction() as tx:
        if tx.backend == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
        status = _status(store.backend, await _applied(tx))
        _refuse_newer(store, status)
        pending = [v for v in status.pending if up_to is None or v <= up_to]
        if not pending:
            return []
        await tx.execute(_BOOKKEEPING)
        for migration in shipped_migrations(store.backend):
            if migration.version in pending:
                await tx.execute_script(migration.sql)
                await tx.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                    store.clock(),
                )
        return pending


async def require_current_schema(store: Store) -> SchemaStatus:
    """Refuse a database whose schema is newer than the code, or not yet migrated."""
    status = await schema_status(store)
    _refuse_newer(store, status)
    if status.pending:
        raise SchemaMismatch(
            f"{store.describe()} is at schema version {status.current}; this yokeflow needs "
            f"version {status.latest}",
            fix="run `yokeflow db migrate`",
        )
    return status
