"""The worktree manager on real repositories: one worktree per agent, a branch per task, the user's checkout untouched."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

from coordinator.errors import InvalidInput, StateConflict
from coordinator.gitcli import Git, GitError
from coordinator.hygiene import required_ignores
from coordinator.worktrees import LOCK_REASON, WorktreeManager
from tests.gitrepo import git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo").resolve()


def with_gitignore(repo: Path) -> Path:
    """The repository with the standard .gitignore already committed."""
    (repo / ".gitignore").write_text("\n".join(required_ignores()) + "\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    return repo


def manager(repo: Path, **options: str) -> WorktreeManager:
    return WorktreeManager(Git(repo), **options)


def commit(cwd: Path, name: str, text: str, message: str) -> str:
    (cwd / name).write_text(text)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


def succeeds(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode == 0


def make_user_mess(repo: Path) -> None:
    """An unstaged change to a tracked file, a staged new file and an untracked file."""
    (repo / "README.md").write_text("# project\nhalf-written line")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "notes.txt").write_text("untracked notes\n")


def snapshot(repo: Path) -> dict[str, object]:
    """Everything a user could see of their checkout."""
    files = {
        str(path.relative_to(repo)): path.read_bytes()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and path.relative_to(repo).parts[0] not in (".git", ".worktrees")
    }
    return {
        "status": git(repo, "status", "--porcelain=v2", "--untracked-files=all"),
        "staged": git(repo, "diff", "--cached"),
        "unstaged": git(repo, "diff"),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "files": files,
    }


# --- the target branch and bad input -----------------------------------------------------------


async def test_the_target_is_the_checked_out_branch_or_the_configured_one(repo: Path) -> None:
    assert await manager(repo).target() == "main"
    git(repo, "branch", "release")
    assert await manager(repo, target_branch="release").target() == "release"


async def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="not inside a git repository") as caught:
        await manager(tmp_path).target()
    assert caught.value.fix and "git init" in caught.value.fix


async def test_a_subfolder_is_not_the_repository(repo: Path) -> None:
    (repo / "src").mkdir()
    with pytest.raises(GitError, match="not at its top") as caught:
        await manager(repo / "src").ensure_ready()
    assert caught.value.fix == f"point --repo at {repo}"


async def test_a_detached_head_needs_a_configured_target(repo: Path) -> None:
    git(repo, "switch", "-q", "--detach")
    with pytest.raises(GitError, match="detached HEAD") as caught:
        await manager(repo).ensure_ready()
    assert caught.value.fix and "parallel.target_branch" in caught.value.fix
    assert await manager(repo, target_branch="main").target() == "main"


async def test_a_missing_target_branch(repo: Path) -> None:
    with pytest.raises(GitError, match="'trunk' does not exist") as caught:
        await manager(repo, target_branch="trunk").ensure_ready()
    assert caught.value.fix and "one of: main" in caught.value.fix


async def test_an_empty_repository(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--initial-branch=main")
    with pytest.raises(GitError, match="no commits yet") as caught:
        await manager(tmp_path).ensure_ready()
    assert caught.value.fix and "git commit" in caught.value.fix


@pytest.mark.parametrize("folder", ["../elsewhere", "/tmp/abs", ".git/worktrees", "."])
def test_the_worktree_folder_must_lie_inside_the_repository(repo: Path, folder: str) -> None:
    with pytest.raises(InvalidInput, match="worktree_dir"):
        manager(repo, worktree_dir=folder)


# --- getting ready: ignore rules and the .gitignore commit --------------------------------------


async def test_ready_excludes_worktrees_and_commits_gitignore_on_the_checked_out_target(repo: Path) -> None:
    before = git(repo, "rev-parse", "HEAD")
    done = await manager(repo).ensure_ready()
    assert len(done) == 2
    assert "/.worktrees/" in (repo / ".git/info/exclude").read_text().splitlines()
    assert git(repo, "rev-parse", "main~1") == before
    assert git(repo, "diff", "--name-only", "main~1", "main") == ".gitignore"
    assert git(repo, "show", "main:.gitignore").splitlines() == required_ignores()
    assert git(repo, "log", "-1", "--format=%an <%ae>", "main") == "YokeFlow <yokeflow@localhost>"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert await manager(repo).ensure_ready() == []


async def test_ready_keeps_the_users_changes_when_it_commits_gitignore_on_their_branch(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "mine")
    make_user_mess(repo)
    before = snapshot(repo)
    head = git(repo, "rev-parse", "HEAD")
    await manager(repo).ensure_ready()
    after = snapshot(repo)
    assert git(repo, "rev-parse", "HEAD~1") == head
    assert git(repo, "diff", "--name-only", "HEAD~1", "HEAD") == ".gitignore"
    assert after == before | {"files": after["files"]}  # status, staged and unstaged diffs unchanged
    before_files, after_files = before["files"], after["files"]
    assert isinstance(before_files, dict) and isinstance(after_files, dict)
    assert after_files.pop(".gitignore").decode().startswith("*.log\n.venv/\n")
    before_files.pop(".gitignore")
    assert after_files == before_files
    assert not succeeds(repo, "cat-file", "-e", "HEAD:staged.txt")  # still only staged


async def test_ready_commits_gitignore_to_another_target_without_touching_the_checkout(repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "feature")
    make_user_mess(repo)
    before = snapshot(repo)
    feature = git(repo, "rev-parse", "HEAD")
    await manager(repo, target_branch="main").ensure_ready()
    assert snapshot(repo) == before
    assert git(repo, "rev-parse", "HEAD") == feature
    assert git(repo, "show", "main:.gitignore").splitlines() == required_ignores()
    assert git(repo, "rev-parse", "main~1") == feature


async def test_ready_refuses_to_commit_over_uncommitted_gitignore_changes(repo: Path) -> None:
    (repo / ".gitignore").write_text("*.log\n")
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(StateConflict, match=r"\.gitignore .* has changes not committed") as caught:
        await manager(repo).ensure_ready()
    assert caught.value.fix and "node_modules/" in caught.value.fix
    assert git(repo, "rev-parse", "HEAD") == head
    assert (repo / ".gitignore").read_text() == "*.log\n"


async def test_the_users_checkout_is_untouched_by_agents(repo: Path) -> None:
    with_gitignore(repo)
    make_user_mess(repo)
    before = snapshot(repo)
    head = git(repo, "rev-parse", "HEAD")
    worktrees = manager(repo)
    await worktrees.ensure_ready()
    first = await worktrees.ensure_worktree("implementer-1")
    second = await worktrees.ensure_worktree("implementer-2")
    await worktrees.start_branch(first, "yokeflow/task-1-a")
    await worktrees.start_branch(second, "yokeflow/task-2-b")
    commit(first, "a.txt", "a\n", "task 1")
    (second / "README.md").write_text("agent edit\n")
    assert snapshot(repo) == before
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "stash", "list") == ""


# --- worktrees ------------------------------------------------------------------------------------


async def test_a_worktree_is_made_detached_at_the_target_and_reused(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("implementer-3")
    assert path == repo / ".worktrees" / "implementer-3"
    assert git(path, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert not succeeds(path, "symbolic-ref", "-q", "HEAD")
    (path / "scratch.txt").write_text("kept\n")
    assert await worktrees.ensure_worktree("implementer-3") == path
    assert (path / "scratch.txt").read_text() == "kept\n"
    infos = await worktrees.list()
    assert [info.path for info in infos] == [repo, path]
    assert infos[1].detached and not infos[1].locked and infos[1].branch is None


async def test_worktrees_are_made_safely_at_the_same_time(repo: Path) -> None:
    worktrees = manager(repo)
    folders = [f"agent-{n}" for n in range(1, 7)]
    paths = await asyncio.gather(*(worktrees.ensure_worktree(folder) for folder in folders))
    assert [path.name for path in paths] == folders
    assert len(await worktrees.list()) == 7
    assert all((path / "README.md").exists() for path in paths)


@pytest.mark.parametrize("folder", ["Bad Name", "_integration", "../up", "con", ""])
async def test_unsafe_folder_names_are_refused(repo: Path, folder: str) -> None:
    with pytest.raises(InvalidInput, match="folder"):
        await manager(repo).ensure_worktree(folder)


async def test_a_worktree_whose_folder_was_deleted_is_made_again(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    shutil.rmtree(path)
    assert await worktrees.ensure_worktree("agent-1") == path
    assert (path / "README.md").exists()


async def test_a_foreign_folder_in_the_way_is_not_overwritten(repo: Path) -> None:
    (repo / ".worktrees" / "agent-1").mkdir(parents=True)
    (repo / ".worktrees" / "agent-1" / "mine.txt").write_text("precious\n")
    with pytest.raises(StateConflict, match="not a worktree"):
        await manager(repo).ensure_worktree("agent-1")
    assert (repo / ".worktrees" / "agent-1" / "mine.txt").read_text() == "precious\n"


# --- task branches --------------------------------------------------------------------------------


async def test_a_new_branch_starts_from_the_current_target_head(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    newer = commit(repo, "later.txt", "landed meanwhile\n", "landed")
    start = await worktrees.start_branch(path, "yokeflow/task-5-x")
    assert (start.created, start.base_commit, start.stashed) == (True, newer, None)
    assert git(path, "symbolic-ref", "--short", "HEAD") == "yokeflow/task-5-x"
    assert git(path, "rev-parse", "HEAD") == newer
    assert await worktrees.commits_ahead("yokeflow/task-5-x", "main") == 0
    commit(path, "work.txt", "work\n", "work")
    assert await worktrees.commits_ahead("yokeflow/task-5-x", "main") == 1
    assert await worktrees.head("yokeflow/task-5-x") == git(path, "rev-parse", "HEAD")


async def test_two_agents_work_on_separate_branches(repo: Path) -> None:
    worktrees = manager(repo)
    one, two = await worktrees.ensure_worktree("agent-1"), await worktrees.ensure_worktree("agent-2")
    await worktrees.start_branch(one, "yokeflow/task-1-a")
    await worktrees.start_branch(two, "yokeflow/task-2-b")
    commit(one, "a.txt", "a\n", "a")
    commit(two, "b.txt", "b\n", "b")
    assert git(repo, "ls-tree", "--name-only", "yokeflow/task-1-a").split() == [
        ".gitignore",
        "README.md",
        "a.txt",
    ]
    assert git(repo, "ls-tree", "--name-only", "yokeflow/task-2-b").split() == [
        ".gitignore",
        "README.md",
        "b.txt",
    ]
    branches = {info.path.name: info.branch for info in await worktrees.list()}
    assert branches["agent-1"] == "yokeflow/task-1-a"
    assert branches["agent-2"] == "yokeflow/task-2-b"


async def test_a_reclaimed_branch_is_used_even_when_checked_out_elsewhere(repo: Path) -> None:
    worktrees = manager(repo)
    first = await worktrees.ensure_worktree("agent-1")
    start = await worktrees.start_branch(first, "yokeflow/task-1-a")
    tip = commit(first, "a.txt", "a\n", "a")
    commit(repo, "other.txt", "other\n", "main moved on")
    second = await worktrees.ensure_worktree("reviewer-2")
    again = await worktrees.start_branch(second, "yokeflow/task-1-a")
    assert (again.created, again.base_commit) == (False, start.base_commit)
    assert git(second, "rev-parse", "HEAD") == tip
    assert git(second, "symbolic-ref", "--short", "HEAD") == "yokeflow/task-1-a"
    assert git(first, "symbolic-ref", "--short", "HEAD") == "yokeflow/task-1-a"


async def test_leftover_changes_are_stashed_not_lost(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    await worktrees.start_branch(path, "yokeflow/task-1-a")
    (path / "README.md").write_text("edited by a crashed agent\n")
    (path / "new.txt").write_text("untracked work\n")
    (path / "staged.txt").write_text("staged work\n")
    git(path, "add", "staged.txt")
    start = await worktrees.start_branch(path, "yokeflow/task-2-b")
    assert start.stashed is not None
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
    assert "on yokeflow/task-1-a" in git(repo, "log", "-1", "--format=%s", start.stashed)
    assert git(repo, "show", f"{start.stashed}:README.md") == "edited by a crashed agent"
    assert git(repo, "show", f"{start.stashed}:staged.txt") == "staged work"
    assert git(repo, "show", f"{start.stashed}^3:new.txt") == "untracked work"
    git(path, "stash", "apply", start.stashed)
    assert (path / "new.txt").read_text() == "untracked work\n"


async def test_bad_branch_requests_are_refused(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    with pytest.raises(InvalidInput, match="not a usable branch name"):
        await worktrees.start_branch(path, "bad..name")
    with pytest.raises(InvalidInput, match="is the target branch"):
        await worktrees.start_branch(path, "main")
    with pytest.raises(InvalidInput, match="not an agent worktree"):
        await worktrees.start_branch(repo, "yokeflow/task-1-a")
    git(repo, "switch", "-q", "-c", "mine")
    with pytest.raises(StateConflict, match="outside the agent worktrees"):
        await manager(repo, target_branch="main").start_branch(path, "mine")


async def test_head_of_an_unknown_ref_names_it(repo: Path) -> None:
    with pytest.raises(GitError, match="'nope' names no commit"):
        await manager(repo).head("nope")


# --- removal -----------------------------------------------------------------------------------


async def test_removal_is_refused_while_changes_are_uncommitted(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    (path / "draft.txt").write_text("draft\n")
    with pytest.raises(StateConflict, match=r"uncommitted changes: draft\.txt") as caught:
        await worktrees.remove("agent-1")
    assert caught.value.fix and "stash" in caught.value.fix
    assert (path / "draft.txt").exists()


async def test_removal_is_refused_while_commits_are_unmerged(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    await worktrees.start_branch(path, "yokeflow/task-1-a")
    commit(path, "a.txt", "a\n", "half the feature")
    with pytest.raises(
        StateConflict, match=r"branch yokeflow/task-1-a has commits not in main: \w+ half the feature"
    ):
        await worktrees.remove(path)
    assert path.exists()


async def test_removal_of_a_clean_merged_worktree(repo: Path) -> None:
    worktrees = manager(repo)
    path = await worktrees.ensure_worktree("agent-1")
    await worktrees.start_branch(path, "yokeflow/task-1-a")
    commit(path, "a.txt", "a\n", "feature")
    git(repo, "merge", "-q", "--ff-only", "yokeflow/task-1-a")
    (path / "node_modules").mkdir()
    (path / "node_modules" / "dep.js").write_text("ignored\n")
    await worktrees.remove("agent-1")
    assert not path.exists()
    assert [info.path for info in await worktrees.list()] == [repo]
    assert git(repo, "rev-parse", "--verify", "yokeflow/task-1-a")  # the branch stays
    await worktrees.remove("agent-1")  # gone already: nothing to do


async def test_removal_never_reaches_outside_the_agent_worktrees(repo: Path) -> None:
    worktrees = manager(repo)
    await worktrees.ensure_worktree("agent-1")
    with pytest.raises(InvalidInput, match="not an agent worktree"):
        await worktrees.remove(repo)
    (repo / ".worktrees" / "stray").mkdir()
    with pytest.raises(StateConflict, match="not a worktree"):
        await worktrees.remove("stray")


# --- recovery ---------------------------------------------------------------------------------


async def test_recovery_prunes_unlocks_and_reports(repo: Path) -> None:
    worktrees = manager(repo)
    gone = await worktrees.ensure_worktree("agent-1")
    stale = await worktrees.ensure_worktree("agent-2")
    held = await worktrees.ensure_worktree("agent-3")
    shutil.rmtree(gone)
    git(repo, "worktree", "lock", "--reason", LOCK_REASON, str(stale))
    git(repo, "worktree", "lock", "--reason", "on a USB disk", str(held))
    (repo / ".worktrees" / "stray").mkdir()
    (repo / ".worktrees" / "_integration").mkdir()
    known = {"agent-1": gone, "agent-2": stale, "agent-4": repo / ".worktrees" / "agent-4"}
    report = await worktrees.recover(known)
    assert report.pruned == ["agent-1"]
    assert report.unlocked == ["agent-2"]
    assert report.orphans == [repo / ".worktrees" / "stray"]
    assert report.missing == ["agent-1", "agent-4"]
    lines = report.lines()
    assert len(lines) == 5
    assert "agent-1" in lines[0] and "deleted" in lines[0]
    assert "stray" in lines[2] and "left alone" in lines[2]
    infos = {info.path.name: info for info in await worktrees.list()}
    assert set(infos) == {"repo", "agent-2", "agent-3"}
    assert not infos["agent-2"].locked
    assert infos["agent-3"].lock_reason == "on a USB disk"
    assert (repo / ".worktrees" / "stray").is_dir()
    again = await worktrees.recover({"agent-2": stale, "agent-3": held})
    assert again.lines() == [
        f"{repo / '.worktrees' / 'stray'} is not a git worktree; left alone (delete it if it holds nothing you need)"
    ]
