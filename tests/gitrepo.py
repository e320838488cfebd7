"""Real git repositories for tests: made in temporary folders, with an identity of their own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def run_git(cwd: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in `cwd` with the test identity, whatever its exit code."""
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **IDENTITY}, capture_output=True, text=True
    )


def git(cwd: Path | str, *args: str) -> str:
    """Run git in `cwd` with the test identity; its output without the final newline."""
    done = run_git(cwd, *args)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.removesuffix("\n")


def make_repo(path: Path) -> Path:
    """A repository at `path` with one commit (README.md) on `main`, checked out."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "--initial-branch=main")
    (path / "README.md").write_text("# project\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial")
    return path
