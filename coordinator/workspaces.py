"""The git side of a project: its repository, the agents' worktrees, task branches and merge tickets.

A project works with git when it has a repository (`projects.repo_path`, or the coordinator's
default `--repo`) and `parallel.enabled` is on. Every agent then gets its own worktree at
registration, every claim puts that worktree on the task's branch (fresh from the target branch,
or the existing one of a re-claimed task or a conflict to resolve), and a completion with commits
becomes a merge ticket for the queue. This module does git and the `worktrees` table; task rows
change only in `coordinator.work`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from coordinator.config import Config
from coordinator.errors import InvalidInput
from coordinator.events import append_event
from coordinator.gitcli import Git
from coordinator.merging import MergeEngine
from coordinator.names import agent_folder, task_branch
from coordinator.records import Agent, Task
from coordinator.storage.base import Store
from coordinator.worktrees import WorktreeManager


class Workspace:
    """One repository: its worktree manager, its merge engine, and a lock serialising its merges."""

    def __init__(self, root: Path, config: Config) -> None:
        parallel = config.parallel
        self.root = root
        self.git = Git(root)
        self.worktrees = WorktreeManager(
            self.git, worktree_dir=parallel.worktree_dir, target_branch=parallel.target_branch
        )
        self.engine = MergeEngine(self.git, worktree_dir=parallel.worktree_dir)
        self.merge_lock = asyncio.Lock()
        self._ready: list[str] | None = None
        self._ready_lock = asyncio.Lock()

    async def ready(self) -> list[str]:
        """Check git and prepare the repository once (ignore rules, a committed .gitignore)."""
        async with self._ready_lock:
            if self._ready is None:
                self._ready = await self.worktrees.ensure_ready()
            return self._ready


@dataclass(frozen=True)
class TaskWorkspace:
    """Where a claimed task is worked on."""

    worktree: str
    branch: str
    target_branch: str
    base_commit: str
    stashed: str | None


@dataclass(frozen=True)
class MergeTicket:
    """A completed task's branch, ready to queue: its head and how far it is ahead of the target."""

    branch: str
    head: str
    target: str
    ahead: int


@dataclass(frozen=True)
class MergeResult:
    """How a merge ended, as the queue records it on the task."""

    status: Literal["merged", "conflict", "rejected", "failed"]
    merge_commit: str | None = None
    conflict_files: list[str] = field(default_factory=list)
    test_output: str | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.status == "conflict":
            return "merge conflict in " + ", ".join(self.conflict_files or ["(files not listed)"])
        if self.status == "rejected":
            return "the test gate failed on the merged tree:\n" + (self.test_output or "(no output)")
        return f"the merge failed: {self.error}" if self.status == "failed" else "merged"


