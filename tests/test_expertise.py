"""Expertise per domain on both backends: classification, learnings, the cap, history, validation,
outcomes, the claim context, the `.claude/` files with hand edits, skills, and `yokeflow init`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp.server import MCPServer

from coordinator.config import DEFAULT_DOMAINS
from coordinator.context import OPERATOR, Caller
from coordinator.domains import classify_domain
from coordinator.errors import InvalidInput, NotFound, PermissionDenied, StateConflict
from coordinator.events import read_events
from coordinator.expertise import ExpertiseService
from coordinator.expertise_files import sync_files
from coordinator.expertise_hooks import expertise_context, learn_from_outcome
from coordinator.planning import NewTask
from coordinator.records import Task
from coordinator.service import Coordinator
from launcher.init_command import add_init_command
from tests.conftest import ManualClock
from tests.gitrepo import make_repo
from tests.test_mcp_support import ok, refused
from tools.learning import TOOLS
from tools.runtime import Identity, Runtime
from tools.server import CoordinatorServer

DAY = 86_400.0
EXPERTISE = ".claude/commands/experts/{}/expertise.yaml"


def service(coord: Coordinator, **learning: Any) -> ExpertiseService:
    """An expertise service over the coordinator's store, with some learning settings changed."""
    config = coord.config.model_copy(update={"learning": coord.config.learning.model_copy(update=learning)})
    return ExpertiseService(coord.store, config, coord.wakeup, coord.workspaces)


async def project(coord: Coordinator, tmp_path: Path | None = None) -> tuple[int, Path | None]:
    """A project, with a real git repository when `tmp_path` is given."""
    repo = make_repo(tmp_path / "repo").resolve() if tmp_path else None
    created = await coord.planning.create_project(OPERATOR, name="p", repo_path=str(repo) if repo else None)
    return created.id, repo


async def make_task(coord: Coordinator, title: str, **extra: Any) -> Task:
    (task,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title=title, **extra)], project="p")
    return task


# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("title", "description", "files", "expected"),
    [
        ("Add the orders table", "", [], "database"),
        ("Write migration 004", "", ["migrations/004_orders.sql"], "database"),
        ("Orders", "", ["schema/sqlite/003.sql"], "database"),
        ("Add a REST endpoint for orders", "", [], "api"),
        ("Orders", "", ["src/api/orders.py"], "api"),
        ("Cart page", "", ["src/components/Cart.tsx", "src/styles/cart.css"], "frontend"),
        ("Cover the cart", "", ["tests/test_cart.py"], "testing"),
        ("Write tests for checkout", "", [], "testing"),
        ("Rotate the JWT secret", "tokens expire after an hour", [], "security"),
        ("Ship it", "build the Docker image in CI", ["Dockerfile", ".github/workflows/ci.yml"], "deployment"),
        ("Tidy the README", "", ["README.md"], "general"),
    ],
)
def test_classification_by_keywords_and_paths(
    title: str, description: str, files: list[str], expected: str
) -> None:
    assert classify_domain(title, description, files, DEFAULT_DOMAINS) == expected


def test_classification_counts_only_configured_domains() -> None:
    assert classify_domain("Add the orders table", "", [], ["api", "general"]) == "general"
    assert (
        classify_domain("Add the orders table", "", [], ["api", "misc"]) == "misc"
    )  # the last one catches all
    custom = ["data-pipeline", "ml_ops", "general"]
    assert classify_domain("Speed up the data pipeline", "", [], custom) == "data-pipeline"
    assert classify_domain("Retrain", "", ["ml_ops/train.py"], custom) == "ml_ops"
    # a tie goes to the domain listed first
    assert classify_domain("API tests", "", [], ["testing", "api"]) == "testing"
    assert classify_domain("API tests", "", [], ["api", "testing"]) == "api"


async def test_tasks_without_a_domain_get_the_classified_one(coord: Coordinator) -> None:
    await project(coord)
    classified = await make_task(coord, "Add the orders table", predicted_files=["migrations/001.sql"])
    named = await make_task(coord, "Add the orders table", domain="api")
    assert (classified.domain, named.domain) == ("database", "api")


# ------------------------------------------------------------------------------------ learnings


