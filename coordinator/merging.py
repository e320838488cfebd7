"""The merge engine: the git steps of one merge, each separate so a queue can store state between them.

No step touches the user's checkout. Conflicts are found with `git merge-tree --write-tree`, the
merge commit is built with `git commit-tree` (no working tree), the test gate runs in a detached
integration worktree at `<repo>/<worktree_dir>/_integration`, and the target branch moves only in
`land()`, by a compare-and-swap `git update-ref`: it is before or after, never between.

Every git process costs milliseconds to start, so checks that need no git run in Python: branch
names are validated here (`valid_branch_name`), both heads are resolved by one
`git cat-file --batch-command`, the integration worktree is recognised by its `.git` file, and
`land()` trusts the parents of the commits `prepare()` built. A merge with the test gate off
starts four git processes (cat-file, merge-tree, commit-tree, update-ref).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from coordinator.errors import InvalidInput, StateConflict
from coordinator.gitcli import Git, GitError, repository_root, require_git
from coordinator.names import valid_branch_name

INTEGRATION_FOLDER = "_integration"
OUTPUT_TAIL_CHARS = 4000
# The commits the engine makes carry this identity, whatever the user's git config says.
_IDENTITY = ("-c", "user.name=YokeFlow", "-c", "user.email=yokeflow@localhost")
# Kept in the integration worktree's own git folder, where `git clean` never looks.
_GATE_GROUP_FILE = "yokeflow-gate.pgid"
_GATE_LOG_FILE = "yokeflow-gate.log"
_SHOWN_FILES = 10
# How many commits made by prepare() land() remembers the parents of (it needs only the latest).
_BUILT_KEPT = 64
# What a ref name may never hold (git-check-ref-format(1)): control characters, DEL, space,
# ~ ^ : ? * [ and backslash.
Strategy = Literal["merge", "squash"]
MergeStatus = Literal["merged", "conflict", "rejected", "nothing_to_merge"]


@dataclass(frozen=True)
class Precheck:
    """What merging `branch` into `target` would give, found without touching any file or ref."""

    target_head: str
    branch_head: str  # the commit merged: the branch's head, or the `source` commit asked for
    tree: str | None  # the merged tree; None when there are conflicts
    conflict_files: list[str]
    already_merged: bool  # the merged commit is already in the target: nothing to merge
    ahead: int  # commits of the merged commit's history that the target lacks


@dataclass(frozen=True)
class Prepared:
    """A merge commit built on `target_before`, not yet on any branch."""

    target_before: str
    commit: str
    tree: str
    branch_head: str  # the commit merged (the branch's head, or `source`)


@dataclass(frozen=True)
class _Heads:
    """The commits one merge works with, resolved together."""

    target: str
    source: str  # what is merged: the branch head, or the `source` asked for
    target_tree: str | None


@dataclass(frozen=True)
class Conflict:
    files: list[str]
    target_head: str
    branch_head: str


@dataclass(frozen=True)
class NothingToMerge:
    """Every commit of the branch is already in the target."""

    target_head: str
    branch_head: str


@dataclass(frozen=True)
class GateResult:
    passed: bool
    output_tail: str  # the last OUTPUT_TAIL_CHARS characters of stdout and stderr together
    timed_out: bool
    returncode: int | None  # None when no command ran


@dataclass(frozen=True)
class MergeOutcome:
    status: MergeStatus
    merge_commit: str | None
    target_before: str
    conflict_files: list[str] = field(default_factory=list)
    test_output_tail: str = ""
    message: str = ""


class MergeEngine:
    """The merge steps for one repository; callers serialise merges into the same target."""

    def __init__(self, git: Git, *, worktree_dir: str = ".worktrees") -> None:
        self.git = git
        self.worktree_dir = worktree_dir
        self._root: Path | None = None
        self._common_dir: Path | None = None
        # The parents of the commits prepare() built, newest last: land() needs no git to trust them.
        self._built: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    async def root(self) -> Path:
        """The repository's top folder (checked once, together with the git version)."""
        if self._root is None:
            if not self.git.repo.is_dir():
                raise GitError(
                    f"the repository folder {self.git.repo} does not exist",
                    fix="point the coordinator at your project's git checkout (--repo)",
                )
            await require_git(self.git)
            res = await self.git.result(
                "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir"
            )
            lines = res.stdout.splitlines()
            if res.returncode != 0 or len(lines) != 2:
                await repository_root(self.git)  # the clear error when it is not a repository
                raise GitError(
                    f"cannot find the top folder and git folder of {self.git.repo}: "
                    f"{res.stderr.strip() or 'no message'}",
                    fix="point the coordinator at a checkout with a working tree (not a bare repository)",
                    returncode=res.returncode,
                )
            self._common_dir = Path(lines[1])
            self._root = Path(lines[0])
        return self._root

    async def integration_path(self) -> Path:
        return (await self.root()) / self.worktree_dir / INTEGRATION_FOLDER

    # --- conflict pre-detection and the merge commit ---------------------------------------------

    async def predetect(self, target: str, branch: str, *, source: str | None = None) -> Precheck:
        """Merge the heads in memory (`git merge-tree --write-tree`): no working tree, no ref changes.

        `source` is the commit to merge instead of the branch's head: the head or one of its ancestors.
        """
        heads = await self._resolve(target, branch, source)
        ahead_text, (tree, conflicts) = await asyncio.gather(
            self.git.run("rev-list", "--count", f"{heads.target}..{heads.source}"),
            self._merge_tree(heads, target, branch),
        )
        ahead = int(ahead_text)
        return Precheck(
            target_head=heads.target,
            branch_head=heads.source,
            tree=tree,
            conflict_files=conflicts,
            already_merged=ahead == 0,
            ahead=ahead,
        )

    async def prepare(
        self, target: str, branch: str, *, strategy: Strategy, message: str, source: str | None = None
    ) -> Prepared | Conflict | NothingToMerge:
        """Pre-detect, then build the merge (two parents) or squash (one parent) commit on no branch.

        `source` is the commit to merge, the branch's head or one of its ancestors (default: the head):
        commits made on the branch after it are left out.
        """
        if strategy not in ("merge", "squash"):
            raise InvalidInput("strategy", f"{strategy!r} is not a merge strategy", fix="use merge or squash")
        if not message.strip():
            raise InvalidInput("message", "the commit message is empty", fix="describe what the merge brings")
        heads = await self._resolve(target, branch, source)
        tree, conflicts = await self._merge_tree(heads, target, branch)
        # A commit already in the target merges to the target's own tree, without conflicts; only
        # then is the ancestry worth a git process.
        might_be_in = heads.target_tree is None or tree == heads.target_tree
        if might_be_in and await self._is_ancestor(heads.source, heads.target):
            return NothingToMerge(heads.target, heads.source)
        if tree is None:
            return Conflict(conflicts, heads.target, heads.source)
        parents = (heads.target, heads.source) if strategy == "merge" else (heads.target,)
        commit = await self.git.run(
            *_IDENTITY,
            "commit-tree",
            tree,
            *(arg for parent in parents for arg in ("-p", parent)),
            "-F",
            "-",
            stdin=message.strip() + "\n",
        )
        self._built[commit] = parents
        while len(self._built) > _BUILT_KEPT:
            self._built.popitem(last=False)
        return Prepared(target_before=heads.target, commit=commit, tree=tree, branch_head=heads.source)

    # --- the integration worktree and the test gate ----------------------------------------------

    async def ensure_integration(self, *, clean_leftovers: bool = False) -> Path:
        """Create the detached integration worktree, or check that the existing one is clean."""
        path, _ = await self._ensure_integration(clean_leftovers=clean_leftovers)
        return path

    async def clean_integration(self) -> list[str]:
        """Recovery after a crash in our gate: stop its processes, `reset --hard`, `clean -fdx`."""
        path = await self.integration_path()
        if not path.exists():
            return []
        admin = await self._require_ours(path)
        _kill_group_in(admin / _GATE_GROUP_FILE)
        removed: list[str] = []
        lock = admin / "index.lock"  # left by a git command killed halfway
        if lock.exists():
            lock.unlink()
            removed.append(str(lock))
        removed += await self._changes(path, ignored=True)
        await self.git.run("reset", "--hard", "--quiet", cwd=path)
        await self.git.run("clean", "-fdx", "--quiet", cwd=path)
        return removed

    async def run_gate(self, commit: str, command: str | None, *, timeout_seconds: float) -> GateResult:
        """Run the test command on `commit` in the integration worktree; None passes without running."""
        if command is None:
            return GateResult(passed=True, output_tail="", timed_out=False, returncode=None)
        if timeout_seconds <= 0:
            raise InvalidInput(
                "timeout_seconds", "must be more than 0", fix="give the test gate some seconds"
            )
        if commit not in self._built:  # a commit prepare() built exists and is named in full
            commit = await self._commit("commit", commit)
        path, admin = await self._ensure_integration()
        await self.git.run("checkout", "--detach", "--quiet", commit, cwd=path)
        try:
            return await _run_shell(
                command,
                cwd=path,
                env={**os.environ, "YOKEFLOW_MERGE_COMMIT": commit},
                timeout_seconds=timeout_seconds,
                admin=admin,
            )
        finally:
            # What the command changed is ours to undo; ignored files (caches) stay for the next gate.
            if await self._changes(path, ignored=False):
                await self.git.run("reset", "--hard", "--quiet", cwd=path)
                await self.git.run("clean", "-fd", "--quiet", cwd=path)

    # --- landing ----------------------------------------------------------------------------------

    async def land(self, target: str, commit: str, expected_old: str) -> bool:
        """Move the target branch from `expected_old` to `commit` atomically; False if it moved meanwhile."""
        ref = _checked_ref("target", target)
        await self.root()
        built = self._built.get(commit)
        if built is None or built[0] != expected_old:
            # Not the commit prepare() built on `expected_old`: check what the caller passed.
            await self._head("target", target)
            commit = await self._commit("commit", commit)
            expected_old = await self._commit("expected_old", expected_old)
            if not await self._is_ancestor(expected_old, commit):
                raise InvalidInput(
                    "commit",
                    f"{commit} is not built on {expected_old}: landing it would drop commits from {target!r}",
                    fix="land the commit that prepare() returned, with its target_before",
                )
        # The compare-and-swap: git moves the ref only if it still points at `expected_old`.
        res = await self.git.result(
            "update-ref", "-m", f"yokeflow merge queue: {commit[:12]}", ref, commit, expected_old
        )
        if res.returncode == 0:
            return True
        if await self._head("target", target) != expected_old:
            return False
        said = (res.stderr.strip() or "no message").splitlines()[-1]
        raise GitError(
            f"git update-ref could not move {ref} to {commit}: {said}",
            fix=f"remove a stale lock file ({ref}.lock in the git folder) if no git command is running",
            returncode=res.returncode,
        )

    async def is_landed(self, target: str, commit: str) -> bool:
        """Whether `commit` is the target's head or one of its ancestors (for recovery)."""
        ref = _checked_ref("target", target)
        await self.root()
        res = await self.git.result("merge-base", "--is-ancestor", "--end-of-options", commit, ref)
        if commit and res.returncode in (0, 1):
            return res.returncode == 0
        # Say which of the two git could not find.
        await self._head("target", target)
        await self._commit("commit", commit)
        raise GitError(
            f"git merge-base --is-ancestor failed: {res.stderr.strip()}", returncode=res.returncode
        )

    async def merge(
        self,
        target: str,
        branch: str,
        *,
        strategy: Strategy,
        message: str,
        test_command: str | None,
        timeout_seconds: float,
        max_races: int = 3,
        source: str | None = None,
    ) -> MergeOutcome:
        """All steps in order; when another writer moves the target before landing, start again."""
        for _ in range(max(1, max_races)):
            prepared = await self.prepare(target, branch, strategy=strategy, message=message, source=source)
            if isinstance(prepared, NothingToMerge):
                return MergeOutcome(
                    "nothing_to_merge",
                    None,
                    prepared.target_head,
                    message=f"every commit of {branch!r} is already in {target!r}",
                )
            if isinstance(prepared, Conflict):
                return MergeOutcome(
                    "conflict",
                    None,
                    prepared.target_head,
                    conflict_files=prepared.files,
                    message=f"{branch!r} conflicts with {target!r} in {_listing(prepared.files)}; "
                    f"merge {target!r} into {branch!r} and resolve them",
                )
            gate = await self.run_gate(prepared.commit, test_command, timeout_seconds=timeout_seconds)
            if not gate.passed:
                why = (
                    f"timed out after {timeout_seconds:g} s"
                    if gate.timed_out
                    else f"failed with exit code {gate.returncode}"
                )
                return MergeOutcome(
                    "rejected",
                    None,
                    prepared.target_before,
                    test_output_tail=gate.output_tail,
                    message=f"the test gate on {branch!r} merged into {target!r} {why}",
                )
            if await self.land(target, prepared.commit, prepared.target_before):
                return MergeOutcome(
                    "merged",
                    prepared.commit,
                    prepared.target_before,
                    test_output_tail=gate.output_tail,
                    message=f"merged {branch!r} into {target!r} as {prepared.commit[:12]}",
                )
        raise StateConflict(
            f"{target!r} moved while each of {max(1, max_races)} merges of {branch!r} was being tested",
            fix=f"queue the merge again; if it keeps happening, stop whatever else writes to {target!r}",
        )

    # --- helpers ----------------------------------------------------------------------------------

    async def _resolve(self, target: str, branch: str, source: str | None) -> _Heads:
        """Both branch heads (and `source`, and the target's tree) from one `git cat-file`."""
        target_ref = _checked_ref("target", target)
        branch_ref = _checked_ref("branch", branch)
        if target_ref == branch_ref:
            raise InvalidInput("branch", f"{branch!r} is the target itself", fix="name the branch to merge")
        if source is not None and (
            not source or source != source.strip() or any(ord(char) < 32 or char == "\x7f" for char in source)
        ):
            raise InvalidInput("source", f"{source!r} is not a commit name", fix="pass a commit id")
        await self.root()
        # `info` lines answer in one line each; the target's `contents` (tree first) come last.
        asked = [f"info {branch_ref}^{{commit}}"]
        if source is not None:
            asked.append(f"info {source}^{{commit}}")
        asked.append(f"contents {target_ref}^{{commit}}")
        res = await self.git.result(
            "cat-file", "--batch-command=%(objectname) %(objecttype)", stdin="\n".join(asked) + "\n"
        )
        if res.returncode != 0:
            said = (res.stderr.strip() or "no message").splitlines()[-1]
            raise GitError(f"git cat-file could not read the branches: {said}", returncode=res.returncode)
        lines = res.stdout.split("\n")
        branch_head = _commit_of(lines[0])
        source_head = _commit_of(lines[1]) if source is not None else branch_head
        target_head = _commit_of(lines[len(asked) - 1])
        if target_head is None:
            await self._missing("target", target)
        if branch_head is None:
            await self._missing("branch", branch)
        assert target_head is not None and branch_head is not None
        if source_head is None:
            raise InvalidInput(
                "source",
                f"{source!r} is not a commit of {self._root}",
                fix=f"pass the commit of {branch!r} to merge (its head or one of its ancestors)",
            )
        if source_head != branch_head and not await self._is_ancestor(source_head, branch_head):
            raise InvalidInput(
                "source",
                f"{source!r} is not on branch {branch!r}: it is neither its head nor one of its ancestors",
                fix=f"pass a commit of {branch!r} (the head recorded when the work was done)",
            )
        tree_line = lines[len(asked)] if len(lines) > len(asked) else ""
        target_tree = tree_line.removeprefix("tree ") if tree_line.startswith("tree ") else None
        return _Heads(target_head, source_head, target_tree)

    async def _merge_tree(self, heads: _Heads, target: str, branch: str) -> tuple[str | None, list[str]]:
        """The merged tree and no files, or None and the conflicting files."""
        res = await self.git.result(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", heads.target, heads.source
        )
        if res.returncode not in (0, 1):
            said = (res.stderr.strip() or "no message").splitlines()[-1]
            raise GitError(
                f"git merge-tree could not merge branch {branch!r} into {target!r}: {said}",
                fix=f"make {branch!r} share history with {target!r} (create it from {target!r} "
                "and move its commits over, e.g. with `git rebase --onto`)",
                returncode=res.returncode,
            )
        tree, *names = [part for part in res.stdout.split("\0") if part]
        if res.returncode == 0:
            return tree, []
        return None, list(dict.fromkeys(names))

    async def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        res = await self.git.result("merge-base", "--is-ancestor", ancestor, descendant)
        if res.returncode not in (0, 1):
            raise GitError(
                f"git merge-base --is-ancestor failed: {res.stderr.strip()}", returncode=res.returncode
            )
        return res.returncode == 0

    async def _head(self, field_name: str, name: str) -> str:
        """The commit a local branch points at; a clear error when there is no such branch."""
        ref = _checked_ref(field_name, name)
        await self.root()
        res = await self.git.result("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if res.returncode == 0:
            return res.stdout.strip()
        await self._missing(field_name, name)
        raise AssertionError("unreachable")

    async def _missing(self, field_name: str, name: str) -> None:
        """Raise the error for a branch that does not resolve, saying what `name` is instead."""
        if await self.git.ok("rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}"):
            problem = f"{name!r} names a commit or tag, not a local branch"
        else:
            problem = f"there is no local branch {name!r} in {self._root}"
        raise InvalidInput(field_name, problem, fix="name a local branch (`git branch --list` shows them)")

    async def _commit(self, field_name: str, rev: str) -> str:
        res = await self.git.result(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        )
        if not rev or res.returncode != 0:
            raise InvalidInput(
                field_name,
                f"{rev!r} is not a commit of {await self.root()}",
                fix="pass a commit id that prepare() returned (it may have been garbage-collected)",
            )
        return res.stdout.strip()

    async def _ensure_integration(self, *, clean_leftovers: bool = False) -> tuple[Path, Path]:
        """The integration worktree, created or checked clean and detached, and its own git folder."""
        path = await self.integration_path()
        if not path.exists():
            # --force only overrides "registered but missing" (the folder was deleted by hand).
            await self.git.run("worktree", "add", "--detach", "--force", str(path))
            return path, await self._require_ours(path)
        admin = await self._require_ours(path)
        if clean_leftovers:
            await self.clean_integration()
        else:
            dirty = await self._changes(path, ignored=False)
            if dirty:
                raise StateConflict(
                    f"the integration worktree {path} has uncommitted changes: {_listing(dirty)}",
                    fix="the merge queue did not leave them there (it removes its own leftovers) and "
                    "never deletes files it did not make: copy what you want to keep elsewhere, then "
                    f"run `git -C {path} reset --hard` and `git -C {path} clean -fd`",
                )
        if _on_a_branch(admin):
            await self.git.run("checkout", "--detach", "--quiet", cwd=path)
        return path, admin

    async def _require_ours(self, path: Path) -> Path:
        """Refuse to run git in `path` unless it is this repository's worktree; its own git folder.

        Recognised in Python when its `.git` file and its registration point at each other; anything
        else is asked of git (`worktree list`, `rev-parse --show-toplevel`).
        """
        await self.root()
        assert self._common_dir is not None
        admin = _linked_admin(path, self._common_dir)
        if admin is not None:
            return admin
        listing = await self.git.run("worktree", "list", "--porcelain", "-z")
        registered = [
            entry.removeprefix("worktree ") for entry in listing.split("\0") if entry.startswith("worktree ")
        ]
        top = (await self.git.result("rev-parse", "--show-toplevel", cwd=path)).stdout.strip()
        if not _is_worktree_at(path, top, registered):
            raise StateConflict(
                f"{path} exists but is not a git worktree of {await self.root()}",
                fix="move that folder elsewhere: the merge queue keeps its integration worktree there "
                "and will create it again",
            )
        return Path(await self.git.run("rev-parse", "--absolute-git-dir", cwd=path))

    async def _changes(self, path: Path, *, ignored: bool) -> list[str]:
        """Modified tracked files and untracked files in a worktree (and ignored ones when asked)."""
        args = ["status", "--porcelain=v1", "-z", "--untracked-files=all"]
        if ignored:
            args.append("--ignored")
        entries = iter((await self.git.run(*args, cwd=path)).split("\0"))
        paths: list[str] = []
        for entry in entries:
            if not entry:
                continue
            paths.append(entry[3:])
            if entry[0] in "RC":
                next(entries, None)  # the rename's original path
        return paths


def _checked_ref(field_name: str, name: str) -> str:
    """`refs/heads/<name>` for a valid branch name (`name` may already start with `refs/heads/`)."""
    ref = _branch_ref(field_name, name)
    if not valid_branch_name(ref.removeprefix("refs/heads/")):
        raise InvalidInput(field_name, f"{name!r} is not a valid branch name", fix="check the spelling")
    return ref


def _commit_of(line: str) -> str | None:
    """The commit id in a `git cat-file --batch-command` answer, None for `<name> missing` and such."""
    oid, _, kind = line.partition(" ")
    if kind == "commit" and len(oid) in (40, 64) and all(c in "0123456789abcdef" for c in oid):
        return oid
    return None


def _linked_admin(path: Path, common_dir: Path) -> Path | None:
    """The git folder of the linked worktree at `path` when both links agree (its `.git` file names
    `<common_dir>/worktrees/<name>`, whose `gitdir` file names `path/.git`); None otherwise."""
    try:
        text = (path / ".git").read_text()
        if not text.startswith("gitdir: "):
            return None
        admin = (path / text.removeprefix("gitdir: ").strip()).resolve()
        if admin.parent != (common_dir / "worktrees").resolve():
            return None
        back = (admin / (admin / "gitdir").read_text().strip()).resolve()
    except (OSError, UnicodeDecodeError):
        return None
    return admin if back == (path / ".git").resolve() else None


def _on_a_branch(admin: Path) -> bool:
    """Whether a worktree's HEAD (in its git folder `admin`) is a branch, not a detached commit."""
    try:
        return (admin / "HEAD").read_text().startswith("ref:")
    except OSError:
        return False


def _branch_ref(field_name: str, name: str) -> str:
    name = name.removeprefix("refs/heads/")
    if not name or name == "HEAD":
        raise InvalidInput(
            field_name,
            f"{name!r} is not a branch name",
            fix="name a local branch such as main; a detached HEAD cannot be merged into or from",
        )
    return f"refs/heads/{name}"


def _is_worktree_at(path: Path, toplevel: str, registered: list[str]) -> bool:
    """Whether git sees `path` as a registered worktree's top folder (and not a folder inside another)."""
    here = path.resolve()
    return (
        bool(toplevel)
        and Path(toplevel).resolve() == here
        and here in {Path(p).resolve() for p in registered}
    )


def _listing(paths: list[str]) -> str:
    shown = ", ".join(paths[:_SHOWN_FILES])
    more = len(paths) - _SHOWN_FILES
    return f"{shown} and {more} more" if more > 0 else shown


def _tail(log: Path) -> str:
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - OUTPUT_TAIL_CHARS * 4))
        return handle.read().decode(errors="replace")[-OUTPUT_TAIL_CHARS:]


