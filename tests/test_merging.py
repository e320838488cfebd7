"""The merge engine against real git repositories: pre-detection, gate, compare-and-swap landing."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from coordinator.errors import InvalidInput, StateConflict
from coordinator.gitcli import Git, GitError
from coordinator.merging import Conflict, MergeEngine, NothingToMerge, Prepared
from coordinator.names import valid_branch_name

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ID = ("-c", "user.name=Test", "-c", "user.email=test@localhost")


@pytest.fixture
async def git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Git:
    """A repository with one commit on `main`, checked out; no identity the engine could borrow."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    repo = tmp_path / "project"
    repo.mkdir()
    git = Git(repo)
    await git.run("init", "--quiet", "--initial-branch=main")
    # Without an identity in any config, commits fail unless their command names one.
    await git.run("config", "user.useConfigOnly", "true")
    (repo / "README.md").write_text("# project\nline two\n")
    (repo / "app.py").write_text("print('hello')\n")
    (repo / ".gitignore").write_text(".worktrees/\n")
    await git.run("add", ".")
    await git.run(*ID, "commit", "--quiet", "-m", "initial")
    return git


async def commit_files(git: Git, parent: str, files: dict[str, str], message: str = "work") -> str:
    """A commit on `parent` with `files` written, made with plumbing (no working tree touched)."""
    index = git.repo.parent / f"index-{uuid.uuid4().hex}"
    plumbing = Git(git.repo, env={"GIT_INDEX_FILE": str(index)})
    await plumbing.run("read-tree", parent)
    for path, text in files.items():
        blob = await plumbing.run("hash-object", "-w", "--stdin", stdin=text)
        await plumbing.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = await plumbing.run("write-tree")
    index.unlink()
    return await git.run(*ID, "commit-tree", tree, "-p", parent, "-m", message)


async def make_branch(git: Git, name: str, files: dict[str, str], base: str = "main") -> str:
    head = await commit_files(git, base, files, message=f"work on {name}")
    await git.run("update-ref", f"refs/heads/{name}", head)
    return head


async def head(git: Git, ref: str = "main") -> str:
    return await git.run("rev-parse", ref)


async def parents(git: Git, commit: str) -> list[str]:
    return (await git.run("rev-list", "--parents", "-n1", commit)).split()[1:]


def live_group_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that are still running (zombies count as dead)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


async def wait_until_dead(pgid: int) -> None:
    """Wait for SIGKILLed processes to finish dying (kill() returns before they are gone)."""
    for _ in range(600):
        if not live_group_members(pgid):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"processes {live_group_members(pgid)} of group {pgid} are still running")


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


async def test_parallel_branches_merge_one_after_another(git: Git) -> None:
    base = await head(git)
    heads = {
        name: await make_branch(git, name, {f"{name}.txt": f"{name}\n"})
        for name in ("alpha", "beta", "gamma")
    }
    engine = MergeEngine(git)
    for name, branch_head in heads.items():
        before = await head(git)
        outcome = await engine.merge(
            "main",
            name,
            strategy="merge",
            message=f"Merge {name}",
            test_command=f"test -f {name}.txt && test -f README.md && echo ok $YOKEFLOW_MERGE_COMMIT",
            timeout_seconds=60,
        )
        assert outcome.status == "merged", outcome.message
        assert outcome.target_before == before
        assert await head(git) == outcome.merge_commit
        assert await parents(git, "main") == [before, branch_head]
        assert f"ok {outcome.merge_commit}" in outcome.test_output_tail
    files = (await git.run("ls-tree", "--name-only", "main")).split()
    assert {"alpha.txt", "beta.txt", "gamma.txt", "README.md", "app.py"} <= set(files)
    assert await git.ok("merge-base", "--is-ancestor", base, "main")


