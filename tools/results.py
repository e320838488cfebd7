"""Result models of the tools that do not simply return a coordinator record."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from coordinator.observe import (
    AgentView,
    DependencyInfo,
    EpicProgress,
    TaskDetail,
    TaskSummary,
)
from coordinator.records import Merge, Task, TaskStatus, TaskTest
from coordinator.work import ClaimContext, Claimed, Lease, NoWork, NoWorkReason


class RegisteredAgent(BaseModel):
    agent: AgentView
    token: str = Field(description="Bearer token of this agent; shown once, only its hash is stored.")


class ClaimedTask(BaseModel):
    """The claimed task as its worker needs it; get_task has the whole record.

    The lease is in the claim's `lease`, the hand-off note and the last error in its `context`.
    """

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    epic_id: int | None
    title: str
    description: str
    action: str
    status: TaskStatus
    priority: int
    persona: str | None
    domain: str | None
    predicted_files: list[str]
    estimate: float
    attempts: int
    max_attempts: int
    branch: str | None = Field(description="The task's git branch (null: the project has no repository).")
    metadata: dict[str, Any]


class TaskOutcome(BaseModel):
    """Where your task stands after completing, failing or releasing it; get_task has the whole record."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    status: TaskStatus = Field(
        description="done; merging while its branch waits in the merge queue; "
        "pending when it will be retried or was released; failed for good."
    )
    attempts: int
    max_attempts: int
    available_at: float = Field(description="When it may be claimed again (a retry waits out its backoff).")
    summary: str | None
    files_changed: list[str]
    commit_sha: str | None
    branch: str | None
    progress_note: str | None = Field(description="The hand-off note for whoever takes it next.")
    last_error: str | None


class ClaimResult(BaseModel):
    """A lease on a task (status "claimed"), or why there is none (status "no_task")."""

    status: Literal["claimed", "no_task"]
    agent_id: int = Field(description="The agent the lease belongs to.")
    task: ClaimedTask | None = None
    lease: Lease | None = None
    context: ClaimContext | None = Field(
        default=None, description="Dependencies' results, the task's tests and hand-off notes."
    )
    worktree: str | None = Field(
        default=None,
        description="Your git worktree, now on the task's branch (null: the project has no repository).",
    )
    target_branch: str | None = Field(
        default=None,
        description="The branch your work merges into (merge it into yours to resolve a conflict).",
    )
    resumed: bool = Field(
        default=False,
        description="True: you already held this task; your worktree keeps one task until you "
        "complete, fail or release it.",
    )
    reason: NoWorkReason | None = None
    message: str | None = None
    counts: dict[str, int] | None = None
    retry_after_seconds: float | None = None

    @classmethod
    def of(cls, outcome: Claimed | NoWork, agent_id: int) -> ClaimResult:
        if isinstance(outcome, Claimed):
            held = "still " if outcome.resumed else ""
            return cls(
                status="claimed",
                agent_id=agent_id,
                task=ClaimedTask.model_validate(outcome.task),
                lease=outcome.lease,
                context=outcome.context,
                worktree=outcome.worktree,
                target_branch=outcome.target_branch,
                resumed=outcome.resumed,
                message=f"you {held}hold task {outcome.task.id} until {outcome.lease.expires_at:.0f}; "
                f"heartbeat every {outcome.lease.heartbeat_interval_seconds:g} s"
                + (
                    "; finish it (complete, fail or release) before you claim another"
                    if outcome.resumed
                    else ""
                ),
            )
        return cls(
            status="no_task",
            agent_id=agent_id,
            reason=outcome.reason,
            message=outcome.message,
            counts=outcome.counts,
            retry_after_seconds=outcome.retry_after_seconds,
        )


class DependencyResult(BaseModel):
    task_id: int
    dependencies: list[DependencyInfo] = Field(description="The task's dependencies after the change.")


class ExpandResult(BaseModel):
    epic_id: int
    tasks: list[TaskSummary] = Field(description="The created tasks, in the order given.")
    keys: dict[str, int] = Field(description="Each local key given, mapped to the id of its task.")


class EpicList(BaseModel):
    epics: list[EpicProgress]


class TestList(BaseModel):
    __test__: ClassVar[bool] = False  # not a pytest test class
    tests: list[TaskTest]


class AgentList(BaseModel):
    agents: list[AgentView]


class MergeList(BaseModel):
    merges: list[Merge]


class Pong(BaseModel):
    ok: Literal[True] = True
    server: str
    version: str
    time: float


class NextTask(BaseModel):
    task: TaskDetail | None = Field(description="The task a claim would take next, or null.")
    message: str


class TaskStatusChange(BaseModel):
    task: Task
    changed: bool = Field(description="False when the task already was in the asked state.")
    message: str