async def test_the_same_learning_merges_instead_of_copying(coord: Coordinator, clock: ManualClock) -> None:
    await project(coord)
    svc = service(coord)
    first = await svc.record_learning(
        OPERATOR, kind="pattern", content="Use $1 placeholders in SQL.", domain="database", files=["a.py"]
    )
    clock.advance(60)
    again = await svc.record_learning(
        OPERATOR, kind="pattern", content="  use $1   PLACEHOLDERS in sql ", domain="database", files=["b.py"]
    )
    assert (first.merged, again.merged, first.version, again.version) == (False, True, 1, 2)
    view = await svc.get_expertise(OPERATOR, domain="database")
    (entry,) = view.entries
    assert entry.content == "Use $1 placeholders in SQL."  # the first wording stays
    assert (entry.count, entry.first_seen, entry.last_seen) == (
        2,
        first.entry.first_seen,
        first.entry.first_seen + 60,
    )
    assert entry.files == ["a.py", "b.py"]
    different_kind = await svc.record_learning(
        OPERATOR, kind="gotcha", content="Use $1 placeholders in SQL", domain="database"
    )
    assert (
        not different_kind.merged and len((await svc.get_expertise(OPERATOR, domain="database")).entries) == 2
    )


async def test_the_domain_comes_from_the_call_the_task_or_the_words(coord: Coordinator) -> None:
    await project(coord)
    svc = service(coord)
    task = await make_task(coord, "Style the cart", predicted_files=["src/components/Cart.tsx"])
    assert (
        await svc.record_learning(OPERATOR, kind="gotcha", content="x", domain="api", task_id=task.id)
    ).domain == "api"
    assert (
        await svc.record_learning(OPERATOR, kind="gotcha", content="y", task_id=task.id)
    ).domain == "frontend"
    by_words = await svc.record_learning(OPERATOR, kind="technique", content="Index the foreign key columns")
    by_path = await svc.record_learning(OPERATOR, kind="core_file", content="./src/api/routes.py")
    assert (by_words.domain, by_path.domain, by_path.entry.content) == (
        "database",
        "api",
        "src/api/routes.py",
    )


async def test_bad_learnings_are_refused_naming_the_problem(coord: Coordinator) -> None:
    await project(coord)
    svc = service(coord)
    for kwargs, fragment in (
        ({"kind": "pattern", "content": "  "}, "content: is empty"),
        ({"kind": "pattern", "content": "x", "fix": "y"}, "fix: a pattern has no fix"),
        ({"kind": "pattern", "content": "x", "domain": "cooking"}, "use one of database, api"),
        ({"kind": "core_file", "content": "/etc/passwd"}, "not a path inside the repository"),
        ({"kind": "pattern", "content": "x", "files": ["../up.py"]}, "files[0]"),
        ({"kind": "pattern", "content": "x" * 2001}, "more than 2000"),
    ):
        with pytest.raises(InvalidInput) as caught:
            await svc.record_learning(OPERATOR, **kwargs)
        assert fragment in str(caught.value)
    with pytest.raises(StateConflict, match=r"learning\.enabled: true"):
        await service(coord, enabled=False).record_learning(OPERATOR, kind="pattern", content="x")


async def test_every_change_is_a_version_with_history_and_an_event(
    coord: Coordinator, clock: ManualClock
) -> None:
    project_id, _ = await project(coord)
    svc = service(coord)
    await svc.record_learning(
        OPERATOR, kind="pattern", content="Repository classes wrap SQL", domain="database"
    )
    clock.advance(1)
    await svc.record_learning(
        OPERATOR, kind="pattern", content="repository classes wrap SQL", domain="database"
    )
    clock.advance(1)
    await svc.record_learning(
        OPERATOR, kind="failure", content="FK error", fix="insert parents first", domain="database"
    )
    history = await svc.history(OPERATOR, domain="database")
    assert [(h.version, h.change_type) for h in history] == [
        (3, "learning"),
        (2, "learning"),
        (1, "learning"),
    ]
    assert history[0].summary == "failure learned: FK error"
    assert history[1].summary == "pattern seen again: repository classes wrap SQL"
    assert history[0].diff == {
        "added": [{"kind": "failure", "content": "FK error"}],
        "updated": [],
        "removed": [],
    }
    assert history[1].diff["updated"] == [
        {"kind": "pattern", "content": "Repository classes wrap SQL", "reason": "seen again"}
    ]
    assert await svc.history(OPERATOR, domain="api") == []
    events = [
        e for e in await read_events(coord.store, project_id=project_id) if e.kind == "expertise_updated"
    ]
    assert [e.payload["version"] for e in events] == [1, 2, 3]
    assert events[0].payload == {
        "domain": "database",
        "version": 1,
        "change_type": "learning",
        "summary": "pattern learned: Repository classes wrap SQL",
        "added": 1,
        "updated": 0,
        "removed": 0,
    }
    domains = {d.domain: d for d in await svc.list_domains(OPERATOR)}
    assert list(domains) == list(DEFAULT_DOMAINS)
    assert (domains["database"].version, domains["database"].entries, domains["api"].version) == (3, 2, 0)