async def test_squash_has_one_parent_and_the_merged_tree(git: Git) -> None:
    before = await head(git)
    await make_branch(git, "feature", {"a.txt": "a\n"})
    await git.run("update-ref", "refs/heads/feature", await commit_files(git, "feature", {"b.txt": "b\n"}))
    engine = MergeEngine(git)
    pre = await engine.predetect("main", "feature")
    assert (pre.ahead, pre.already_merged, pre.conflict_files) == (2, False, [])
    outcome = await engine.merge(
        "main",
        "feature",
        strategy="squash",
        message="Feature\n\nTwo files.",
        test_command=None,
        timeout_seconds=5,
    )
    assert outcome.status == "merged"
    assert await parents(git, "main") == [before]
    assert await git.run("rev-parse", "main^{tree}") == pre.tree
    assert await git.run("show", "main:a.txt") == "a"
    assert await git.run("show", "main:b.txt") == "b"
    assert (
        await git.run("log", "-1", "--format=%an <%ae>%n%B", "main")
        == "YokeFlow <yokeflow@localhost>\nFeature\n\nTwo files.\n"
    )


async def test_conflict_is_found_before_any_merge_and_changes_nothing(git: Git) -> None:
    await make_branch(git, "one", {"README.md": "# project\nline two, said one\n"})
    await make_branch(git, "two", {"README.md": "# project\nline two, said two\n"})
    engine = MergeEngine(git)
    merged = await engine.merge(
        "main", "one", strategy="merge", message="Merge one", test_command=None, timeout_seconds=5
    )
    assert merged.status == "merged"

    refs_before = await git.run("for-each-ref")
    status_before = await git.run("status", "--porcelain=v1", "--ignored")
    pre = await engine.predetect("main", "two")
    assert pre.tree is None
    assert pre.conflict_files == ["README.md"]
    prepared = await engine.prepare("main", "two", strategy="merge", message="Merge two")
    assert isinstance(prepared, Conflict) and prepared.files == ["README.md"]
    outcome = await engine.merge(
        "main", "two", strategy="merge", message="Merge two", test_command="exit 0", timeout_seconds=5
    )
    assert outcome.status == "conflict"
    assert outcome.conflict_files == ["README.md"]
    assert "README.md" in outcome.message
    assert await git.run("for-each-ref") == refs_before
    assert await git.run("status", "--porcelain=v1", "--ignored") == status_before
    assert (git.repo / "README.md").read_text() == "# project\nline two\n"


async def test_failing_gate_leaves_the_target_alone(git: Git) -> None:
    before = await head(git)
    await make_branch(git, "broken", {"flag.txt": "bad\n"})
    engine = MergeEngine(git)
    command = 'echo "checking flag"; echo "flag is $(cat flag.txt)" >&2; test "$(cat flag.txt)" = ok'
    outcome = await engine.merge(
        "main", "broken", strategy="merge", message="Merge broken", test_command=command, timeout_seconds=60
    )
    assert outcome.status == "rejected"
    assert outcome.merge_commit is None
    assert "checking flag" in outcome.test_output_tail
    assert "flag is bad" in outcome.test_output_tail
    assert "exit code 1" in outcome.message
    assert await head(git) == before


async def test_output_tail_keeps_the_end_of_long_output(git: Git) -> None:
    await make_branch(git, "noisy", {"n.txt": "n\n"})
    engine = MergeEngine(git)
    prepared = await engine.prepare("main", "noisy", strategy="merge", message="m")
    assert isinstance(prepared, Prepared)
    gate = await engine.run_gate(prepared.commit, "seq 1 20000; echo the-end; exit 2", timeout_seconds=60)
    assert (gate.passed, gate.timed_out, gate.returncode) == (False, False, 2)
    assert len(gate.output_tail) == 4000
    assert gate.output_tail.endswith("20000\nthe-end\n")


@needs_proc
async def test_hanging_gate_is_stopped_with_its_whole_process_group(git: Git, tmp_path: Path) -> None:
    before = await head(git)
    await make_branch(git, "hangs", {"h.txt": "h\n"})
    engine = MergeEngine(git)
    prepared = await engine.prepare("main", "hangs", strategy="merge", message="Merge hangs")
    assert isinstance(prepared, Prepared)
    pid_file = tmp_path / "gate.pid"
    command = f"echo started; echo $$ > {shlex.quote(str(pid_file))}; sleep 600 & sleep 600; wait"
    gate = await engine.run_gate(prepared.commit, command, timeout_seconds=0.5)
    assert gate.timed_out and not gate.passed
    assert "started" in gate.output_tail
    await wait_until_dead(int(pid_file.read_text()))
    assert await head(git) == before

    outcome = await engine.merge(
        "main", "hangs", strategy="merge", message="Merge hangs", test_command=command, timeout_seconds=0.5
    )
    assert outcome.status == "rejected" and "timed out" in outcome.message
    await wait_until_dead(int(pid_file.read_text()))
    assert await head(git) == before


