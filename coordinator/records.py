"""Typed records for the rows the coordinator stores, decoded the same way on every backend."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from coordinator.storage.base import decode_json

DependencyKind = Literal["hard", "soft"]


class TaskStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    MERGING = "merging"
    DONE = "done"
    FAILED = "failed"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class Record(BaseModel):
    """A row: JSON columns arrive as text and are decoded here."""

    model_config = ConfigDict(frozen=True)
    json_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _decode_json_columns(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.json_fields:
            data = {k: decode_json(v) if k in cls.json_fields else v for k, v in data.items()}
        return data


class Project(Record):
    json_fields = ("metadata",)
    id: int
    name: str
    description: str
    spec: str
    repo_path: str | None
    status: str
    metadata: dict[str, Any]
    created_at: float
    updated_at: float


class Epic(Record):
    json_fields = ("metadata",)
    id: int
    project_id: int
    name: str
    description: str
    priority: int
    status: str
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    completed_at: float | None


class Task(Record):
    json_fields = ("predicted_files", "files_changed", "metadata")
    id: int
    project_id: int
    epic_id: int | None
    local_key: str | None
    title: str
    description: str
    action: str
    priority: int
    persona: str | None
    domain: str | None
    status: TaskStatus
    predicted_files: list[str]
    estimate: float
    remaining_path: float
    batch_number: int | None
    attempts: int
    max_attempts: int
    available_at: float
    lease_owner: int | None
    lease_token: str | None
    lease_expires_at: float | None
    lease_ttl: float | None
    progress_note: str | None
    expired_owner: int | None
    expiry_noted: str | None
    result: str | None
    summary: str | None
    files_changed: list[str]
    commit_sha: str | None
    branch: str | None
    last_error: str | None
    metadata: dict[str, Any]
    created_at: float
    updated_at: float
    started_at: float | None
    completed_at: float | None


class Dependency(Record):
    task_id: int
    depends_on_task_id: int
    kind: DependencyKind


class EpicDependency(Record):
    epic_id: int
    depends_on_epic_id: int
    kind: DependencyKind


class TaskTest(Record):
    json_fields = ("steps",)
    id: int
    task_id: int
    category: str
    description: str
    steps: list[str]
    passes: bool | None
    notes: str | None
    created_at: float
    updated_at: float


class Persona(Record):
    json_fields = ("tools", "domains")
    name: str
    description: str
    model: str | None
    profile: str
    tools: list[str]
    domains: list[str]
    prompt: str
    updated_at: float


class Agent(Record):
    json_fields = ("capabilities",)
    id: int
    project_id: int
    name: str
    persona: str
    role: Literal["worker", "planner", "observer"]
    capabilities: list[str]
    token_hash: str
    status: Literal["active", "lost", "stopped"]
    last_heartbeat_at: float
    worktree: str | None
    pid: int | None
    created_at: float


class Event(Record):
    json_fields = ("payload",)
    id: int
    project_id: int | None
    task_id: int | None
    agent_id: int | None
    actor: str
    kind: str
    before_status: str | None
    after_status: str | None
    payload: dict[str, Any]
    created_at: float


class MergeStatus(StrEnum):
    QUEUED = "queued"
    CHECKING = "checking"
    MERGING = "merging"
    TESTING = "testing"
    MERGED = "merged"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    FAILED = "failed"


class Merge(Record):
    """An entry of the merge queue: one completed task's branch on its way into the target branch."""

    json_fields = ("conflict_files",)
    id: int
    project_id: int
    task_id: int
    branch: str
    target_branch: str
    status: MergeStatus
    conflict_files: list[str]
    test_output: str | None
    merge_commit: str | None
    error: str | None
    queued_at: float
    started_at: float | None
    finished_at: float | None
    runner: str | None
    lease_expires_at: float | None
    target_before: str | None
    head_commit: str | None