async def test_the_line_cap_prunes_oldest_failures_then_least_used_patterns(
    coord: Coordinator, clock: ManualClock
) -> None:
    await project(coord)
    svc = service(coord, expertise_max_lines=50)

    async def learn(kind: Any, content: str) -> Any:
        clock.advance(1)
        return await svc.record_learning(OPERATOR, kind=kind, content=content, domain="database")

    for i in range(3):
        await learn("failure", f"failure {i}")  # two lines each: issue and solution
    for i in range(28):
        await learn("pattern", f"pattern {i}")
    await learn("pattern", "pattern 0")
    await learn("pattern", "pattern 1")
    view = await svc.get_expertise(OPERATOR, domain="database")
    assert view.line_count == 50 and len(view.entries) == 31  # exactly at the cap: nothing pruned
    pruned = [[(p.kind, p.content) for p in (await learn("gotcha", f"gotcha {i}")).pruned] for i in range(7)]
    assert pruned == [
        [("failure", "failure 0")],
        [],
        [("failure", "failure 1")],
        [],
        [("failure", "failure 2")],
        [],
        [("pattern", "pattern 2")],  # no failure left: the least used, least recently seen pattern
    ]
    view = await svc.get_expertise(OPERATOR, domain="database")
    assert view.line_count == 50
    contents = {e.content for e in view.entries}
    assert {"pattern 0", "pattern 1", "pattern 3", "gotcha 6"} <= contents and "pattern 2" not in contents
    (latest, *_) = await svc.history(OPERATOR, domain="database")
    assert latest.summary == "gotcha learned: gotcha 6; pruned 1 to stay within 50 lines"
    assert latest.diff["removed"] == [{"kind": "pattern", "content": "pattern 2", "reason": "line cap of 50"}]


# ----------------------------------------------------------------------------------- validation


async def test_validate_prunes_old_failures_and_files_gone_from_the_repository(
    coord: Coordinator, clock: ManualClock, tmp_path: Path
) -> None:
    _, repo = await project(coord, tmp_path)
    assert repo is not None
    (repo / "src").mkdir()
    (repo / "src" / "db.py").write_text("")
    svc = service(coord)
    await svc.record_learning(OPERATOR, kind="failure", content="old failure", domain="database")
    await svc.record_learning(OPERATOR, kind="core_file", content="src/db.py", domain="database")
    await svc.record_learning(OPERATOR, kind="core_file", content="src/gone.py", domain="database")
    clock.advance(31 * DAY)
    await svc.record_learning(OPERATOR, kind="failure", content="recent failure", domain="database")
    report = await svc.validate(OPERATOR, domain="database")
    assert report.checked_files and report.version == 5
    assert [(r.content, r.reason) for r in report.removed] == [
        ("old failure", "failure not seen for 30 days"),
        ("src/gone.py", "file no longer in the repository"),
    ]
    view = await svc.get_expertise(OPERATOR, domain="database")
    assert {e.content for e in view.entries} == {"src/db.py", "recent failure"}
    assert view.validated_at == clock.now
    assert (await svc.history(OPERATOR, domain="database"))[0].change_type == "validation"
    again = await svc.validate(OPERATOR, domain="database")
    assert again.removed == [] and again.version == 5  # nothing to prune: no new version
    yaml_text = (repo / EXPERTISE.format("database")).read_text()
    assert "src/gone.py" not in yaml_text and "recent failure" in yaml_text  # the files follow


# -------------------------------------------------------------------------- self_improve_interval


def with_interval(coord: Coordinator, interval: str) -> Coordinator:
    """A coordinator over the same store whose learning.self_improve_interval is `interval`."""
    learning = coord.config.learning.model_copy(update={"self_improve_interval": interval})
    return Coordinator(coord.store, coord.config.model_copy(update={"learning": learning}))


async def validated_at(coord: Coordinator, domain: str) -> float | None:
    async with coord.store.transaction(write=False) as tx:
        value = await tx.fetchval("SELECT validated_at FROM expertise_files WHERE domain = $1", domain)
    return None if value is None else float(value)