async def test_users_checkout_of_the_target_is_left_exactly_as_it_was(git: Git) -> None:
    repo = git.repo
    await make_branch(git, "feature", {"feature.txt": "new\n", "app.py": "print('hello')\nprint('more')\n"})
    (repo / "README.md").write_text("# project\nmy unsaved edit\n")  # modified, not staged
    (repo / "notes.txt").write_text("staged note\n")
    await git.run("add", "notes.txt")  # staged
    (repo / "scratch.txt").write_text("untracked\n")  # untracked
    index_before = (repo / ".git" / "index").read_bytes()
    staged_before = await git.run("diff", "--cached", "--", "notes.txt")
    unstaged_before = await git.run("diff", "--", "README.md")
    before = await head(git)

    outcome = await MergeEngine(git).merge(
        "main", "feature", strategy="merge", message="Merge feature", test_command="true", timeout_seconds=60
    )
    assert outcome.status == "merged"
    assert await head(git) == outcome.merge_commit != before
    assert await git.run("symbolic-ref", "HEAD") == "refs/heads/main"
    assert (repo / "README.md").read_text() == "# project\nmy unsaved edit\n"
    assert (repo / "notes.txt").read_text() == "staged note\n"
    assert (repo / "scratch.txt").read_text() == "untracked\n"
    assert (repo / "app.py").read_text() == "print('hello')\n"
    assert not (repo / "feature.txt").exists()
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert await git.run("diff", "--cached", "--", "notes.txt") == staged_before
    assert await git.run("diff", "--", "README.md") == unstaged_before


async def test_land_loses_a_race_and_merge_retries(git: Git, tmp_path: Path) -> None:
    await make_branch(git, "feature", {"feature.txt": "f\n"})
    hotfix = await commit_files(git, "main", {"hotfix.txt": "h\n"})
    engine = MergeEngine(git)
    prepared = await engine.prepare("main", "feature", strategy="merge", message="Merge feature")
    assert isinstance(prepared, Prepared)
    await git.run("update-ref", "refs/heads/main", hotfix)  # someone else lands first
    assert await engine.land("main", prepared.commit, prepared.target_before) is False
    assert await head(git) == hotfix
    assert not await engine.is_landed("main", prepared.commit)

    # Inside merge(): the first gate run moves the target, so the first land() loses.
    second_fix = await commit_files(git, "main", {"second.txt": "s\n"})
    marker = tmp_path / "moved"
    command = (
        f"if [ ! -e {shlex.quote(str(marker))} ]; then touch {shlex.quote(str(marker))}; "
        f"git update-ref refs/heads/main {second_fix}; fi"
    )
    outcome = await engine.merge(
        "main", "feature", strategy="merge", message="Merge feature", test_command=command, timeout_seconds=60
    )
    assert outcome.status == "merged"
    assert outcome.target_before == second_fix
    assert await parents(git, "main") == [second_fix, await head(git, "feature")]
    assert {"feature.txt", "hotfix.txt", "second.txt"} <= set(
        (await git.run("ls-tree", "--name-only", "main")).split()
    )
    assert await engine.is_landed("main", outcome.merge_commit or "")


async def test_merge_gives_up_when_the_target_keeps_moving(git: Git) -> None:
    await make_branch(git, "feature", {"feature.txt": "f\n"})
    command = (
        'git update-ref refs/heads/main "$(git -c user.name=T -c user.email=t@x '
        'commit-tree main^{tree} -p main -m again)"'
    )
    with pytest.raises(StateConflict, match="moved while each of 2 merges"):
        await MergeEngine(git).merge(
            "main",
            "feature",
            strategy="squash",
            message="m",
            test_command=command,
            timeout_seconds=60,
            max_races=2,
        )


