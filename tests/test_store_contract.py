"""The Store contract: the same behaviour from the SQLite and the PostgreSQL backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coordinator.errors import DatabaseLocked, DatabaseUnavailable, SchemaMismatch, UnsupportedDatabase
from coordinator.records import Project
from coordinator.storage import IntegrityViolation, Store, migrate, open_store, schema_status
from coordinator.storage.base import encode_json
from coordinator.storage.migrations import shipped_migrations
from tests.conftest import Database

EXPECTED_TABLES = {
    "projects",
    "epics",
    "tasks",
    "task_dependencies",
    "task_files",
    "epic_dependencies",
    "task_tests",
    "personas",
    "agents",
    "events",
    "parallel_batches",
    "worktrees",
    "merges",
    "agent_costs",
    "expertise_files",
    "expertise_updates",
    "schema_migrations",
}
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
EXPECTED_VIEWS = {"v_project_costs", "v_parallel_progress", "v_worktree_status"}


async def _insert_project(tx, name: str = "demo") -> int:  # type: ignore[no-untyped-def]
    return int(
        await tx.fetchval(
            "INSERT INTO projects (name, metadata, created_at, updated_at) VALUES ($1, $2, $3, $3) RETURNING id",
            name,
            encode_json({"plan": {"batches": [[1, 2]]}}),
            1.5,
        )
    )


async def _insert_task(tx, project_id: int, title: str = "t") -> int:  # type: ignore[no-untyped-def]
    return int(
        await tx.fetchval(
            "INSERT INTO tasks (project_id, title, created_at, updated_at) VALUES ($1, $2, 0, 0) RETURNING id",
            project_id,
            title,
        )
    )


async def _relations(store: Store) -> tuple[set[str], set[str]]:
    async with store.transaction(write=False) as tx:
        if tx.backend == "sqlite":
            rows = await tx.fetch("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')")
            tables = {r["name"] for r in rows if r["type"] == "table"} - {"sqlite_sequence"}
            views = {r["name"] for r in rows if r["type"] == "view"}
        else:
            rows = await tx.fetch(
                "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = current_schema()"
            )
            tables = {r["table_name"] for r in rows if r["table_type"] == "BASE TABLE"}
            views = {r["table_name"] for r in rows if r["table_type"] == "VIEW"}
    return tables, views


async def test_migrations_create_every_table_and_view(store: Store) -> None:
    tables, views = await _relations(store)
    assert tables == EXPECTED_TABLES
    assert views == EXPECTED_VIEWS
    status = await schema_status(store)
    assert status.up_to_date and status.current == len(shipped_migrations(store.backend))


async def test_migrating_twice_is_a_no_op(store: Store) -> None:
    assert await migrate(store) == []
    async with store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM schema_migrations") == len(
            shipped_migrations(store.backend)
        )


async def test_a_database_one_version_behind_is_upgraded_and_keeps_its_rows(database: Database) -> None:
    latest = len(shipped_migrations(database.backend))
    store = await database.open(prepare=False)
    try:
        assert await migrate(store, up_to=latest - 1) == list(range(1, latest))
        async with store.transaction() as tx:
            project_id = await _insert_project(tx)
            await tx.execute(
                "INSERT INTO agent_costs (project_id, model, cost_usd, created_at) VALUES ($1, 'sonnet', 1.5, 0)",
                project_id,
            )
        assert (await schema_status(store)).pending == [latest]
        assert await migrate(store) == [latest]
        assert (await schema_status(store)).up_to_date
        assert (await _relations(store))[0] == EXPECTED_TABLES
        async with store.transaction(write=False) as tx:
            assert await tx.fetchval("SELECT SUM(cost_usd) FROM agent_costs") == 1.5
    finally:
        await store.close()


async def test_schema_newer_than_code_is_refused_and_nothing_changes(database: Database) -> None:
    store = await database.open()
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (999, 'future', 'x', 0)"
        )
    await store.close()
    with pytest.raises(SchemaMismatch) as caught:
        await database.open()
    assert "schema version 999" in str(caught.value) and "upgrade" in str(caught.value)
    store = await database.open(prepare=False)
    try:
        assert (await schema_status(store)).current == 999
        with pytest.raises(SchemaMismatch):
            await migrate(store)
    finally:
        await store.close()


async def test_commit_and_rollback(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await _insert_task(tx, project_id, "never")
            raise RuntimeError("boom")
    async with store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM tasks") == 0
        row = await tx.fetchrow("SELECT * FROM projects WHERE id = $1", project_id)
    assert row is not None
    project = Project.model_validate(row)
    assert project.metadata == {"plan": {"batches": [[1, 2]]}}
    assert project.created_at == 1.5 and project.status == "active"


async def test_a_caller_cancelled_while_a_transaction_begins_leaves_the_store_usable(store: Store) -> None:
    """A background task (the sweeper, a merge runner) cancelled at any await of opening a
    transaction must not leave a connection inside a transaction for the next caller."""

    async def write() -> None:
        async with store.transaction() as tx:
            await _insert_project(tx)

    for steps in range(4):  # cancel at each of the first awaits of opening a transaction
        opening = asyncio.create_task(write())
        for _ in range(steps):
            await asyncio.sleep(0)
        opening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await opening
        async with store.transaction() as tx:
            await tx.execute("DELETE FROM projects")
    async with store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM projects") == 0


async def test_placeholders_repeat_and_rowcounts(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        for title in ("a", "b", "c"):
            await _insert_task(tx, project_id, title)
        changed = await tx.execute(
            "UPDATE tasks SET priority = $1, estimate = $2 WHERE project_id = $3 AND title <> $4 AND priority < $1",
            5,
            2.5,
            project_id,
            "a",
        )
        assert changed == 2
        assert await tx.execute("DELETE FROM tasks WHERE title = $1", "zzz") == 0
        rows = await tx.fetch("SELECT title, priority, estimate FROM tasks ORDER BY title")
    assert [(r["title"], r["priority"], r["estimate"]) for r in rows] == [
        ("a", 0, 1.0),
        ("b", 5, 2.5),
        ("c", 5, 2.5),
    ]


async def test_constraints_raise_integrity_violation_and_roll_back(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        first = await _insert_task(tx, project_id)
        second = await _insert_task(tx, project_id)
    bad_statements = [
        ("INSERT INTO projects (name, created_at, updated_at) VALUES ('demo', 0, 0)", ()),  # unique name
        (
            "INSERT INTO task_dependencies (task_id, depends_on_task_id, created_at) VALUES ($1, $1, 0)",
            (first,),
        ),
        (
            "INSERT INTO task_dependencies (task_id, depends_on_task_id, created_at) VALUES ($1, 99999, 0)",
            (first,),
        ),
        (
            "INSERT INTO tasks (project_id, title, status, created_at, updated_at) VALUES ($1, 'x', 'bogus', 0, 0)",
            (project_id,),
        ),
        (
            "INSERT INTO tasks (project_id, title, estimate, created_at, updated_at) VALUES ($1, 'x', 0, 0, 0)",
            (project_id,),
        ),
    ]
    for sql, args in bad_statements:
        with pytest.raises(IntegrityViolation):
            async with store.transaction() as tx:
                await tx.execute("UPDATE projects SET description = 'half-written'")
                await tx.execute(sql, *args)
    async with store.transaction() as tx:
        await tx.execute(
            "INSERT INTO task_dependencies (task_id, depends_on_task_id, kind, created_at) VALUES ($1, $2, 'hard', 0)",
            second,
            first,
        )
    with pytest.raises(IntegrityViolation):
        async with store.transaction() as tx:
            await tx.execute(
                "INSERT INTO task_dependencies (task_id, depends_on_task_id, kind, created_at) "
                "VALUES ($1, $2, 'soft', 0)",
                second,
                first,
            )
    async with store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM projects WHERE description = 'half-written'") == 0
        assert await tx.fetchval("SELECT COUNT(*) FROM task_dependencies") == 1


async def test_deleting_a_task_removes_its_dependency_rows(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        a, b = await _insert_task(tx, project_id), await _insert_task(tx, project_id)
        await tx.execute(
            "INSERT INTO task_dependencies (task_id, depends_on_task_id, created_at) VALUES ($1, $2, 0)", b, a
        )
        await tx.execute("DELETE FROM tasks WHERE id = $1", a)
        assert await tx.fetchval("SELECT COUNT(*) FROM task_dependencies") == 0


async def test_json_booleans_and_nulls_round_trip(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        task_id = await _insert_task(tx, project_id)
        for passes in (True, False, None):
            await tx.execute(
                "INSERT INTO task_tests (task_id, description, steps, passes, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, 0, 0)",
                task_id,
                f"passes={passes}",
                encode_json(["open", "ünïcode ✓"]),
                passes,
            )
        rows = await tx.fetch("SELECT steps, passes FROM task_tests ORDER BY id")
    assert [None if r["passes"] is None else bool(r["passes"]) for r in rows] == [True, False, None]
    assert all(json.loads(r["steps"]) == ["open", "ünïcode ✓"] for r in rows)


async def test_concurrent_writers_lose_no_update(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        task_id = await _insert_task(tx, project_id)

    async def bump() -> None:
        for _ in range(10):
            async with store.transaction() as tx:
                attempts = await tx.fetchval(
                    "SELECT attempts FROM tasks WHERE id = $1 FOR UPDATE"
                    if tx.backend == "postgresql"
                    else "SELECT attempts FROM tasks WHERE id = $1",
                    task_id,
                )
                await asyncio.sleep(0)
                await tx.execute("UPDATE tasks SET attempts = $1 WHERE id = $2", attempts + 1, task_id)

    await asyncio.gather(*(bump() for _ in range(16)))
    async with store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT attempts FROM tasks WHERE id = $1", task_id) == 160


async def test_events_get_increasing_ids(store: Store) -> None:
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        ids = [
            await tx.fetchval(
                "INSERT INTO events (project_id, actor, kind, payload, created_at) VALUES ($1, 'test', $2, '{}', 0) "
                "RETURNING id",
                project_id,
                f"k{i}",
            )
            for i in range(5)
        ]
    assert ids == sorted(ids) and len(set(ids)) == 5


async def test_integrity_check_passes_on_a_healthy_database(store: Store) -> None:
    assert await store.integrity_problems() == []


async def test_several_stores_on_one_database_share_state(database: Database) -> None:
    stores = [await database.open() for _ in range(4)]
    try:
        async with stores[0].transaction() as tx:
            project_id = await _insert_project(tx)

        async def add(store: Store, n: int) -> None:
            for i in range(n):
                async with store.transaction() as tx:
                    await _insert_task(tx, project_id, f"{id(store)}-{i}")

        await asyncio.gather(*(add(s, 25) for s in stores))
        for s in stores:
            async with s.transaction(write=False) as tx:
                assert await tx.fetchval("SELECT COUNT(*) FROM tasks") == 100
    finally:
        for s in stores:
            await s.close()


async def test_a_transaction_that_begins_with_a_write_is_one_transaction(database: Database) -> None:
    """Its first statement already runs inside it (SQLite begins it with that statement): other
    connections see nothing before the commit, and a failure later undoes the first write too."""
    writer, other = await database.open(), await database.open()
    try:
        with pytest.raises(RuntimeError):
            async with writer.transaction() as tx:
                project_id = await _insert_project(tx)
                async with other.transaction(write=False) as look:
                    assert await look.fetchval("SELECT COUNT(*) FROM projects") == 0
                await _insert_task(tx, project_id)
                assert await tx.fetchval("SELECT COUNT(*) FROM tasks") == 1
                raise RuntimeError("boom")
        async with writer.transaction() as tx:
            await tx.execute("UPDATE tasks SET attempts = 1")  # a write that changes nothing still commits
            project_id = await _insert_project(tx)
        async with other.transaction(write=False) as look:
            assert await look.fetchval("SELECT COUNT(*) FROM projects") == 1
            assert await look.fetchval("SELECT COUNT(*) FROM tasks") == 0
        async with writer.transaction():
            pass  # a transaction without statements commits nothing and leaves the connection free
        async with writer.transaction() as tx:
            assert await tx.fetchval("SELECT id FROM projects") == project_id
    finally:
        await writer.close()
        await other.close()


async def test_read_row_reads_one_statement_outside_a_transaction(database: Database) -> None:
    store, other = await database.open(), await database.open()
    try:
        assert await store.read_row("SELECT * FROM projects WHERE id = $1", 1) is None
        async with other.transaction() as tx:
            project_id = await _insert_project(tx, "seen")
            assert await store.read_row("SELECT * FROM projects WHERE id = $1", project_id) is None
        row = await store.read_row("SELECT name FROM projects WHERE id = $1", project_id)
        assert row == {"name": "seen"}
        async with store.transaction() as tx:  # the reading connection was left clean
            await tx.execute("UPDATE projects SET name = $2 WHERE id = $1", project_id, "renamed")
        assert await other.read_row("SELECT name FROM projects WHERE id = $1", project_id) == {
            "name": "renamed"
        }
    finally:
        await store.close()
        await other.close()


async def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(UnsupportedDatabase) as caught:
        await open_store("mysql://localhost/db")
    assert "mysql" in str(caught.value) and "sqlite:///" in str(caught.value)


async def test_unreachable_postgres_names_the_server_and_the_fix() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store("postgresql://nobody:secret@127.0.0.1:9/none", options=None)
    text = str(caught.value)
    assert "127.0.0.1:9" in text and "secret" not in text and "Fix:" in text


# --- SQLite-specific guarantees -------------------------------------------------------------


async def test_sqlite_missing_file_is_not_created_without_create(tmp_path: Path) -> None:
    target = tmp_path / "absent.db"
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store(f"sqlite:///{target}", create=False)
    assert "yokeflow db migrate" in str(caught.value)
    assert not target.exists()


async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    target = tmp_path / "notes.db"
    target.write_text("just some text, not a database " * 100)
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store(f"sqlite:///{target}")
    assert "not a usable SQLite database" in str(caught.value)
    assert target.read_text().startswith("just some text")


async def test_sqlite_locked_file_gives_a_clear_error_and_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = await open_store(url)
    await store.close()
    holder = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    from coordinator.storage import StoreOptions

    store = await open_store(url, options=StoreOptions(sqlite_busy_timeout_ms=100), prepare=False)
    try:
        with pytest.raises(DatabaseLocked) as caught:
            async with store.transaction() as tx:
                await _insert_project(tx)
        assert "locked by another process" in str(caught.value) and "sqlite_busy_timeout_ms" in str(
            caught.value
        )
        holder.execute("ROLLBACK")
        async with store.transaction(write=False) as tx:
            assert await tx.fetchval("SELECT COUNT(*) FROM projects") == 0
    finally:
        holder.close()
        await store.close()


async def test_sqlite_writer_waits_for_another_process_without_stalling_the_loop(tmp_path: Path) -> None:
    """Another process holds the write lock; the store's write waits for it with asyncio sleeps.

    The lock is released by a coroutine on the same event loop: had the write slept in SQLite's
    busy handler on the loop's thread, that coroutine could not run and the write would fail.
    """
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = await open_store(url)
    holder = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO projects (name, created_at, updated_at) VALUES ('theirs', 1, 1)")

    async def release_soon() -> None:
        await asyncio.sleep(0.2)
        holder.execute("COMMIT")

    try:
        releasing = asyncio.create_task(release_soon())
        async with store.transaction() as tx:
            await _insert_project(tx)
        await releasing
        async with store.transaction(write=False) as tx:
            assert await tx.fetchval("SELECT COUNT(*) FROM projects") == 2
    finally:
        holder.close()
        await store.close()


async def test_sqlite_checkpoints_the_wal_on_a_reader_not_on_the_loop(tmp_path: Path) -> None:
    """The writer makes no checkpoint of its own (its fsync would stall the event loop); a reader
    makes one every CHECKPOINT_EVERY write transactions, so the WAL reaches the database file."""
    from coordinator.storage.sqlite import CHECKPOINT_EVERY

    path = tmp_path / "c.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        async with store.transaction() as tx:
            assert await tx.fetchval("PRAGMA wal_autocheckpoint") == 0
        size_before = path.stat().st_size
        for i in range(CHECKPOINT_EVERY):
            async with store.transaction() as tx:
                await _insert_project(tx, name=f"project {i}")
        for _ in range(200):  # the checkpoint runs in the background: wait for it (10 s at most)
            if path.stat().st_size > size_before:
                break
            await asyncio.sleep(0.05)
        assert path.stat().st_size > size_before
    finally:
        await store.close()


async def test_sqlite_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        async with store.transaction(write=False) as tx:
            assert (await tx.fetchval("PRAGMA journal_mode")).lower() == "wal"
            assert await tx.fetchval("PRAGMA foreign_keys") == 1
            assert await tx.fetchval("PRAGMA synchronous") == 1  # NORMAL
    finally:
        await store.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from coordinator.storage import open_store

    async def main(url, project_id, worker, n):
        store = await open_store(url)
        for i in range(n):
            async with store.transaction() as tx:
                await tx.execute(
                    "INSERT INTO tasks (project_id, title, created_at, updated_at) VALUES ($1, $2, 0, 0)",
                    project_id, f"w{worker}-{i}")
                await tx.execute("UPDATE projects SET description = CAST(CAST(description AS INTEGER) + 1 AS TEXT)"
                                 " WHERE id = $1", project_id)
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
    """
)


async def test_sqlite_several_processes_on_one_file_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = await open_store(url)
    async with store.transaction() as tx:
        project_id = await _insert_project(tx)
        await tx.execute("UPDATE projects SET description = '0'")
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WRITER,
            url,
            str(project_id),
            str(w),
            "60",
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
        )
        for w in range(4)
    ]
    for process in processes:
        _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    async with store.transaction(write=False) as tx:
        assert await tx.fetchval("SELECT COUNT(*) FROM tasks") == 240
        assert await tx.fetchval("SELECT description FROM projects") == "240"
    assert await store.integrity_problems() == []
    await store.close()