async def test_a_domain_is_due_for_improvement_a_day_after_its_last_validation(
    coord: Coordinator, clock: ManualClock
) -> None:
    await project(coord)
    svc = service(coord)
    await svc.record_learning(OPERATOR, kind="failure", content="old failure", domain="database")
    await svc.record_learning(OPERATOR, kind="pattern", content="one transaction per change", domain="api")
    assert await svc.improve_due(validated_before=clock.now - DAY) == []  # new today: not due yet
    clock.advance(31 * DAY)
    await svc.validate(OPERATOR, domain="api")
    improved = await svc.improve_due(validated_before=clock.now - DAY)
    assert [
        (report.domain, [item.content for item in report.validation.removed]) for _, report in improved
    ] == [("database", ["old failure"])]
    assert await validated_at(coord, "database") == clock.now
    assert await svc.improve_due(validated_before=clock.now - DAY) == []  # done for today


async def test_session_improves_once_at_start_and_never_leaves_expertise_alone(
    coord: Coordinator, clock: ManualClock
) -> None:
    await project(coord)
    await coord.expertise.record_learning(OPERATOR, kind="failure", content="old failure", domain="database")
    clock.advance(31 * DAY)
    await asyncio.wait_for(with_interval(coord, "never").improve_expertise_forever(), 30)
    assert await validated_at(coord, "database") is None
    clock.advance(1)
    await asyncio.wait_for(with_interval(coord, "session").improve_expertise_forever(), 30)  # one pass
    assert await validated_at(coord, "database") == clock.now
    view = await coord.expertise.get_expertise(OPERATOR, domain="database")
    assert "old failure" not in {entry.content for entry in view.entries}


async def test_daily_upkeep_keeps_checking_while_the_server_runs(
    coord: Coordinator, clock: ManualClock
) -> None:
    await project(coord)
    await coord.expertise.record_learning(
        OPERATOR, kind="pattern", content="small commits", domain="database"
    )
    upkeep = asyncio.create_task(with_interval(coord, "daily").improve_expertise_forever(check_seconds=0.01))
    try:
        for _day in range(2):  # the second validation can only come from a later check
            clock.advance(DAY + 1)
            for _ in range(1000):  # wait for the next check (10 s at most)
                if await validated_at(coord, "database") == clock.now:
                    break
                await asyncio.sleep(0.01)
            assert await validated_at(coord, "database") == clock.now
        assert not upkeep.done()
    finally:
        upkeep.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upkeep


# -------------------------------------------------------------------------------------- outcomes


async def test_a_failure_then_a_completion_records_the_failure_and_its_fix(
    coord: Coordinator, clock: ManualClock
) -> None:
    project_id, _ = await project(coord)
    task = await make_task(coord, "Add the orders table", predicted_files=["migrations/001_orders.sql"])
    config = coord.config
    async with coord.store.transaction() as tx:
        learned = await learn_from_outcome(
            tx, task=task, failed=True, error="sqlite3.OperationalError:\n  no such table: customers",
            summary=None, files=[], now=clock.now, config=config,
        )  # fmt: skip
    assert learned
    clock.advance(60)
    async with coord.store.transaction() as tx:
        learned = await learn_from_outcome(
            tx, task=task, failed=False, error=None, summary="Created customers before orders",
            files=["migrations/001_orders.sql", "/tmp/scratch"], now=clock.now, config=config,
        )  # fmt: skip
    assert learned
    view = await service(coord).get_expertise(OPERATOR, domain="database")
    by_kind = {e.kind: e for e in view.entries}
    failure = by_kind["failure"]
    assert failure.content == "sqlite3.OperationalError: no such table: customers"
    assert (failure.fix, failure.sources) == ("Created customers before orders", [task.id])
    assert by_kind["core_file"].content == "migrations/001_orders.sql" and len(view.entries) == 2
    assert view.completions == 1 and view.version == 2
    history = await service(coord).history(OPERATOR, domain="database")
    assert history[0].summary == f"completion of task {task.id}: 1 added, 1 updated"
    assert history[0].diff["updated"] == [
        {"kind": "failure", "content": failure.content, "reason": "fix found"}
    ]
    events = [
        e for e in await read_events(coord.store, project_id=project_id) if e.kind == "expertise_updated"
    ]
    assert [e.task_id for e in events] == [task.id, task.id]
    async with coord.store.transaction() as tx:  # a plain completion with nothing new only counts
        assert not await learn_from_outcome(
            tx, task=task, failed=False, error=None, summary="again", files=[], now=clock.now, config=config
        )
    off = config.model_copy(update={"learning": config.learning.model_copy(update={"enabled": False})})
    async with coord.store.transaction() as tx:
        assert not await learn_from_outcome(
            tx, task=task, failed=True, error="boom", summary=None, files=[], now=clock.now, config=off
        )
    view = await service(coord).get_expertise(OPERATOR, domain="database")
    assert (view.version, view.completions) == (2, 2)


# ------------------------------------------------------------------------------- claim context


