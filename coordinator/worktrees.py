"""One git worktree per agent under `<repo>/<worktree_dir>/<folder>`, one branch per task.

The user's checkout is never switched, reset or stashed. The only change it can see is the commit
that adds the standard .gitignore entries to the target branch, made before the first worktree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from coordinator.errors import InvalidInput, StateConflict
from coordinator.gitcli import Git, GitError, repository_root, require_git
from coordinator.hygiene import append_missing, missing_ignores, required_ignores, with_lines, worktree_ignore
from coordinator.names import safe_component, valid_branch_name

INTEGRATION_FOLDER = "_integration"  # the merge queue's worktree
LOCK_REASON = "yokeflow: worktree being created"
# Only for commits YokeFlow makes itself (the .gitignore commit, stashes of leftovers).
IDENTITY = ("-c", "user.name=YokeFlow", "-c", "user.email=yokeflow@localhost")
_SHOWN_FILES = 10


@dataclass(frozen=True)
class WorktreeInfo:
    path: Path
    head: str | None
    branch: str | None
    detached: bool
    locked: bool
    lock_reason: str | None
    prunable: bool


@dataclass(frozen=True)
class BranchStart:
    branch: str
    base_commit: str
    created: bool
    stashed: str | None  # the stash commit holding leftovers found in the worktree


@dataclass
class RecoveryReport:
    pruned: list[str] = field(default_factory=list)
    unlocked: list[str] = field(default_factory=list)
    orphans: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What was repaired and what was found, in plain words."""
        return [
            *(f"forgot worktree {name}: its folder had been deleted" for name in self.pruned),
            *(f"unlocked worktree {name}, left locked by an interrupted creation" for name in self.unlocked),
            *(
                f"{path} is not a git worktree; left alone (delete it if it holds nothing you need)"
                for path in self.orphans
            ),
            *(f"worktree {name} does not exist; it is made again on its next use" for name in self.missing),
        ]


def parse_worktree_list(text: str) -> list[WorktreeInfo]:
    """The records of `git worktree list --porcelain -z`."""
    infos: list[WorktreeInfo] = []
    fields: dict[str, str] = {}
    for line in text.split("\0"):
        if line:
            key, _, value = line.partition(" ")
            fields[key] = value
            continue
        if fields:
            infos.append(
                WorktreeInfo(
                    path=Path(fields["worktree"]),
                    head=fields.get("HEAD"),
                    branch=fields["branch"].removeprefix("refs/heads/") if "branch" in fields else None,
                    detached="detached" in fields,
                    locked="locked" in fields,
                    lock_reason=fields.get("locked") or None,
                    prunable="prunable" in fields,
                )
            )
            fields = {}
    return infos


def _changed_files(status: str) -> list[str]:
    """The paths in `git status --porcelain -z` output."""
    files: list[str] = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if entry:
            files.append(entry[3:])
            if entry[0] in "RC":
                next(entries, None)  # the path it was renamed or copied from
    return files


def _listing(items: list[str]) -> str:
    more = len(items) - _SHOWN_FILES
    return ", ".join(items[:_SHOWN_FILES]) + (f" and {more} more" if more > 0 else "")


def _at(worktrees: list[WorktreeInfo], path: Path) -> WorktreeInfo | None:
    """The worktree at `path` (however it is spelt), if any."""
    wanted = path.resolve()
    return next((w for w in worktrees if w.path.resolve() == wanted), None)


def _check_worktree_dir(worktree_dir: str) -> None:
    parts = PurePath(worktree_dir).parts
    if PurePath(worktree_dir).is_absolute() or not parts or {"..", ".git"} & set(parts):
        raise InvalidInput(
            "worktree_dir",
            f"{worktree_dir!r} is not a folder inside the repository",
            fix="use a relative folder name such as .worktrees",
        )


