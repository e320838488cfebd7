"""Worktrees and the merge queue through the REST API: list, conflicts, retry, resolve by hand.

A real git repository; the server's own merge queue merges in the background (as it does in
production) while agents work through an in-process coordinator on the same database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from coordinator.config import Config
from coordinator.context import OPERATOR, Caller
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from coordinator.work import Claimed
from tests.conftest import Database
from tests.gitrepo import git, make_repo, run_git
from tests.test_rest_support import answer, plan_shop, refused, register, serving, until

MANUAL = Config.model_validate({"parallel": {"on_merge_failure": "manual"}})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project")


@pytest.fixture
async def local(database: Database, repo: Path) -> AsyncIterator[Coordinator]:
    coord = await Coordinator.open(database.url, MANUAL, repo=repo)
    try:
        yield coord
    finally:
        await coord.close()


def commit_in(worktree: str, text: str) -> str:
    (Path(worktree) / "README.md").write_text(text)
    git(worktree, "commit", "-q", "-am", text.strip())
    return git(worktree, "rev-parse", "HEAD")


async def complete(coord: Coordinator, worker: Caller, claimed: Claimed, text: str) -> None:
    assert claimed.worktree is not None
    sha = commit_in(claimed.worktree, text)
    await coord.work.complete(worker, task_id=claimed.task.id, lease_id=claimed.lease.lease_id, commit=sha)


async def status_becomes(http: httpx2.AsyncClient, task_id: int, status: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        task = answer(await http.get(f"/api/tasks/{task_id}"))["task"]
        return task if task["status"] == status else None

    found: dict[str, Any] = await until(check, f"task {task_id} to become {status}")
    return found


async def test_worktrees_merges_conflicts_retry_and_resolving_by_hand(
    local: Coordinator, database: Database, repo: Path
) -> None:
    ids = await plan_shop(local, *(NewTask(title=f"Title {n}", local_key=n) for n in "abcd"))
    ids.sort()
    a, b, c, d = ids
    workers = [await register(local, name) for name in ("ann", "bob", "cat", "dan")]
    claims = []
    for (worker, _), task in zip(workers, ids, strict=True):
        claimed = await local.work.claim(worker, task_id=task)
        assert isinstance(claimed, Claimed)
        claims.append(claimed)
    with serving(database.url, config=MANUAL, repo=repo) as server:
        http = server.client()
        async with http:
            lanes = answer(await http.get("/api/projects/shop/worktrees"))["worktrees"]
            assert [(w["agent"]["name"], w["current_task"]["id"]) for w in lanes] == [
                ("ann", a),
                ("bob", b),
                ("cat", c),
                ("dan", d),
            ]
            assert all(w["branch"] == w["current_task"]["branch"] for w in lanes)

            for (worker, _), claimed, name in zip(workers, claims, ("ann", "bob", "cat", "dan"), strict=True):
                await complete(local, worker, claimed, f"# from {name}\n")
            await status_becomes(http, a, "done")
            for task in (b, c, d):
                await status_becomes(http, task, "conflict")
            assert (
                answer(await http.get("/api/projects/shop/worktrees"))["worktrees"][0]["current_task"] is None
            )

            merges = answer(await http.get("/api/projects/shop/merges"))["merges"]
            assert sorted((m["task_id"], m["status"]) for m in merges) == [
                (a, "merged"),
                (b, "conflict"),
                (c, "conflict"),
                (d, "conflict"),
            ]
            conflicts = answer(await http.get("/api/projects/shop/merges", params={"status": "conflict"}))[
                "merges"
            ]
            assert len(conflicts) == 3
            merge_of = {m["task_id"]: m["id"] for m in merges}
            detail = answer(await http.get(f"/api/merges/{merge_of[b]}"))
            assert detail["merge"]["conflict_files"] == ["README.md"] and detail["task"]["id"] == b
            refused(await http.get("/api/merges/999"), 404, "not_found", "merge 999")
            refused(await http.post(f"/api/merges/{merge_of[a]}/retry"), 409, "state_conflict", "merged")

            # A person resolves bob's conflict on his branch; the retried merge lands.
            worktree = claims[1].worktree or ""
            assert run_git(worktree, "merge", "-q", "main").returncode != 0
            commit_in(worktree, "# from ann and bob\n")
            retried = answer(await http.post(f"/api/merges/{merge_of[b]}/retry"))
            assert retried["status"] == "queued" and retried["conflict_files"] == []
            await status_becomes(http, b, "done")
            assert git(repo, "show", "main:README.md") == "# from ann and bob"

            # Cat's branch was merged by hand outside the queue; dan's task is done again.
            resolved = answer(await http.post(f"/api/tasks/{c}/resolve", json={"reason": "merged by hand"}))
            assert resolved["status"] == "done" and resolved["completed_at"] is not None
            reopened = answer(await http.post(f"/api/tasks/{d}/resolve", json={"action": "reopen"}))
            assert reopened["status"] == "pending" and reopened["attempts"] == 0
            refused(await http.post(f"/api/tasks/{a}/resolve", json={}), 409, "state_conflict", "it is done")
            refused(
                await http.post(f"/api/tasks/{a}/resolve", json={"action": "reopen"}), 409, "state_conflict"
            )
            refused(
                await http.post(f"/api/tasks/{c}/resolve", json={"action": "merge"}), 422, "invalid_input"
            )
            refused(await http.post("/api/tasks/999/resolve", json={}), 404, "not_found")
        async with server.client(workers[0][1]) as as_worker:
            refused(await as_worker.post(f"/api/merges/{merge_of[d]}/retry"), 403, "permission_denied")
            refused(await as_worker.post(f"/api/tasks/{d}/resolve", json={}), 403, "permission_denied")
    events = (await local.observe.get_events(OPERATOR, project="shop", limit=1000)).events
    kinds = [e.kind for e in events]
    assert kinds.count("merge_retried") == 1 and kinds.count("task_resolved") == 1
    assert kinds.count("task_reopened") == 1