async def test_nothing_to_merge(git: Git) -> None:
    await make_branch(git, "done", {"d.txt": "d\n"})
    engine = MergeEngine(git)
    first = await engine.merge(
        "main", "done", strategy="merge", message="m", test_command=None, timeout_seconds=5
    )
    assert first.status == "merged"
    assert (await engine.predetect("main", "done")).already_merged
    assert isinstance(await engine.prepare("main", "done", strategy="merge", message="m"), NothingToMerge)
    again = await engine.merge(
        "main", "done", strategy="merge", message="m", test_command=None, timeout_seconds=5
    )
    assert (again.status, again.merge_commit, again.target_before) == (
        "nothing_to_merge",
        None,
        first.merge_commit,
    )


CRASHING_GATE = """
import asyncio, sys
from pathlib import Path
from coordinator.gitcli import Git
from coordinator.merging import MergeEngine

async def main() -> None:
    await MergeEngine(Git(Path(sys.argv[1]))).run_gate(sys.argv[2], sys.argv[3], timeout_seconds=600)

asyncio.run(main())
"""


@needs_proc
async def test_crash_during_the_gate_is_cleaned_up_by_recovery(git: Git, tmp_path: Path) -> None:
    before = await head(git)
    await make_branch(git, "feature", {"feature.txt": "f\n"})
    engine = MergeEngine(git)
    prepared = await engine.prepare("main", "feature", strategy="merge", message="Merge feature")
    assert isinstance(prepared, Prepared)
    pid_file = tmp_path / "gate.pid"
    command = (
        "echo changed > README.md; touch leftover.txt; mkdir -p build/deep; touch build/deep/out.o; "
        f"echo $$ > {shlex.quote(str(pid_file))}.tmp; mv {shlex.quote(str(pid_file))}.tmp {shlex.quote(str(pid_file))}; "
        "sleep 600"
    )
    coordinator = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_GATE, str(git.repo), prepared.commit, command, cwd=PROJECT_ROOT
    )
    while not pid_file.exists():  # the gate has made its mess and now hangs
        assert coordinator.returncode is None, "the coordinator process ended before its gate started"
        await asyncio.sleep(0.05)
    coordinator.send_signal(signal.SIGKILL)
    await coordinator.wait()
    gate_group = int(pid_file.read_text())
    assert live_group_members(gate_group), "the gate outlived the crashed coordinator"
    assert await head(git) == before

    with pytest.raises(StateConflict, match=r"leftover\.txt"):
        await engine.ensure_integration()
    removed = await engine.clean_integration()
    assert {"README.md", "leftover.txt", "build/deep/out.o"} <= set(removed)
    await wait_until_dead(gate_group)
    path = await engine.ensure_integration()
    assert not (path / "leftover.txt").exists() and not (path / "build").exists()
    assert (path / "README.md").read_text() == "# project\nline two\n"
    assert await head(git) == before
    assert not await engine.is_landed("main", prepared.commit)

    outcome = await engine.merge(
        "main",
        "feature",
        strategy="merge",
        message="Merge feature",
        test_command="test -f feature.txt",
        timeout_seconds=60,
    )
    assert outcome.status == "merged"


async def test_foreign_changes_in_the_integration_worktree_are_refused_and_kept(git: Git) -> None:
    await make_branch(git, "feature", {"feature.txt": "f\n"})
    engine = MergeEngine(git)
    path = await engine.ensure_integration()
    assert path == git.repo / ".worktrees" / "_integration"
    assert not await git.ok("symbolic-ref", "-q", "HEAD", cwd=path)  # detached
    (path / "someones-notes.txt").write_text("mine\n")
    (path / "app.py").write_text("print('edited by hand')\n")
    before = await head(git)

    with pytest.raises(StateConflict, match=r"uncommitted changes: .*someones-notes\.txt") as caught:
        await engine.ensure_integration()
    assert "app.py" in str(caught.value) and caught.value.fix
    with pytest.raises(StateConflict, match="uncommitted changes"):
        await engine.merge(
            "main", "feature", strategy="merge", message="m", test_command="true", timeout_seconds=5
        )
    assert (path / "someones-notes.txt").read_text() == "mine\n"
    assert (path / "app.py").read_text() == "print('edited by hand')\n"
    assert await head(git) == before


