"""Worktrees per agent, branches per task and the merge queue, through the coordinator, on both backends.

Real git repositories in temporary folders; done means merged: dependents wait for the merge.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import Config
from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.errors import InvalidInput, StateConflict
from coordinator.events import read_events
from coordinator.gitcli import GitError
from coordinator.merge_queue import LEASE_SECONDS
from coordinator.planning import NewTask
from coordinator.records import TaskStatus
from coordinator.service import Coordinator
from coordinator.work import Claimed, NoWork
from tests.conftest import Database, ManualClock
from tests.gitrepo import git, make_repo, run_git
from tests.test_rest_support import until

S = TaskStatus
WORKER = Path(__file__).parent / "workers" / "merge_worker.py"


def config_of(**parallel: Any) -> Config:
    return Config.model_validate({"parallel": parallel})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "project")


@pytest.fixture
async def open_coord(database: Database, clock: ManualClock, repo: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[Coordinator] = []

    async def open_(**parallel: Any) -> Coordinator:
        coord = await Coordinator.open(database.url, config_of(**parallel), clock=clock, repo=repo)
        opened.append(coord)
        return coord

    yield open_
    for coord in opened:
        await coord.close()


async def plan(coord: Coordinator, *tasks: NewTask) -> list[int]:
    await coord.planning.create_project(OPERATOR, name="shop")
    created = await coord.planning.create_tasks(OPERATOR, list(tasks), project="shop")
    return [t.id for t in created]


async def agent(coord: Coordinator, name: str, persona: str = "implementer") -> Caller:
    registered = await coord.agents.register(OPERATOR, persona=persona, name=name, project="shop")
    return agent_caller(registered.agent)


async def claim(coord: Coordinator, caller: Caller, task_id: int | None = None) -> Claimed:
    outcome = await coord.work.claim(caller, task_id=task_id)
    assert isinstance(outcome, Claimed), outcome
    return outcome


def commit_in(worktree: str, files: dict[str, str], message: str = "work") -> str:
    for path, text in files.items():
        (Path(worktree) / path).parent.mkdir(parents=True, exist_ok=True)
        (Path(worktree) / path).write_text(text)
    git(worktree, "add", "-A")
    git(worktree, "commit", "-q", "-m", message)
    return git(worktree, "rev-parse", "HEAD")


async def finish(coord: Coordinator, caller: Caller, claimed: Claimed, files: dict[str, str]) -> str:
    assert claimed.worktree is not None
    sha = commit_in(claimed.worktree, files, f"task {claimed.task.id}")
    done = await coord.work.complete(
        caller, task_id=claimed.task.id, lease_id=claimed.lease.lease_id, summary="did it", commit=sha
    )
    assert done.status == S.MERGING
    return sha


async def status_of(coord: Coordinator, task_id: int) -> TaskStatus:
    return (await coord.observe.get_task(OPERATOR, task_id=task_id)).task.status


def show(repo: Path, ref: str, path: str) -> str:
    return git(repo, "show", f"{ref}:{path}")


# ------------------------------------------------------------------------------------------ tests


async def test_an_agent_holding_a_task_gets_it_again_and_its_worktree_keeps_the_work(
    open_coord: Callable[..., Any], clock: ManualClock
) -> None:
    coord = await open_coord()
    first, second = await plan(coord, NewTask(title="first"), NewTask(title="second"))
    ada = await agent(coord, "ada")
    claimed = await claim(coord, ada)
    assert claimed.task.id == first and not claimed.resumed and claimed.worktree is not None
    worktree = Path(claimed.worktree)
    (worktree / "half.txt").write_text("uncommitted work\n")
    branch = git(worktree, "symbolic-ref", "--short", "HEAD")

    clock.advance(100)  # e.g. the agent restarted and claims again
    again = await claim(coord, ada)
    assert (again.task.id, again.lease.lease_id, again.resumed) == (first, claimed.lease.lease_id, True)
    assert again.lease.expires_at == clock.now + again.lease.ttl_seconds  # extended, like a heartbeat
    assert (again.worktree, again.target_branch) == (claimed.worktree, "main")
    assert git(worktree, "symbolic-ref", "--short", "HEAD") == branch
    assert (worktree / "half.txt").read_text() == "uncommitted work\n"
    assert git(worktree, "stash", "list") == ""
    with pytest.raises(StateConflict, match=f"you still hold task {first}"):
        await coord.work.claim(ada, task_id=second)
    events = await read_events(coord.store, project_id=claimed.task.project_id, limit=1000)
    assert [e.kind for e in events].count("task_claimed") == 1
    assert [s.status for s in await coord.observe.session_history(OPERATOR)] == ["running"]

    # Handed back, the worktree is free for the next task.
    await coord.work.release(ada, task_id=first, lease_id=claimed.lease.lease_id)
    nxt = await claim(coord, ada)
    assert not nxt.resumed and nxt.task.id == first  # released work is first in line again
    await coord.work.release(ada, task_id=first, lease_id=nxt.lease.lease_id)
    assert (await claim(coord, ada, task_id=second)).task.id == second


async def test_parallel_branches_merge_and_dependents_wait_for_the_merge(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord()
    a, b, c = await plan(
        coord,
        NewTask(title="Cart API", local_key="a"),
        NewTask(title="Catalog page", local_key="b"),
        NewTask(title="Checkout", depends_on=["a"]),
    )
    ann, bob = await agent(coord, "ann"), await agent(coord, "bob")
    first, second = await claim(coord, ann, a), await claim(coord, bob, b)
    assert first.worktree != second.worktree
    assert first.task.branch and first.task.branch.startswith("yokeflow/task-")
    assert git(first.worktree or "", "branch", "--show-current") == first.task.branch
    await finish(coord, ann, first, {"cart.py": "cart\n"})
    await finish(coord, bob, second, {"catalog.py": "catalog\n"})

    # Completed but not merged: the dependent is not ready yet.
    waiting = await coord.work.claim(ann, task_id=c)
    assert isinstance(waiting, NoWork) and waiting.reason == "task_not_ready"

    runs = await coord.merges.drain()
    assert [r.outcome.status for r in runs if r.outcome] == ["merged", "merged"]
    assert await status_of(coord, a) == S.DONE and await status_of(coord, b) == S.DONE
    assert show(repo, "main", "cart.py") == "cart" and show(repo, "main", "catalog.py") == "catalog"

    # The dependent starts from the merged target: its branch already holds both files.
    third = await claim(coord, ann, c)
    assert third.worktree == first.worktree  # the agent's worktree is reused
    assert (Path(third.worktree or "") / "cart.py").read_text() == "cart\n"
    assert (Path(third.worktree or "") / "catalog.py").read_text() == "catalog\n"
    kinds = [e.kind for e in await read_events(coord.store, project_id=None, limit=1000)]
    assert kinds.count("task_merged") == 2 and kinds.count("merge_queued") == 2


async def test_a_conflict_is_found_before_merging_and_a_reviewer_resolves_it_on_the_same_branch(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord()
    a, b, after_b = await plan(
        coord,
        NewTask(title="Title one", local_key="a"),
        NewTask(title="Title two", local_key="b"),
        NewTask(title="Uses title two", depends_on=["b"]),
    )
    ann, bob = await agent(coord, "ann"), await agent(coord, "bob")
    first, second = await claim(coord, ann, a), await claim(coord, bob, b)
    await finish(coord, ann, first, {"README.md": "# from ann\n"})
    await finish(coord, bob, second, {"README.md": "# from bob\n"})
    main_before = git(repo, "rev-parse", "main")

    runs = await coord.merges.drain()
    outcomes = {r.merge.task_id: r.outcome for r in runs}
    merged, conflicting = outcomes[a], outcomes[b]
    assert merged is not None and merged.status == "merged"
    assert conflicting is not None and conflicting.status == "conflict"
    assert conflicting.conflict_files == ["README.md"]
    assert git(repo, "rev-list", "--count", f"{main_before}..main") != "0"  # only ann's merge landed
    assert show(repo, "main", "README.md") == "# from ann"
    task_b = (await coord.observe.get_task(OPERATOR, task_id=b)).task
    assert task_b.status == S.CONFLICT and "README.md" in (task_b.last_error or "")

    # A reviewer follow-up exists, on bob's branch; the dependent of b still waits.
    tasks = (await coord.observe.list_tasks(OPERATOR, project="shop")).tasks
    follow_up = next(t for t in tasks if t.title.startswith("Resolve the merge conflict of task"))
    assert follow_up.persona == "reviewer"
    rev = await agent(coord, "rita", persona="reviewer")
    fixing = await claim(coord, rev)
    assert fixing.task.id == follow_up.id and fixing.task.branch == second.task.branch
    assert isinstance(await coord.work.claim(ann, task_id=after_b), NoWork)

    worktree = fixing.worktree or ""
    assert run_git(worktree, "merge", "-q", "main").returncode != 0  # the conflict, now in the worktree
    sha = commit_in(worktree, {"README.md": "# from ann and bob\n"}, "resolve")
    await coord.work.complete(rev, task_id=follow_up.id, lease_id=fixing.lease.lease_id, commit=sha)
    runs = await coord.merges.drain()
    assert [r.outcome.status for r in runs if r.outcome] == ["merged"]
    assert show(repo, "main", "README.md") == "# from ann and bob"
    assert await status_of(coord, b) == S.DONE and await status_of(coord, follow_up.id) == S.DONE
    assert (await claim(coord, ann, after_b)).task.id == after_b


async def test_a_red_test_gate_leaves_the_target_untouched(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord(
        test_command="echo checking; test -f must_exist.txt || { echo 'must_exist.txt is missing'; exit 3; }",
        on_merge_failure="manual",
    )
    (a,) = await plan(coord, NewTask(title="Breaks the build"))
    ann = await agent(coord, "ann")
    await finish(coord, ann, await claim(coord, ann), {"broken.py": "oops\n"})
    main_before = git(repo, "rev-parse", "main")

    (run,) = await coord.merges.drain()
    assert run.outcome is not None and run.outcome.status == "rejected"
    assert "must_exist.txt is missing" in (run.outcome.test_output or "")
    assert git(repo, "rev-parse", "main") == main_before
    task = (await coord.observe.get_task(OPERATOR, task_id=a)).task
    assert task.status == S.REJECTED and "must_exist.txt is missing" in (task.last_error or "")
    tasks = (await coord.observe.list_tasks(OPERATOR, project="shop")).tasks
    assert len(tasks) == 1  # manual: no follow-up task


async def test_the_users_checkout_on_the_target_branch_is_left_exactly_as_it_was(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord()
    (repo / "README.md").write_text("my unsaved edit\n")
    (repo / "staged.txt").write_text("staged by me\n")
    git(repo, "add", "staged.txt")
    (repo / "notes.txt").write_text("untracked notes\n")
    before = {p: (repo / p).read_bytes() for p in ("README.md", "staged.txt", "notes.txt")}
    staged_before = git(repo, "diff", "--cached", "--", "staged.txt")

    await plan(coord, NewTask(title="Feature"))
    ann = await agent(coord, "ann")
    await finish(coord, ann, await claim(coord, ann), {"feature.py": "feature\n"})
    (run,) = await coord.merges.drain()
    assert run.outcome is not None and run.outcome.status == "merged"

    assert show(repo, "main", "feature.py") == "feature"
    assert {p: (repo / p).read_bytes() for p in before} == before
    assert git(repo, "diff", "--cached", "--", "staged.txt") == staged_before
    assert git(repo, "branch", "--show-current") == "main"
    assert not (repo / "feature.py").exists()  # nothing was written into the user's checkout


async def test_a_task_without_new_commits_is_done_at_once_and_a_foreign_commit_is_refused(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord()
    a, b = await plan(coord, NewTask(title="Only reads"), NewTask(title="Writes"))
    ann = await agent(coord, "ann")
    reading = await claim(coord, ann, a)
    done = await coord.work.complete(
        ann, task_id=a, lease_id=reading.lease.lease_id, summary="nothing to change"
    )
    assert done.status == S.DONE

    writing = await claim(coord, ann, b)
    foreign = git(repo, "commit-tree", git(repo, "rev-parse", "main^{tree}"), "-m", "elsewhere")
    with pytest.raises(InvalidInput) as refused:
        await coord.work.complete(ann, task_id=b, lease_id=writing.lease.lease_id, commit=foreign)
    assert refused.value.field == "commit" and str(writing.task.branch) in str(refused.value)
    assert await status_of(coord, b) == S.IN_PROGRESS  # nothing was written


async def test_done_when_completed_lets_dependents_start_before_the_merge(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord(done_when="completed")
    a, b = await plan(coord, NewTask(title="First", local_key="a"), NewTask(title="Second", depends_on=["a"]))
    ann = await agent(coord, "ann")
    first = await claim(coord, ann, a)
    sha = commit_in(first.worktree or "", {"first.py": "1\n"})
    done = await coord.work.complete(ann, task_id=a, lease_id=first.lease.lease_id, commit=sha)
    assert done.status == S.DONE
    assert (await claim(coord, ann, b)).task.id == b
    (run,) = await coord.merges.drain()
    assert run.outcome is not None and run.outcome.status == "merged"
    assert show(repo, "main", "first.py") == "1"


async def test_done_when_completed_still_shows_a_merge_that_failed_and_queues_its_fix(
    open_coord: Callable[..., Any], repo: Path
) -> None:
    coord: Coordinator = await open_coord(done_when="completed")
    a, b = await plan(coord, NewTask(title="Title one"), NewTask(title="Title two"))
    ann, bob = await agent(coord, "ann"), await agent(coord, "bob")
    first, second = await claim(coord, ann, a), await claim(coord, bob, b)
    for caller, claimed, text in ((ann, first, "# from ann\n"), (bob, second, "# from bob\n")):
        sha = commit_in(claimed.worktree or "", {"README.md": text})
        done = await coord.work.complete(
            caller, task_id=claimed.task.id, lease_id=claimed.lease.lease_id, commit=sha
        )
        assert done.status == S.DONE  # done at completion: its dependents may start
    runs = await coord.merges.drain()
    assert [r.outcome.status for r in runs if r.outcome] == ["merged", "conflict"]
    assert show(repo, "main", "README.md") == "# from ann"
    # The task stays done, but the merge, the event and the reviewer's follow-up say it did not land.
    assert await status_of(coord, b) == S.DONE
    merges = {m.task_id: m for m in await coord.observe.list_merges(OPERATOR)}
    assert merges[b].status == "conflict" and merges[b].conflict_files == ["README.md"]
    events = await read_events(coord.store, project_id=None, limit=1000)
    assert any(e.kind == "task_merge_conflict" and e.task_id == b for e in events)
    follow_up = await claim(coord, await agent(coord, "rev", persona="reviewer"))
    assert follow_up.task.title.startswith(f"Resolve the merge conflict of task {b}")
    assert follow_up.task.branch == second.task.branch


async def test_a_test_gate_longer_than_the_merge_lease_keeps_its_merge(
    database: Database, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("coordinator.merge_queue.LEASE_SECONDS", 1.5)  # renewed every 0.5 s
    config = config_of(test_command="sleep 4")
    coord = await Coordinator.open(database.url, config, repo=repo)
    other = await Coordinator.open(database.url, config, repo=repo)  # a second server on the queue
    try:
        (a,) = await plan(coord, NewTask(title="Slow gate"))
        ann = await agent(coord, "ann")
        await finish(coord, ann, await claim(coord, ann), {"slow.py": "x\n"})
        running = asyncio.create_task(coord.merges.drain())

        async def started() -> bool:
            return (await coord.observe.list_merges(OPERATOR))[0].status != "queued"

        await until(started, "the first server to take the merge")
        taken_over = []
        while not running.done():
            if (merge := await other.merges.take()) is not None:
                taken_over.append(merge)
            await asyncio.sleep(0.1)
        (run,) = await running
        assert taken_over == [] and run.outcome is not None and run.outcome.status == "merged"
        assert await status_of(coord, a) == S.DONE and show(repo, "main", "slow.py") == "x"
        kinds = [e.kind for e in await read_events(coord.store, project_id=None, limit=1000)]
        assert "merge_taken_over" not in kinds and kinds.count("task_merged") == 1
    finally:
        await other.close()
        await coord.close()


async def test_a_merge_that_landed_before_a_crash_is_recorded_as_merged_by_the_next_runner(
    open_coord: Callable[..., Any], repo: Path, clock: ManualClock
) -> None:
    coord: Coordinator = await open_coord()
    (a,) = await plan(coord, NewTask(title="Lands, then the server dies"))
    ann = await agent(coord, "ann")
    await finish(coord, ann, await claim(coord, ann), {"landed.py": "x\n"})
    merge = await coord.merges.take()
    assert merge is not None
    ws = await coord.workspaces.of_project(merge.project_id)
    assert ws is not None
    outcome = await coord.merges._attempt(ws, merge)  # every step up to the ref move, then "crash"
    assert outcome is not None and outcome.status == "merged"
    assert await status_of(coord, a) == S.MERGING

    clock.advance(LEASE_SECONDS + 1)
    other: Coordinator = await open_coord()
    (run,) = await other.merges.drain()
    assert run.outcome is not None and run.outcome.status == "merged"
    assert await status_of(other, a) == S.DONE
    assert git(repo, "log", "--format=%s", "main").count("Merge task") == 1  # merged exactly once


async def test_a_kill_during_the_test_gate_is_recovered_with_the_target_before_or_after(
    open_coord: Callable[..., Any], repo: Path, clock: ManualClock, database: Database
) -> None:
    coord: Coordinator = await open_coord()
    (a,) = await plan(coord, NewTask(title="Killed mid-merge"))
    ann = await agent(coord, "ann")
    await finish(coord, ann, await claim(coord, ann), {"killed.py": "x\n"})
    main_before = git(repo, "rev-parse", "main")

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        database.url,
        str(repo),
        "touch gate-ran; sleep 30",
        str(clock()),
        start_new_session=True,
    )
    try:
        while await merge_status(coord) != "testing":
            assert proc.returncode is None, "the merge worker ended early"
            await asyncio.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    assert git(repo, "rev-parse", "main") == main_before  # before: the ref never moved

    clock.advance(LEASE_SECONDS + 1)  # the dead runner's lease runs out
    other: Coordinator = await open_coord()
    (run,) = await other.merges.drain()
    assert run.outcome is not None and run.outcome.status == "merged"
    assert show(repo, "main", "killed.py") == "x"  # after: merged once, completely
    assert await status_of(other, a) == S.DONE
    integration = repo / ".worktrees" / "_integration"
    assert not (integration / "gate-ran").exists()  # the interrupted run's leftovers were cleaned


async def merge_status(coord: Coordinator) -> str | None:
    async with coord.store.transaction(write=False) as tx:
        value = await tx.fetchval("SELECT status FROM merges ORDER BY id DESC LIMIT 1")
    return None if value is None else str(value)


async def test_bad_repositories_give_clear_errors_and_stop_the_new_agent(
    database: Database, clock: ManualClock, tmp_path: Path
) -> None:
    not_git = tmp_path / "plain"
    not_git.mkdir()
    coord = await Coordinator.open(database.url, config_of(), clock=clock, repo=not_git)
    try:
        await plan(coord, NewTask(title="Anything"))
        with pytest.raises(GitError) as refused:
            await agent(coord, "ann")
        assert "not" in str(refused.value) and "git" in str(refused.value)
        (stopped,) = await coord.agents.list_agents(OPERATOR, project="shop")
        assert stopped.status == "stopped"
    finally:
        await coord.close()

    detached = make_repo(tmp_path / "detached")
    git(detached, "checkout", "-q", "--detach")
    coord = await Coordinator.open(database.url, config_of(), clock=clock, repo=detached)
    try:
        with pytest.raises(GitError) as refused:
            await agent(coord, "bob")
        assert "detached" in str(refused.value).lower()
    finally:
        await coord.close()

    coord = await Coordinator.open(
        database.url, config_of(target_branch="release"), clock=clock, repo=make_repo(tmp_path / "norelease")
    )
    try:
        with pytest.raises(GitError) as refused:
            await agent(coord, "cid")
        assert "release" in str(refused.value)
    finally:
        await coord.close()