async def test_the_claim_context_puts_the_strongest_and_latest_first_within_its_budget(
    coord: Coordinator, clock: ManualClock
) -> None:
    project_id, _ = await project(coord)
    svc = service(coord)

    async def learn(kind: Any, content: str, **extra: Any) -> None:
        clock.advance(1)
        await svc.record_learning(OPERATOR, kind=kind, content=content, domain="api", **extra)

    await learn("pattern", "Old single pattern")
    await learn("pattern", "Routes live in api/routes.py")
    await learn("pattern", "Routes live in api/routes.py")
    await learn("pattern", "Routes live in api/routes.py")
    await learn("gotcha", "Pagination is 1-based")
    await learn("failure", "422 on empty body", fix="send {} instead of nothing")
    await learn("pattern", "Newest single pattern")
    async with coord.store.transaction() as tx:
        assert await expertise_context(tx, project_id=project_id, domain="frontend") is None
        full = await expertise_context(tx, project_id=project_id, domain="api")
        short = await expertise_context(tx, project_id=project_id, domain="api", max_chars=230)
    assert full is not None and short is not None
    assert full.splitlines()[0] == "### Expertise: api (version 7, confidence 0.50)"
    assert "- 422 on empty body → fix: send {} instead of nothing" in full
    patterns = full.split("**Patterns**\n")[1].split("\n\n")[0].splitlines()
    assert patterns == [
        "- Routes live in api/routes.py (seen 3 times)",
        "- Newest single pattern",
        "- Old single pattern",
    ]
    assert full.index("**Failures seen before") < full.index("**Gotchas**") < full.index("**Patterns**")
    assert len(short) <= 230 and "Routes live in api/routes.py" in short
    assert (
        "Old single pattern" not in short and "more in .claude/commands/experts/api/expertise.yaml" in short
    )
    assert (await svc.get_expertise(OPERATOR, domain="api")).usage_count == 3  # two claims and this read


# ---------------------------------------------------------------------------------------- files


async def test_files_round_trip_with_a_hand_edit(
    coord: Coordinator, clock: ManualClock, tmp_path: Path
) -> None:
    project_id, repo = await project(coord, tmp_path)
    assert repo is not None
    svc = service(coord)
    await svc.record_learning(
        OPERATOR, kind="pattern", content="Queries go through repositories", domain="database"
    )
    await svc.record_learning(OPERATOR, kind="pattern", content="Raw SQL in views", domain="database")
    recorded = await svc.record_learning(
        OPERATOR, kind="failure", content="deadlock in tests", domain="database"
    )
    assert recorded.files_written == [EXPERTISE.format("database")]
    folder = repo / ".claude/commands/experts/database"
    assert {p.name for p in folder.iterdir()} == {"expertise.yaml", "question.md", "self-improve.md"}
    path = folder / "expertise.yaml"
    text = path.read_text()
    assert text.startswith("# Expertise of the database domain: a working memory file")
    data = yaml.safe_load(text)
    assert (data["domain"], data["version"], data["patterns"]) == (
        "database",
        3,
        ["Queries go through repositories", "Raw SQL in views"],
    )
    assert data["learned_from_failures"] == [{"issue": "deadlock in tests", "solution": None}]

    data["patterns"].remove("Raw SQL in views")
    data["gotchas"] = ["Never edit an applied migration"]
    data["learned_from_failures"][0]["solution"] = "one connection per test"
    data["description"] = "How this project stores its data."
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    clock.advance(10)  # learned after the file was written, so missing from it but kept
    task = await make_task(coord, "Add an index", domain="database")
    async with coord.store.transaction() as tx:
        await learn_from_outcome(
            tx, task=task, failed=False, error=None, summary="done", files=["db/index.sql"], now=clock.now,
            config=coord.config,
        )  # fmt: skip

    report = await sync_files(coord.store, repo, project_id, "database", config=coord.config)
    assert report.imported_version == 5 and report.written == [EXPERTISE.format("database")]
    (latest, *_) = await svc.history(OPERATOR, domain="database")
    assert (latest.change_type, latest.summary) == (
        "import",
        f"imported hand edits from {EXPERTISE.format('database')}",
    )
    assert latest.diff == {
        "added": [
            {"kind": "gotcha", "content": "Never edit an applied migration", "reason": "written by hand"}
        ],
        "updated": [{"kind": "failure", "content": "deadlock in tests", "reason": "edited by hand"}],
        "removed": [{"kind": "pattern", "content": "Raw SQL in views", "reason": "deleted by hand"}],
        "description": "How this project stores its data.",
    }
    view = await svc.get_expertise(OPERATOR, domain="database")
    assert view.description == "How this project stores its data."
    assert [(e.kind, e.content, e.fix) for e in view.entries] == [
        ("pattern", "Queries go through repositories", None),
        ("failure", "deadlock in tests", "one connection per test"),
        ("core_file", "db/index.sql", None),
        ("gotcha", "Never edit an applied migration", None),
    ]
    rewritten = yaml.safe_load(path.read_text())
    assert rewritten["core_files"] == ["db/index.sql"] and rewritten["version"] == 5
    assert path.read_text().startswith("# Expertise of the database domain")  # canonical again
    assert (await sync_files(coord.store, None, project_id, "database", config=coord.config)).written == []


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("domain: database\npatterns:\n  - fine\n  - [unclosed\n", ["line 5", "is not valid YAML"]),
        ("domain: database\ngotchas: 5\n", ["line 2", "gotchas must be a list"]),
        ("domain: database\nstack: [python]\n", ["line 2", "unknown key 'stack'"]),
        ("domain: api\n", ["line 1", "names domain 'api' but the file belongs to 'database'"]),
        ("learned_from_failures:\n  - solution: x\n", ["line 2", "learned_from_failures[0] has no issue"]),
        ("core_files:\n  - /etc/passwd\n", ["line 2", "not a path inside the repository"]),
    ],
)
async def test_a_malformed_expertise_file_is_refused_naming_its_line(
    coord: Coordinator, tmp_path: Path, text: str, fragments: list[str]
) -> None:
    project_id, repo = await project(coord, tmp_path)
    assert repo is not None
    svc = service(coord)
    await svc.record_learning(OPERATOR, kind="pattern", content="kept", domain="database")
    path = repo / EXPERTISE.format("database")
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        await sync_files(coord.store, repo, project_id, "database", config=coord.config)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert path.read_text() == text  # not overwritten: the edit is still there to correct
    view = await svc.get_expertise(OPERATOR, domain="database")
    assert view.version == 1 and [e.content for e in view.entries] == ["kept"]
    with pytest.raises(InvalidInput):
        await svc.improve(OPERATOR, domain="database")
    recorded = await svc.record_learning(
        OPERATOR, kind="pattern", content="still recorded", domain="database"
    )
    assert recorded.version == 2 and str(path) in (recorded.files_problem or "")


