"""Worktrees and the merge queue: who works where, merges with their conflicts and test output, retries."""

from __future__ import annotations

from pydantic import BaseModel, Field

from coordinator.records import Merge, MergeStatus
from coordinator.rest.api import Call, RouteTable
from coordinator.rest.params import Limit, MergePath, ProjectPath, Strict
from coordinator.rest.reads import MergeDetail, WorktreeView

MERGES = RouteTable("worktrees and merges")


class WorktreeList(BaseModel):
    worktrees: list[WorktreeView]


class MergeList(BaseModel):
    merges: list[Merge]


class MergeQuery(Strict):
    status: list[MergeStatus] = Field(
        default=[], description="Only merges in these states (repeat, or comma-separate)."
    )
    limit: Limit = 100


@MERGES.get("/api/projects/{project}/worktrees")
async def list_worktrees(call: Call, path: ProjectPath) -> WorktreeList:
    """The project's worktrees, each with its agent (and last heartbeat) and the task it is leased."""
    return WorktreeList(worktrees=await call.reads.worktrees(call.caller, path.project))


@MERGES.get("/api/projects/{project}/merges")
async def list_merges(call: Call, path: ProjectPath, query: MergeQuery) -> MergeList:
    """The project's merge queue, newest first: waiting, running and finished merges."""
    return MergeList(merges=await call.reads.merges(call.caller, path.project, query.status, query.limit))


@MERGES.get("/api/merges/{merge_id}")
async def get_merge(call: Call, path: MergePath) -> MergeDetail:
    """One merge: its state, conflicting files, test output and error, and its task."""
    return await call.reads.merge(call.caller, path.merge_id)


@MERGES.post("/api/merges/{merge_id}/retry")
async def retry_merge(call: Call, path: MergePath) -> Merge:
    """Queue a failed, conflict or rejected merge again, from its branch's current head.

    Its task goes back to merging. Refused (409) while a follow-up task still works on the branch.
    """
    return await call.coord.merge_outcomes.retry_merge(call.caller, merge_id=path.merge_id)
