"""Leases on tasks: the atomic claim, heartbeats, completion, failure with retries, release.

A lease id embeds the attempt it belongs to (`<random>-a<attempt>`), a fencing token:
every call that presents a lease matches it exactly, so a worker whose lease expired and
was re-claimed by someone else changes nothing and hears "lease lost".
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass

from coordinator.domains import FALLBACK
from coordinator.errors import LeaseLost, NotFound
from coordinator.records import Task, TaskStatus
from coordinator.storage.base import Row, Tx

# Hard predecessors that are done (or cancelled, i.e. deliberately dropped) unblock a task.
_UNFINISHED = "('pending', 'in_progress', 'merging', 'failed', 'conflict', 'rejected')"


def ready_condition(persona_clause: str, agent_clause: str = "") -> str:
    """Ready tasks of project $1 at time $2 (persona $3 is matched by `persona_clause`).

    Parked tasks are never ready; `agent_clause` (the claim's) keeps tasks assigned to another
    agent out.
    """
    return f"""
    t.project_id = $1
    AND t.status IN ('pending', 'in_progress')  -- lets SQLite walk the partial claim index in order
    AND (t.status = 'pending'
         OR (t.status = 'in_progress' AND t.lease_expires_at < $2 AND t.attempts < t.max_attempts))
    AND t.available_at <= $2
    AND NOT t.parked
    AND {persona_clause}{agent_clause}
    AND NOT EXISTS (SELECT 1 FROM task_dependencies d JOIN tasks p ON p.id = d.depends_on_task_id
                    WHERE d.task_id = t.id AND d.kind = 'hard' AND p.status IN {_UNFINISHED})
    AND NOT EXISTS (SELECT 1 FROM epic_dependencies ed JOIN tasks p ON p.epic_id = ed.depends_on_epic_id
                    WHERE ed.epic_id = t.epic_id AND ed.kind = 'hard' AND p.status IN {_UNFINISHED})"""


_SUITS_PERSONA = "(t.persona IS NULL OR t.persona = $3)"
_FOR_AGENT = " AND (t.assigned_agent IS NULL OR t.assigned_agent = $4)"  # $4: the claiming agent
# A task whose branch waits in the merge queue still holds its files: a task that shares one
# and started now would branch from a target without that change and conflict at its merge.
NO_FILE_CONFLICT = """
    AND NOT EXISTS (SELECT 1 FROM task_files f
                    JOIN task_files g ON g.path = f.path AND g.task_id <> f.task_id
                    JOIN tasks o ON o.id = g.task_id
                    WHERE f.task_id = t.id AND (o.status = 'merging'
                          OR (o.status = 'in_progress' AND o.lease_expires_at >= $2)))"""


# In an `UPDATE tasks … RETURNING`: whether the task's own domain has stored expertise.
DOMAIN_HAS_EXPERTISE = (
    "EXISTS (SELECT 1 FROM expertise_files WHERE project_id = tasks.project_id "
    f"AND domain = COALESCE(tasks.domain, '{FALLBACK}'))"
)


# In an `UPDATE tasks … RETURNING`: the task and what its claim context needs (see `ClaimedRow`).
CLAIMED_ROW = f"""*,
    (SELECT COUNT(*) FROM task_dependencies WHERE task_id = tasks.id) AS dependency_count,
    EXISTS (SELECT 1 FROM task_tests WHERE task_id = tasks.id) AS has_tests,
    (SELECT priority FROM epics WHERE id = tasks.epic_id) AS epic_priority,
    {DOMAIN_HAS_EXPERTISE} AS has_expertise,
    EXISTS (SELECT 1 FROM agent_costs WHERE project_id = tasks.project_id) AS has_cost_history"""


def claim_sql(backend: str, *, avoid_file_conflicts: bool, one_task: bool = False) -> str:
    """The one statement that leases the best ready task of a project (or task $8 only), or nothing."""
    lock = " FOR UPDATE SKIP LOCKED" if backend == "postgresql" else ""
    conditions = NO_FILE_CONFLICT if avoid_file_conflicts else ""
    conditions += " AND t.id = $8" if one_task else ""
    # A paused project hands out nothing; the claim that finds nothing says why.
    conditions += " AND NOT EXISTS (SELECT 1 FROM projects WHERE id = $1 AND status = 'paused')"
    return f"""
UPDATE tasks SET
    status = 'in_progress',
    attempts = attempts + 1,
    expired_owner = CASE WHEN status = 'in_progress' THEN lease_owner ELSE NULL END,
    lease_owner = $4,
    lease_token = $5 || '-a' || CAST(attempts + 1 AS TEXT),
    lease_expires_at = $6,
    lease_ttl = $7,
    started_at = COALESCE(started_at, $2),
    updated_at = $2
WHERE id = (
    SELECT t.id FROM tasks t
    WHERE {ready_condition(_SUITS_PERSONA, _FOR_AGENT)}{conditions}
    ORDER BY t.priority, t.remaining_path DESC, t.id
    LIMIT 1{lock})
RETURNING {CLAIMED_ROW}"""


@dataclass(frozen=True)
class BackoffPolicy:
    base_seconds: float
    max_seconds: float
    jitter: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential delay before retry number `attempt` (1-based), with ± jitter."""
        raw = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, raw * (1 + spread))