async def test_files_that_cannot_be_written_leave_the_learning_standing(
    coord: Coordinator, tmp_path: Path
) -> None:
    _, repo = await project(coord, tmp_path)
    assert repo is not None
    (repo / ".claude").write_text("a file where the folder should be")
    recorded = await service(coord).record_learning(OPERATOR, kind="pattern", content="x", domain="api")
    assert recorded.version == 1 and recorded.files_written == []
    assert f"cannot write {repo / EXPERTISE.format('api')}" in (recorded.files_problem or "")
    assert "writable by the coordinator" in (recorded.files_problem or "")


async def test_improve_imports_validates_and_rewrites(coord: Coordinator, tmp_path: Path) -> None:
    _, repo = await project(coord, tmp_path)
    assert repo is not None
    svc = service(coord)
    await svc.record_learning(OPERATOR, kind="core_file", content="src/gone.py", domain="database")
    path = repo / EXPERTISE.format("database")
    path.write_text(path.read_text().replace("gotchas: []", "gotchas:\n- Watch the locks"))
    (report,) = await svc.improve(OPERATOR, domain="database")
    assert report.imported_version == 2 and report.validation.version == 3
    assert [r.content for r in report.validation.removed] == ["src/gone.py"]
    assert EXPERTISE.format("database") in report.files_written
    assert yaml.safe_load(path.read_text())["gotchas"] == ["Watch the locks"]
    everything = await svc.improve(OPERATOR)
    assert [r.domain for r in everything] == list(DEFAULT_DOMAINS)


