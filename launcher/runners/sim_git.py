"""The sim agent's work in its git worktree: deterministic files per task, commits, catching up with the target.

Everything here is plain git through `coordinator.gitcli.Git`; the content is a function of the
task alone, so two runs of the same plan write the same files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.gitcli import Git


class OutsideWorktree(ValueError):
    """A predicted file's path leads out of the worktree."""


def task_line(task: Mapping[str, Any]) -> str:
    return f"task {task['id']}: {task['title']}"


def union(*versions: str) -> str:
    """Every distinct line of the versions, in order of first appearance (a deterministic resolution)."""
    lines = dict.fromkeys(line for text in versions for line in text.splitlines())
    return "".join(f"{line}\n" for line in lines)


class Workspace:
    """One agent's worktree; commits carry the agent's name as author and committer."""

    def __init__(self, worktree: Path, author: str) -> None:
        self.worktree = worktree
        self.git = Git(worktree)
        self._identity = ("-c", f"user.name={author}", "-c", f"user.email={author}@agents.yokeflow.invalid")

    def task_files(self, task: Mapping[str, Any]) -> list[str]:
        """The paths the task writes: its predicted files, else `tasks/task-<id>.md`."""
        paths = list(task.get("predicted_files") or []) or [f"tasks/task-{task['id']}.md"]
        root = self.worktree.resolve()
        for path in paths:
            if not (root / path).resolve().is_relative_to(root):
                raise OutsideWorktree(
                    f"predicted file {path!r} of task {task['id']} lies outside the worktree {root}"
                )
        return paths

    async def write_task(self, task: Mapping[str, Any]) -> list[str]:
        """Add the task's line to each of its files (creating folders and files); the paths."""
        paths = self.task_files(task)
        for path in paths:
            await asyncio.to_thread(_add_line, self.worktree / path, task_line(task))
        return paths

    async def commit(self, message: str) -> str:
        """Commit everything in the worktree (an empty commit if nothing changed); the new commit's sha."""
        await self.git.run("add", "-A")
        await self.git.run(*self._identity, "commit", "--allow-empty", "--no-verify", "-m", message)
        return await self.git.run("rev-parse", "HEAD")

    async def catch_up(self, target: str) -> bool:
        """Merge `target` into the current branch unless it is in already, resolving every conflict
        as the union of both sides' lines; True when a merge happened."""
        if await self.git.ok("merge-base", "--is-ancestor", target, "HEAD"):
            return False
        merged = await self.git.result(*self._identity, "merge", "--no-edit", "--no-verify", target)
        if merged.returncode != 0:
            conflicted = await self.git.run("diff", "--name-only", "--diff-filter=U")
            for path in conflicted.splitlines():
                theirs = await self.git.result("show", f":3:{path}")
                ours = await self.git.result("show", f":2:{path}")
                sides = [side.stdout for side in (theirs, ours) if side.returncode == 0]
                await asyncio.to_thread(_write, self.worktree / path, union(*sides))
            await self.git.run("add", "-A")
            await self.git.run(*self._identity, "commit", "--no-edit", "--no-verify")
        return True


def _add_line(path: Path, line: str) -> None:
    _write(path, union(path.read_text(encoding="utf-8") if path.exists() else "", line))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