async def test_a_folder_that_is_not_our_worktree_is_never_cleaned(git: Git) -> None:
    folder = git.repo / ".worktrees" / "_integration"
    folder.mkdir(parents=True)
    (folder / "precious.txt").write_text("keep me\n")
    (git.repo / "README.md").write_text("user edit\n")
    engine = MergeEngine(git)
    with pytest.raises(StateConflict, match="not a git worktree"):
        await engine.ensure_integration()
    with pytest.raises(StateConflict, match="not a git worktree"):
        await engine.clean_integration()
    assert (folder / "precious.txt").read_text() == "keep me\n"
    assert (git.repo / "README.md").read_text() == "user edit\n"


async def test_bad_input_is_named(git: Git, tmp_path: Path) -> None:
    await make_branch(git, "feature", {"feature.txt": "f\n"})
    engine = MergeEngine(git)
    not_a_repo = tmp_path / "plain"
    not_a_repo.mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        await MergeEngine(Git(not_a_repo)).predetect("main", "feature")
    with pytest.raises(GitError, match="does not exist"):
        await MergeEngine(Git(tmp_path / "missing")).predetect("main", "feature")
    with pytest.raises(InvalidInput, match="target: there is no local branch 'trunk'"):
        await engine.predetect("trunk", "feature")
    with pytest.raises(InvalidInput, match="branch: there is no local branch 'featur'"):
        await engine.merge(
            "main", "featur", strategy="merge", message="m", test_command=None, timeout_seconds=5
        )
    with pytest.raises(InvalidInput, match="target: 'HEAD' is not a branch name") as caught:
        await engine.predetect("HEAD", "feature")
    assert caught.value.fix and "detached HEAD" in caught.value.fix
    with pytest.raises(InvalidInput, match="names a commit or tag, not a local branch"):
        await engine.predetect("main", await head(git, "feature"))
    with pytest.raises(InvalidInput, match="is the target itself"):
        await engine.predetect("main", "refs/heads/main")
    with pytest.raises(InvalidInput, match="not a valid branch name"):
        await engine.predetect("main", "bad..name")
    with pytest.raises(InvalidInput, match="strategy"):
        await engine.prepare("main", "feature", strategy="rebase", message="m")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="not a commit"):
        await engine.land("main", "0" * 40, await head(git))
    with pytest.raises(InvalidInput, match="would drop commits"):
        await engine.land("main", await head(git), await head(git, "feature"))


GOOD_BRANCHES = [
    "main",
    "feature/x",
    "yokeflow/task-12-add-cart-api",
    "a.b",
    "a-b_c",
    "a.lock.b",
    "lock",
    "x@",
    "@",
    "a/@",
    "@/a",
    "a{b",
    "{@",
    "a}b",
    "é/ü",
    "日本",
    "a\u0085b",  # NEL: bytes above 0x7f are allowed
    "a-",
    "a#b",
    "a!b",
    "refs/heads/x",
]
BAD_BRANCHES = [
    "",
    "a..b",
    "..",
    "a@{b",
    "@{-1}",
    "@{",
    "a.lock",
    "a/b.lock/c",
    "a/b.lock",
    "-x",
    "-",
    "a b",
    "a\tb",
    "a\nb",
    "a\x01b",
    "a\x1fb",
    "a\x7fb",
    "a//b",
    "/a",
    "a/",
    ".a",
    "a/.b",
    ".",
    "a.",
    "a/b.",
    "a~1",
    "a^",
    "a:b",
    "a?b",
    "a*b",
    "a[b",
    "a\\b",
    "HEAD",
]


