"""Running git: one async call per command, with errors that name the command and what git said.

git's own command line is the interface (worktrees and `merge-tree --write-tree` have no
equivalent in the Python git bindings), so this module only starts it and reads its answer.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coordinator.errors import YokeflowError

MIN_GIT_VERSION = (2, 38)
# git must not stop to ask a person anything, nor localise the messages we read.
_QUIET_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_EDITOR": "true",
    "GIT_MERGE_AUTOEDIT": "no",
    "LC_ALL": "C",
    "LANG": "C",
}


class GitError(YokeflowError):
    """A git command failed; the message holds the command and git's own words."""

    code = "git_error"

    def __init__(self, message: str, *, fix: str | None = None, returncode: int | None = None) -> None:
        self.returncode = returncode
        super().__init__(message, fix=fix)


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


def _describe(args: tuple[str, ...]) -> str:
    return "git " + " ".join(args)


class Git:
    """git commands run against one repository (or one of its worktrees, via `cwd`)."""

    def __init__(self, repo: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.repo = repo
        self._env = {**os.environ, **_QUIET_ENV, **(env or {})}

    async def result(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: str | None = None,
        limit_seconds: float | None = 120.0,
    ) -> GitResult:
        """Run git and return its exit code and output, whatever the exit code."""
        try:
            proc = await asyncio.create_subprocess_exec(
                "git",
                *args,
                cwd=cwd or self.repo,
                env=self._env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            folder = cwd or self.repo
            if not folder.is_dir():
                raise GitError(f"{folder} does not exist", fix="give the path of an existing folder") from exc
            raise GitError(
                "git is not installed", fix="install git 2.38 or newer and put it on PATH"
            ) from exc
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), limit_seconds
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise GitError(
                f"{_describe(args)} took longer than {limit_seconds:g} s and was stopped",
                fix="check for a lock file (.git/index.lock) left by another git process",
            ) from None
        assert proc.returncode is not None
        return GitResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def run(
        self,
        *args: str,
        cwd: Path | None = None,
        stdin: str | None = None,
        limit_seconds: float | None = 120.0,
    ) -> str:
        """Run git and return its standard output without the final newline; fail on a non-zero exit."""
        res = await self.result(*args, cwd=cwd, stdin=stdin, limit_seconds=limit_seconds)
        if res.returncode != 0:
            said = (res.stderr.strip() or res.stdout.strip() or "no message").splitlines()[-1]
            raise GitError(f"{_describe(args)} failed: {said}", returncode=res.returncode)
        return res.stdout.removesuffix("\n")

    async def ok(self, *args: str, cwd: Path | None = None) -> bool:
        """Whether git exits with 0 (for questions such as `rev-parse --verify`)."""
        return (await self.result(*args, cwd=cwd)).returncode == 0


async def git_version(git: Git) -> tuple[int, int, int]:
    out = await git.run("--version")
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    if not match:
        raise GitError(f"cannot read the git version from {out!r}", fix="install git 2.38 or newer")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


async def require_git(git: Git) -> tuple[int, int, int]:
    """Check that git is new enough for `merge-tree --write-tree`; return its version."""
    version = await git_version(git)
    if version[:2] < MIN_GIT_VERSION:
        have = ".".join(map(str, version))
        raise GitError(
            f"git {have} is too old: the merge queue needs git 2.38 or newer (merge-tree --write-tree)",
            fix="upgrade git, or set parallel.enabled: false to work without worktrees and merges",
        )
    return version


async def repository_root(git: Git) -> Path:
    """The top folder of the repository `git.repo` lies in; a clear error when it is not in one."""
    res = await git.result("rev-parse", "--show-toplevel")
    if res.returncode != 0:
        raise GitError(
            f"{git.repo} is not inside a git repository",
            fix="run `git init` there (and commit something), or point --repo at your project's checkout",
        )
    return Path(res.stdout.strip())