async def test_entries_are_edited_and_removed_as_versions_and_re_exported(
    coord: Coordinator, clock: ManualClock, tmp_path: Path
) -> None:
    project_id, repo = await project(coord, tmp_path)
    assert repo is not None
    svc = service(coord)
    await svc.record_learning(OPERATOR, kind="pattern", content="Use repositories", domain="database")
    await svc.record_learning(OPERATOR, kind="failure", content="deadlock in tests", domain="database")
    clock.advance(5)
    edited = await svc.edit_entry(
        OPERATOR, domain="database", entry_id=0, content="Queries go through repositories", version=2
    )
    assert edited.version == 3 and edited.entry is not None
    assert (edited.entry.content, edited.entry.count) == ("Queries go through repositories", 1)
    assert edited.files_written == [EXPERTISE.format("database")]
    path = repo / EXPERTISE.format("database")
    assert yaml.safe_load(path.read_text())["patterns"] == ["Queries go through repositories"]
    fixed = await svc.edit_entry(OPERATOR, domain="database", entry_id=1, fix="one connection per test")
    assert fixed.version == 4 and fixed.entry is not None and fixed.entry.fix == "one connection per test"
    (latest, previous, *_) = await svc.history(OPERATOR, domain="database")
    assert (latest.change_type, latest.summary) == ("edited", "failure edited: deadlock in tests")
    assert previous.change_type == "edited"
    assert previous.diff["updated"] == [
        {
            "kind": "pattern",
            "content": "Queries go through repositories",
            "reason": "content edited",
            "was": "Use repositories",
        }
    ]
    same = await svc.edit_entry(
        OPERATOR, domain="database", entry_id=0, content="Queries go through repositories"
    )
    assert same.version == 4 and not same.diff

    removed = await svc.remove_entry(OPERATOR, domain="database", entry_id=0)
    assert removed.version == 5 and removed.entry is None
    assert removed.diff.removed[0].content == "Queries go through repositories"
    assert yaml.safe_load(path.read_text())["patterns"] == []
    view = await svc.get_expertise(OPERATOR, domain="database")
    assert [(e.kind, e.content) for e in view.entries] == [("failure", "deadlock in tests")]
    events = [
        e for e in await read_events(coord.store, project_id=project_id) if e.kind == "expertise_updated"
    ]
    assert [(e.payload["version"], e.payload["change_type"]) for e in events[-3:]] == [
        (3, "edited"),
        (4, "edited"),
        (5, "removed"),
    ]
    assert events[-1].payload["removed"] == 1


async def test_bad_edits_and_removals_are_refused_naming_the_problem(coord: Coordinator) -> None:
    await project(coord)
    svc = service(coord)
    await svc.record_learning(OPERATOR, kind="pattern", content="Use repositories", domain="database")
    await svc.record_learning(OPERATOR, kind="pattern", content="Locks are per row", domain="database")
    with pytest.raises(NotFound, match="entry 7 of expertise domain 'database' does not exist"):
        await svc.edit_entry(OPERATOR, domain="database", entry_id=7, content="x")
    with pytest.raises(NotFound, match="expertise domain 'api' has no entries"):
        await svc.remove_entry(OPERATOR, domain="api", entry_id=0)
    with pytest.raises(NotFound, match="'astrology'"):
        await svc.remove_entry(OPERATOR, domain="astrology", entry_id=0)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"content": "   "}, "content: is empty"),
        ({}, "content: nothing to change"),
        ({"fix": "y"}, "fix: a pattern has no fix"),
        ({"content": "locks are per row."}, "entry 1 already says this"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(InvalidInput, match=fragment):
            await svc.edit_entry(OPERATOR, domain="database", entry_id=0, **kwargs)
    with pytest.raises(StateConflict, match="at version 2, not 1"):
        await svc.remove_entry(OPERATOR, domain="database", entry_id=0, version=1)
    worker = Caller(name="w", role="worker")
    with pytest.raises(PermissionDenied):
        await svc.edit_entry(worker, domain="database", entry_id=0, content="x")
    with pytest.raises(PermissionDenied):
        await svc.remove_entry(worker, domain="database", entry_id=0)
    assert (await svc.get_expertise(OPERATOR, domain="database")).version == 2


async def test_a_skill_is_written_at_the_thresholds_and_not_below(coord: Coordinator, tmp_path: Path) -> None:
    project_id, repo = await project(coord, tmp_path)
    assert repo is not None
    svc = service(coord, skill_confidence_threshold=0.5, skill_usage_threshold=2)
    for _ in range(3):  # two confirmations: confidence 2 / (2 + 2) = 0.5
        await svc.record_learning(
            OPERATOR, kind="pattern", content="Wrap writes in one transaction", domain="api"
        )
    await svc.record_learning(OPERATOR, kind="gotcha", content="Tokens are hashed", domain="api")
    skill = repo / ".claude/skills/api-expert/SKILL.md"
    view = await svc.get_expertise(OPERATOR, domain="api")
    assert (view.confidence, view.usage_count) == (0.5, 1)
    await sync_files(coord.store, repo, project_id, "api", config=svc.config)
    assert not skill.exists()  # used once, below 2
    await svc.get_expertise(OPERATOR, domain="api")
    stricter = service(coord, skill_confidence_threshold=0.51, skill_usage_threshold=2)
    await sync_files(coord.store, repo, project_id, "api", config=stricter.config)
    assert not skill.exists()  # confidence 0.5, below 0.51
    report = await sync_files(coord.store, repo, project_id, "api", config=svc.config)
    assert report.written == [".claude/skills/api-expert/SKILL.md"]
    text = skill.read_text()
    front, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    assert yaml.safe_load(front)["name"] == "api-expert"
    assert "description" in yaml.safe_load(front)
    assert "1. Wrap writes in one transaction" in body and "- Tokens are hashed" in body


# ----------------------------------------------------------------------------------------- init


def _init_args(root: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="yokeflow")
    parser.add_argument("--root", default=".")
    parser.add_argument("--config")
    add_init_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["--root", str(root), "init", *extra])