class Workspaces:
    """The repositories of the coordinator's projects, opened on first use."""

    def __init__(self, store: Store, config: Config, default_repo: Path | None = None) -> None:
        self.store = store
        self.config = config
        self.default_repo = default_repo
        self._by_root: dict[Path, Workspace] = {}
        self._root_of_project: dict[int, Path | None] = {}

    @property
    def enabled(self) -> bool:
        return self.config.parallel.enabled

    async def of_project(self, project_id: int) -> Workspace | None:
        """The project's repository, or None when the project works without git."""
        if not self.enabled:
            return None
        if project_id not in self._root_of_project:
            async with self.store.transaction(write=False) as tx:
                path = await tx.fetchval("SELECT repo_path FROM projects WHERE id = $1", project_id)
            root = Path(path) if path else self.default_repo
            self._root_of_project[project_id] = root.resolve() if root else None
        root = self._root_of_project[project_id]
        if root is None:
            return None
        if root not in self._by_root:
            self._by_root[root] = Workspace(root, self.config)
        return self._by_root[root]

    async def all(self) -> list[Workspace]:
        """Every repository a project of this database uses (for recovery at start)."""
        async with self.store.transaction(write=False) as tx:
            ids = [r["id"] for r in await tx.fetch("SELECT id FROM projects ORDER BY id")]
        found = [await self.of_project(i) for i in ids]
        return list({ws.root: ws for ws in found if ws is not None}.values())

    # ------------------------------------------------------------------------------- agents

    async def prepare_agent(self, agent: Agent) -> str | None:
        """Give a worker agent its own worktree (created or reused); its path, or None without git."""
        ws = await self.of_project(agent.project_id)
        if ws is None or agent.role != "worker":
            return None
        await ws.ready()
        folder = agent_folder(agent.name, agent.id)
        path = await ws.worktrees.ensure_worktree(folder)
        async with self.store.transaction() as tx:
            now = self.store.clock()
            await tx.execute("UPDATE agents SET worktree = $2 WHERE id = $1", agent.id, str(path))
            updated = await tx.execute(
                "UPDATE worktrees SET agent_id = $3, path = $4, status = 'active', updated_at = $5 "
                "WHERE project_id = $1 AND name = $2",
                agent.project_id,
                folder,
                agent.id,
                str(path),
                now,
            )
            if not updated:
                await tx.execute(
                    "INSERT INTO worktrees (project_id, agent_id, name, path, status, created_at, updated_at) "
                    "VALUES ($1, $2, $3, $4, 'active', $5, $5)",
                    agent.project_id,
                    agent.id,
                    folder,
                    str(path),
                    now,
                )
            append_event(
                tx,
                now=now,
                kind="worktree_ready",
                actor="coordinator",
                project_id=agent.project_id,
                agent_id=agent.id,
                payload={"worktree": str(path), "folder": folder},
            )
        return str(path)

    # -------------------------------------------------------------------------------- tasks

    async def start_task(self, agent: Agent, task: Task) -> TaskWorkspace | None:
        """Put the agent's worktree on the task's branch; None when the project works without git.

        A task keeps its branch across attempts, and a follow-up that resolves a merge conflict
        works on the branch of the task it resolves (`metadata.branch`).
        """
        ws = await self.of_project(task.project_id)
        if ws is None:
            return None
        worktree = agent.worktree
        if worktree is None or not await asyncio.to_thread(
            Path(worktree).is_dir
        ):  # new, or its folder was lost
            worktree = await self.prepare_agent(agent)
        if worktree is None:
            return None
        branch = task.branch or task.metadata.get("branch") or task_branch(task.id, task.title)
        start = await ws.worktrees.start_branch(Path(worktree), branch)
        async with self.store.transaction() as tx:
            await tx.execute(
                "UPDATE worktrees SET branch = $3, base_commit = $4, status = 'active', updated_at = $5 "
                "WHERE project_id = $1 AND agent_id = $2",
                task.project_id,
                agent.id,
                branch,
                start.base_commit,
                self.store.clock(),
            )
        return TaskWorkspace(
            worktree=worktree,
            branch=branch,
            target_branch=await ws.worktrees.target(),
            base_commit=start.base_commit,
            stashed=start.stashed,
        )

    async def merge_ticket(self, task: Task, commit: str | None) -> MergeTicket | None:
        """The completed task's branch as a merge ticket; None without git, a branch or new commits.

        A `commit` the agent names must be on the task's branch, or the work it describes
        would not be the work that merges.
        """
        ws = await self.of_project(task.project_id)
        if ws is None or task.branch is None:
            return None
        target = await ws.worktrees.target()
        head = await ws.worktrees.head(task.branch)
        if commit and not await ws.git.ok("merge-base", "--is-ancestor", commit, head):
            raise InvalidInput(
                "commit",
                f"{commit} is not on the task's branch {task.branch}",
                fix=f"commit your work in your worktree on branch {task.branch}, then pass that commit "
                "(or leave commit out)",
            )
        ahead = await ws.worktrees.commits_ahead(task.branch, target)
        if ahead == 0:
            return None
        return MergeTicket(branch=task.branch, head=head, target=target, ahead=ahead)


async def recover_workspace(store: Store, ws: Workspace) -> list[str]:
    """Reconcile one repository's worktrees with what the store knows; what was repaired, in words."""
    async with store.transaction(write=False) as tx:
        rows = await tx.fetch("SELECT name, path FROM worktrees WHERE status <> 'removed' ORDER BY id")
    inside = ws.root / ws.worktrees.worktree_dir
    known = {r["name"]: Path(r["path"]) for r in rows if Path(r["path"]).parent == inside}
    report = await ws.worktrees.recover(known)
    said = report.lines()
    if said:
        async with store.transaction() as tx:
            append_event(
                tx,
                now=store.clock(),
                kind="repository_recovered",
                actor="coordinator",
                project_id=None,
                payload={"repository": str(ws.root), "repairs": said},
            )
    return said