async def test_branch_names_are_checked_like_git_check_ref_format(git: Git) -> None:
    disagree = []
    for name in GOOD_BRANCHES + BAD_BRANCHES:
        by_git = await git.ok("check-ref-format", "--branch", name)
        if by_git != valid_branch_name(name) or by_git != (name in GOOD_BRANCHES):
            disagree.append((name, by_git))
    assert disagree == []
    # What git's command line cannot even receive.
    assert not valid_branch_name("a\0b")
    assert not valid_branch_name("a\ud800b")


async def test_bad_branch_names_are_refused_without_asking_git(git: Git) -> None:
    await make_branch(git, "feature", {"f.txt": "f\n"})
    engine = MergeEngine(git)
    await engine.root()
    for bad in ("-feature", "feature.lock", "a..b", "x@{1}", "a//b", "a\x01b"):
        with pytest.raises(InvalidInput, match="not a valid branch name"):
            await engine.predetect("main", bad)
        with pytest.raises(InvalidInput, match=r"target: .* not a valid branch name"):
            await engine.land(bad, await head(git), await head(git))


async def test_source_leaves_out_commits_made_after_it(git: Git) -> None:
    before = await head(git)
    recorded = await make_branch(git, "feature", {"a.txt": "a\n"})
    # Someone commits on the branch after its head was recorded.
    late = await commit_files(git, "feature", {"late.txt": "late\n"})
    await git.run("update-ref", "refs/heads/feature", late)
    engine = MergeEngine(git)

    pre = await engine.predetect("main", "feature", source=recorded)
    assert (pre.branch_head, pre.ahead, pre.already_merged) == (recorded, 1, False)
    assert (await engine.predetect("main", "feature")).ahead == 2
    prepared = await engine.prepare("main", "feature", strategy="merge", message="m", source=recorded)
    assert isinstance(prepared, Prepared) and prepared.branch_head == recorded
    assert await parents(git, prepared.commit) == [before, recorded]
    assert await engine.land("main", prepared.commit, prepared.target_before)
    files = set((await git.run("ls-tree", "--name-only", "main")).split())
    assert "a.txt" in files and "late.txt" not in files
    assert await head(git, "feature") == late  # the branch itself is left alone

    # The recorded commit is in now; the late one still is not, and merges on its own.
    again = await engine.prepare("main", "feature", strategy="merge", message="m", source=recorded)
    assert isinstance(again, NothingToMerge) and again.branch_head == recorded
    outcome = await engine.merge(
        "main", "feature", strategy="squash", message="late", test_command=None, timeout_seconds=5
    )
    assert outcome.status == "merged"
    assert await git.run("show", "main:late.txt") == "late"


async def test_source_must_be_on_the_branch(git: Git) -> None:
    await make_branch(git, "feature", {"a.txt": "a\n"})
    other = await make_branch(git, "other", {"b.txt": "b\n"})
    engine = MergeEngine(git)
    refs_before = await git.run("for-each-ref")
    with pytest.raises(InvalidInput, match=r"source: .* is not on branch 'feature'"):
        await engine.prepare("main", "feature", strategy="merge", message="m", source=other)
    with pytest.raises(InvalidInput, match=r"source: .* is not a commit"):
        await engine.predetect("main", "feature", source="0" * 40)
    for bad in ("", " main", "main\nrefs/heads/other", "a\x00b"):
        with pytest.raises(InvalidInput, match="source"):
            await engine.predetect("main", "feature", source=bad)
    # A name of the head (or an ancestor) works as well as its id.
    assert (await engine.predetect("main", "feature", source="feature")).ahead == 1
    assert (await engine.predetect("main", "feature", source="feature~1")).already_merged
    assert await git.run("for-each-ref") == refs_before