def _kill_group(pgid: int) -> None:
    # ProcessLookupError: the group is gone; PermissionError: its id now belongs to someone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_group_in(group_file: Path) -> None:
    """Kill the process group a crashed gate left running, as recorded in `group_file`."""
    if group_file.exists():
        recorded = group_file.read_text().strip()
        if recorded.isdigit():  # a crash while writing it leaves it empty
            _kill_group(int(recorded))
        group_file.unlink()


async def _run_shell(
    command: str, *, cwd: Path, env: dict[str, str], timeout_seconds: float, admin: Path
) -> GateResult:
    """`/bin/sh -c command` in its own process group, which dies entirely when the command ends."""
    log = admin / _GATE_LOG_FILE
    group_file = admin / _GATE_GROUP_FILE
    timed_out = False
    # A file, not a pipe: a background process that keeps the output open cannot stall the gate.
    with log.open("wb") as output:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    group_file.write_text(str(proc.pid))
    try:
        await asyncio.wait_for(proc.wait(), timeout_seconds)
    except TimeoutError:
        timed_out = True
    finally:
        _kill_group(proc.pid)  # the command's leftover background processes too
        await proc.wait()
        group_file.unlink(missing_ok=True)
    tail = _tail(log)
    if timed_out:
        tail = (tail + f"\n[yokeflow: stopped after {timeout_seconds:g} s]")[-OUTPUT_TAIL_CHARS:]
    return GateResult(
        passed=not timed_out and proc.returncode == 0,
        output_tail=tail,
        timed_out=timed_out,
        returncode=proc.returncode,
    )