@dataclass(frozen=True)
class ClaimedRow:
    """A freshly leased task, with what its claim context needs to know of its surroundings."""

    task: Task
    dependencies: int
    epic_priority: int | None
    has_tests: bool
    has_expertise: bool
    """Whether the task's domain has learned something to hand on."""
    has_cost_history: bool
    """Whether the project has recorded any cost (else no model has a history yet)."""

    @classmethod
    def of(cls, row: Row) -> ClaimedRow:
        """From a row returned with `CLAIMED_ROW`."""
        return cls(
            Task.model_validate(row),
            dependencies=int(row["dependency_count"]),
            epic_priority=None if row["epic_priority"] is None else int(row["epic_priority"]),
            has_tests=bool(row["has_tests"]),
            has_expertise=bool(row["has_expertise"]),
            has_cost_history=bool(row["has_cost_history"]),
        )


def new_lease_prefix() -> str:
    return secrets.token_hex(6)


async def claim_one(
    tx: Tx,
    *,
    project_id: int,
    agent_id: int,
    persona: str,
    now: float,
    ttl: float,
    avoid_file_conflicts: bool,
    task_id: int | None = None,
) -> ClaimedRow | None:
    row = await tx.fetchrow(
        claim_sql(tx.backend, avoid_file_conflicts=avoid_file_conflicts, one_task=task_id is not None),
        project_id,
        now,
        persona,
        agent_id,
        new_lease_prefix(),
        now + ttl,
        ttl,
        *([] if task_id is None else [task_id]),
    )
    return None if row is None else ClaimedRow.of(row)


async def has_ready_task_for_other_personas(tx: Tx, *, project_id: int, persona: str, now: float) -> bool:
    """True when a task is ready but asks for a persona other than `persona`."""
    sql = f"SELECT 1 FROM tasks t WHERE {ready_condition('t.persona <> $3')} LIMIT 1"
    return await tx.fetchval(sql, project_id, now, persona) is not None


async def leased_task(tx: Tx, *, task_id: int, lease_id: str, agent_id: int, project_id: int) -> Task:
    """The task if `lease_id` is its current lease held by `agent_id`; otherwise LeaseLost/NotFound."""
    lock = " FOR UPDATE" if tx.backend == "postgresql" else ""
    row = await tx.fetchrow(f"SELECT * FROM tasks WHERE id = $1{lock}", task_id)
    if row is None or row["project_id"] != project_id:
        raise NotFound(f"task {task_id} does not exist in this project", fix="check the task_id you claimed")
    task = Task.model_validate(row)
    if (
        task.status == TaskStatus.IN_PROGRESS
        and task.lease_token == lease_id
        and task.lease_owner == agent_id
    ):
        return task
    raise LeaseLost(lease_lost_message(task, lease_id), fix=LEASE_LOST_FIX)


LEASE_LOST_FIX = (
    "stop working on this task and do not commit more to it; call claim_task for new work "
    "(the task's current state is in get_task)"
)


def lease_lost_message(task: Task, lease_id: str) -> str:
    prefix = f"lease lost: lease {lease_id!r} is not the current lease of task {task.id}"
    if task.status == TaskStatus.IN_PROGRESS:
        return f"{prefix}; it was re-claimed (now attempt {task.attempts}) after your lease expired or was taken over"
    return f"{prefix}; the task is now {task.status.value}"