class WorktreeManager:
    """Agent worktrees of the repository whose top folder is `git.repo`."""

    def __init__(
        self, git: Git, *, worktree_dir: str = ".worktrees", target_branch: str | None = None
    ) -> None:
        _check_worktree_dir(worktree_dir)
        self.git = git
        self.worktree_dir = worktree_dir
        self.target_branch = target_branch
        self.base = git.repo / worktree_dir
        self._lock = asyncio.Lock()
        self._ready = False
        self._root_checked = False

    async def _check_root(self) -> None:
        if self._root_checked:
            return
        root = await repository_root(self.git)
        if root.resolve() != self.git.repo.resolve():
            raise GitError(
                f"{self.git.repo} lies inside the repository at {root}, not at its top",
                fix=f"point --repo at {root}",
            )
        self._root_checked = True

    async def target(self) -> str:
        """The branch finished work merges into: the configured one, or the one checked out at the root."""
        await self._check_root()
        branch = self.target_branch
        if branch is None:
            res = await self.git.result("symbolic-ref", "--quiet", "--short", "HEAD")
            if res.returncode != 0:
                raise GitError(
                    f"the checkout at {self.git.repo} has a detached HEAD, so no branch is there to merge into",
                    fix="switch it to your main branch (git switch main) or set parallel.target_branch",
                )
            branch = res.stdout.strip()
        if await self.git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"):
            return branch
        branches = (await self.git.run("for-each-ref", "--format=%(refname:short)", "refs/heads")).split()
        if not branches:
            raise GitError(
                f"the repository at {self.git.repo} has no commits yet",
                fix="make a first commit (git commit --allow-empty -m 'Initial commit')",
            )
        raise GitError(
            f"the target branch {branch!r} does not exist",
            fix=f"create it (git branch {branch}) or set parallel.target_branch to one of: {_listing(branches)}",
        )

    async def head(self, ref: str) -> str:
        """The commit `ref` names."""
        res = await self.git.result("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if res.returncode != 0:
            raise GitError(
                f"{ref!r} names no commit in {self.git.repo}", fix="check the name (git branch --list)"
            )
        return res.stdout.strip()

    async def commits_ahead(self, branch: str, base: str) -> int:
        """How many commits `branch` has that `base` does not contain."""
        tip, since = await self.head(branch), await self.head(base)
        return int(await self.git.run("rev-list", "--count", f"{since}..{tip}"))

    async def ensure_ready(self) -> list[str]:
        """Prepare the repository for agent worktrees; return what was done, in words."""
        await require_git(self.git)
        target = await self.target()
        done: list[str] = []
        exclude = Path(await self.git.run("rev-parse", "--git-path", "info/exclude"))
        exclude = exclude if exclude.is_absolute() else self.git.repo / exclude
        if append_missing(exclude, [worktree_ignore(self.worktree_dir)]):
            done.append(f"added {worktree_ignore(self.worktree_dir)} to {exclude}")
        added = await self._commit_gitignore(target)
        if added:
            done.append(f"committed .gitignore on {target} with the missing entries {' '.join(added)}")
        self._ready = True
        return done

    async def _commit_gitignore(self, target: str) -> list[str]:
        """Commit the missing standard entries to .gitignore on `target` without touching any checkout."""
        ref = f"refs/heads/{target}"
        base = await self.head(ref)
        rows = (await self.git.run("-c", "core.quotePath=true", "ls-tree", base)).splitlines()
        old = next((row for row in rows if row.endswith("\t.gitignore")), None)
        wanted = required_ignores(self.worktree_dir)
        mode, text = "100644", ""
        if old is not None:
            mode, _, blob = old.split("\t")[0].split(" ")
            if mode not in ("100644", "100755"):
                raise StateConflict(
                    f".gitignore on {target} is not a plain file (mode {mode})",
                    fix=f"make it a plain file that holds these lines: {' '.join(wanted)}",
                )
            text = await self._blob(blob)
        missing = missing_ignores(text, wanted)
        if not missing:
            return []
        checkouts = [w for w in await self.list() if w.branch == target and w.path.exists()]
        for checkout in checkouts:
            if await self._status(checkout.path, "--ignored=matching", "--", ".gitignore"):
                raise StateConflict(
                    f".gitignore in {checkout.path} has changes not committed yet, and YokeFlow needs to "
                    f"commit entries to it on {target} before agents start",
                    fix=f"commit or undo your .gitignore changes, or add and commit these lines: {' '.join(missing)}",
                )
        blob = await self.git.run("hash-object", "-w", "--stdin", stdin=with_lines(text, missing))
        rows = [row for row in rows if row is not old] + [f"{mode} blob {blob}\t.gitignore"]
        tree = await self.git.run("mktree", stdin="\n".join(rows) + "\n")
        body = "Added by YokeFlow before the first agent worktree:\n" + "\n".join(missing)
        subject = "Ignore generated files and agent worktrees"
        commit = await self.git.run(*IDENTITY, "commit-tree", tree, "-p", base, "-m", subject, "-m", body)
        await self.git.run("update-ref", "-m", f"yokeflow: {subject.lower()}", ref, commit, base)
        for checkout in checkouts:  # their .gitignore was clean: bring it up to the new commit
            await self.git.run(
                "restore", "--source=HEAD", "--staged", "--worktree", "--", ".gitignore", cwd=checkout.path
            )
        return missing

    async def _blob(self, blob: str) -> str:
        """A blob's content, byte for byte (`Git.run` drops the final newline)."""
        res = await self.git.result("cat-file", "blob", blob)
        if res.returncode != 0:
            raise GitError(
                f"cannot read blob {blob}: {res.stderr.strip()}", fix="run git fsck on the repository"
            )
        return res.stdout

    async def _status(self, path: Path, *args: str) -> str:
        return await self.git.run("status", "--porcelain", "-z", "--untracked-files=all", *args, cwd=path)

    async def _find(self, path: Path) -> WorktreeInfo | None:
        return _at(await self.list(), path)

    async def _forget(self, info: WorktreeInfo) -> None:
        """Drop git's record of a worktree whose folder is gone."""
        if info.lock_reason == LOCK_REASON:
            await self.git.run("worktree", "unlock", str(info.path))
        await self.git.run("worktree", "remove", str(info.path))

    async def ensure_worktree(self, folder: str) -> Path:
        """The agent's worktree at `<worktree_dir>/<folder>`, made detached at the target's head if new."""
        if safe_component(folder) != folder:
            raise InvalidInput(
                "folder",
                f"{folder!r} is not a safe folder name",
                fix=f"make it with names.agent_folder(); the nearest safe name is {safe_component(folder)!r}",
            )
        path = self.base / folder
        async with self._lock:
            if not self._ready:
                await self.ensure_ready()
            info = await self._find(path)
            if info is not None and path.exists():
                return path
            if info is not None:
                await self._forget(info)
            if path.exists() and any(path.iterdir()):
                raise StateConflict(
                    f"{path} exists but is not a worktree of this repository",
                    fix="move it away or delete it; YokeFlow then makes the worktree there",
                )
            head = await self.head(f"refs/heads/{await self.target()}")
            await self.git.run(
                "worktree", "add", "--detach", "--lock", "--reason", LOCK_REASON, str(path), head
            )
            await self.git.run("worktree", "unlock", str(path))
        return path

    def _require_agent(self, info: WorktreeInfo | None, path: Path) -> WorktreeInfo:
        if info is None or info.path.resolve().parent != self.base.resolve():
            raise InvalidInput(
                "path",
                f"{path} is not an agent worktree under {self.base}",
                fix="make it with ensure_worktree()",
            )
        return info

    async def start_branch(self, path: Path, branch: str) -> BranchStart:
        """Switch the agent's worktree at `path` to `branch`, made from the target's head if new."""
        if not valid_branch_name(branch):
            raise InvalidInput(
                "branch", f"{branch!r} is not a usable branch name", fix="make it with names.task_branch()"
            )
        target = await self.target()
        if branch == target:
            raise InvalidInput(
                "branch",
                f"{branch} is the target branch; agents work on task branches",
                fix="use names.task_branch()",
            )
        worktrees = await self.list()
        self._require_agent(_at(worktrees, path), path)
        elsewhere = [
            w.path for w in worktrees if w.branch == branch and w.path.resolve().parent != self.base.resolve()
        ]
        if elsewhere:
            raise StateConflict(
                f"{branch} is checked out at {elsewhere[0]}, outside the agent worktrees",
                fix=f"switch {elsewhere[0]} to another branch first; agents never share a branch with your checkout",
            )
        stashed = await self._stash_leftovers(path, branch)
        created = not await self.git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
        if created:
            base = await self.head(f"refs/heads/{target}")
            await self.git.run("switch", "--no-track", "-c", branch, base, cwd=path)
        else:
            await self.git.run("switch", "--ignore-other-worktrees", branch, cwd=path)
            base = await self.git.run("merge-base", f"refs/heads/{branch}", f"refs/heads/{target}")
        return BranchStart(branch, base, created, stashed)

    async def _stash_leftovers(self, path: Path, branch: str) -> str | None:
        """Stash uncommitted changes (untracked files too) in the worktree; return the stash commit."""
        if not await self._status(path):
            return None
        on = (await self.git.result("symbolic-ref", "--quiet", "--short", "HEAD", cwd=path)).stdout.strip()
        message = f"yokeflow: left uncommitted in {path.name} on {on or 'a detached HEAD'}, before switching to {branch}"
        try:
            await self.git.run(
                *IDENTITY, "stash", "push", "--include-untracked", "--message", message, cwd=path
            )
        except GitError as exc:
            raise GitError(
                f"cannot stash the uncommitted changes in {path}: {exc.message}",
                fix=f"see `git -C {path} status`; finish or abort a merge or rebase in progress, then try again",
            ) from exc
        stashes = await self.git.run("stash", "list", "--format=%H %gs", cwd=path)
        return next((line.split(" ", 1)[0] for line in stashes.splitlines() if line.endswith(message)), None)

    async def remove(self, folder_or_path: str | Path) -> None:
        """Remove an agent's worktree; refuse while it holds uncommitted or unmerged work. Never forces."""
        path = folder_or_path if isinstance(folder_or_path, Path) else self.base / folder_or_path
        async with self._lock:
            info = await self._find(path)
            if info is None:
                if path.exists():
                    raise StateConflict(
                        f"{path} is not a worktree of this repository; it was left alone",
                        fix="delete it yourself if it holds nothing you need",
                    )
                return
            self._require_agent(info, path)
            if not path.exists():
                await self._forget(info)
                return
            await self._refuse_unsaved_work(info)
            if info.locked and info.lock_reason != LOCK_REASON:
                raise StateConflict(
                    f"{path} is locked ({info.lock_reason or 'no reason given'})",
                    fix=f"git worktree unlock {path}, once nothing uses it any more",
                )
            if info.locked:
                await self.git.run("worktree", "unlock", str(path))
            await self.git.run("worktree", "remove", str(path))

    async def _refuse_unsaved_work(self, info: WorktreeInfo) -> None:
        path = info.path
        changed = _changed_files(await self._status(path))
        if changed:
            raise StateConflict(
                f"{path} holds uncommitted changes: {_listing(changed)}",
                fix=f"commit them, or stash them (git -C {path} stash push --include-untracked), then remove again",
            )
        target = await self.target()
        unmerged = await self.git.run("log", "--format=%h %s", f"refs/heads/{target}..HEAD", cwd=path)
        if unmerged:
            where = f"branch {info.branch}" if info.branch else f"the detached HEAD of {path}"
            keep = f"merge {info.branch} into {target}" if info.branch else f"git -C {path} branch <name>"
            raise StateConflict(
                f"{where} has commits not in {target}: {_listing(unmerged.splitlines())}",
                fix=f"{keep} first (the merge queue does this for task branches); removing a worktree never drops work",
            )

    async def recover(self, known: Mapping[str, Path]) -> RecoveryReport:
        """Reconcile git's worktrees with `known` (folder → path of the worktrees the store holds)."""
        report = RecoveryReport()
        base = self.base.resolve()
        async with self._lock:
            live: set[Path] = set()
            for info in await self.list():
                place = info.path.resolve()
                if place.parent != base:
                    continue
                if info.lock_reason == LOCK_REASON and place.exists():
                    await self.git.run("worktree", "unlock", str(info.path))
                    report.unlocked.append(place.name)
                if place.exists():
                    live.add(place)
                elif not info.locked or info.lock_reason == LOCK_REASON:
                    await self._forget(info)
                    report.pruned.append(place.name)
            if base.is_dir():
                report.orphans = sorted(
                    child
                    for child in base.iterdir()
                    if child.is_dir() and child.name != INTEGRATION_FOLDER and child.resolve() not in live
                )
            report.missing = sorted(name for name, path in known.items() if path.resolve() not in live)
        return report

    async def list(self) -> list[WorktreeInfo]:
        """Every worktree git knows for this repository, the user's checkout first."""
        return parse_worktree_list(await self.git.run("worktree", "list", "--porcelain", "-z"))