async def test_yokeflow_init_creates_the_claude_folder_and_keeps_hand_edits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "SPEC.md").write_text("# Shop\n\nA small web shop.\nIt sells tea.\n\n## Pages\n\nMany.\n")
    (root / ".yokeflow.yaml").write_text("learning:\n  domains: [api, general]\n")
    args = _init_args(root, "--spec", str(root / "SPEC.md"))
    assert await args.handler(args) == 0
    created = capsys.readouterr().out
    assert created.count("created") == 7  # CLAUDE.md and three files per domain
    claude = (root / "CLAUDE.md").read_text()
    assert claude.startswith(
        "# Shop\n\nA small web shop.\nIt sells tea.\n\nThe full specification: `SPEC.md`."
    )
    assert "Many." not in claude and "claim_task" in claude and "`api`, `general`" in claude
    for domain in ("api", "general"):
        folder = root / ".claude/commands/experts" / domain
        assert yaml.safe_load((folder / "expertise.yaml").read_text())["domain"] == domain
        assert (folder / "question.md").read_text().startswith("---\nallowed-tools: Bash, Read, Grep, Glob\n")
        assert (
            "argument-hint: [check_git_diff true|false] [focus_area]"
            in (folder / "self-improve.md").read_text()
        )
    assert await args.handler(args) == 0
    assert capsys.readouterr().out.count("kept") == 7  # idempotent
    (root / "CLAUDE.md").write_text("# mine\n")
    expertise = root / ".claude/commands/experts/api/expertise.yaml"
    expertise.write_text("domain: api\ngotchas:\n- hand written\n")
    assert await args.handler(args) == 0
    assert "kept      CLAUDE.md (edited by hand; --force overwrites it)" in capsys.readouterr().out
    assert (root / "CLAUDE.md").read_text() == "# mine\n"
    forced = _init_args(root, "--spec", str(root / "SPEC.md"), "--force")
    assert await forced.handler(forced) == 0
    assert "rewrote   CLAUDE.md" in capsys.readouterr().out
    assert (root / "CLAUDE.md").read_text() == claude
    assert (
        expertise.read_text() == "domain: api\ngotchas:\n- hand written\n"
    )  # learnings are never overwritten


# ------------------------------------------------------------------------------------ MCP tools


async def test_an_agent_records_and_reads_expertise_through_mcp(coord: Coordinator, tmp_path: Path) -> None:
    _, repo = await project(coord, tmp_path)
    task = await make_task(coord, "Add the orders endpoint", predicted_files=["src/api/orders.py"])
    token = (await coord.agents.register(OPERATOR, persona="implementer")).token

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        yield Runtime(coord, Identity(token=token))

    server = CoordinatorServer("learning", lifespan=lifespan, tools=[spec.tool for spec in TOOLS])
    async with Client(server) as client:
        recorded = await ok(
            client,
            "record_learning",
            {"kind": "failure", "content": "422 on an empty body", "fix": "send {}", "task_id": task.id},
        )
        assert (recorded["domain"], recorded["version"], recorded["merged"]) == ("api", 1, False)
        assert recorded["files_written"] == [
            EXPERTISE.format("api"),
            ".claude/commands/experts/api/question.md",
            ".claude/commands/experts/api/self-improve.md",
        ]
        await refused(
            client, "record_learning", {"kind": "pattern", "content": "x", "domain": "cooking"}, "use one of"
        )
        await refused(client, "record_learning", {"kind": "hunch", "content": "x"}, "kind")
        view = await ok(client, "get_expertise", {"domain": "api"})
    assert (view["version"], view["usage_count"]) == (1, 1)
    (entry,) = view["entries"]
    assert (entry["kind"], entry["content"], entry["fix"], entry["sources"]) == (
        "failure",
        "422 on an empty body",
        "send {}",
        [task.id],
    )
    assert repo is not None and (repo / EXPERTISE.format("api")).exists()