class GitCount:
    """Counts the git processes started, by command."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commands: Counter[str] = Counter()
        original = Git.result

        async def result(git: Git, *args: str, **kwargs: Any) -> Any:
            rest = list(args)
            while rest[:1] == ["-c"]:
                rest = rest[2:]
            self.commands[rest[0]] += 1
            return await original(git, *args, **kwargs)

        monkeypatch.setattr(Git, "result", result)

    def take(self) -> Counter[str]:
        counted, self.commands = self.commands, Counter()
        return counted


async def test_a_merge_starts_few_git_processes(git: Git, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("one", "two"):
        await make_branch(git, name, {f"{name}.txt": f"{name}\n"})
    engine = MergeEngine(git)
    await engine.ensure_integration()  # the version check, the top folder and the worktree, once
    count = GitCount(monkeypatch)

    prepared = await engine.prepare("main", "one", strategy="merge", message="one")
    assert isinstance(prepared, Prepared)
    assert await engine.land("main", prepared.commit, prepared.target_before)
    assert count.take() == Counter({"cat-file": 1, "merge-tree": 1, "commit-tree": 1, "update-ref": 1})

    # With a gate, as the queue runs it: check the worktree, prepare, test, land.
    await engine.ensure_integration()
    prepared = await engine.prepare("main", "two", strategy="merge", message="two")
    assert isinstance(prepared, Prepared)
    assert (await engine.run_gate(prepared.commit, "test -f two.txt", timeout_seconds=60)).passed
    assert await engine.land("main", prepared.commit, prepared.target_before)
    assert count.take() == Counter(
        {"status": 3, "cat-file": 1, "merge-tree": 1, "commit-tree": 1, "checkout": 1, "update-ref": 1}
    )

    # A gate that leaves changes behind gets them undone.
    await make_branch(git, "three", {"three.txt": "3\n"}, base="main")
    prepared = await engine.prepare("main", "three", strategy="merge", message="three")
    assert isinstance(prepared, Prepared)
    gate = await engine.run_gate(
        prepared.commit, "echo x > stray.txt; echo y >> README.md", timeout_seconds=60
    )
    path = await engine.integration_path()
    assert gate.passed and not (path / "stray.txt").exists()
    assert (path / "README.md").read_text() == "# project\nline two\n"
    await engine.ensure_integration()  # clean again


async def test_land_and_is_landed_check_what_the_engine_did_not_build(git: Git) -> None:
    await make_branch(git, "feature", {"f.txt": "f\n"})
    prepared = await MergeEngine(git).prepare("main", "feature", strategy="merge", message="m")
    assert isinstance(prepared, Prepared)
    engine = MergeEngine(git)  # another engine (say, after a restart) knows nothing of it
    with pytest.raises(InvalidInput, match="would drop commits"):
        await engine.land("main", prepared.commit, await commit_files(git, "main", {"y": "y\n"}))
    assert await engine.land("main", prepared.commit, prepared.target_before[:12])
    assert await engine.is_landed("main", prepared.commit)
    assert await engine.is_landed("main", prepared.target_before)
    assert not await engine.is_landed("main", await commit_files(git, "main", {"x": "x\n"}))
    with pytest.raises(InvalidInput, match=r"commit: '0+' is not a commit"):
        await engine.is_landed("main", "0" * 40)
    with pytest.raises(InvalidInput, match="commit: '-x' is not a commit"):
        await engine.is_landed("main", "-x")
    with pytest.raises(InvalidInput, match="target: there is no local branch 'trunk'"):
        await engine.is_landed("trunk", prepared.commit)
    with pytest.raises(InvalidInput, match="target: there is no local branch 'trunk'"):
        await engine.land("trunk", prepared.commit, prepared.target_before)


async def test_a_worktree_of_another_repository_is_not_taken_for_ours(git: Git, tmp_path: Path) -> None:
    other = Git(tmp_path / "other")
    other.repo.mkdir()
    await other.run("init", "--quiet", "--initial-branch=main")
    await other.run(*ID, "commit", "--quiet", "--allow-empty", "-m", "other")
    folder = git.repo / ".worktrees" / "_integration"
    await other.run("worktree", "add", "--detach", "--quiet", str(folder))
    (folder / "theirs.txt").write_text("keep\n")
    engine = MergeEngine(git)
    with pytest.raises(StateConflict, match="not a git worktree"):
        await engine.ensure_integration()
    with pytest.raises(StateConflict, match="not a git worktree"):
        await engine.clean_integration()
    assert (folder / "theirs.txt").read_text() == "keep\n"
