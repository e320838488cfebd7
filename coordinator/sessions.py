"""Agent sessions, read from the audit log: one per lease, from its claim to how it ended.

A session is one agent's turn at one task: it starts with the `task_claimed` event and ends
with the first later event of that task that ends the lease (completion, failure, release,
expiry, a take-over by another claim, cancellation or reopening). Nothing stores sessions
apart: the log is their record, so every agent has them, whatever started it, and they can
never disagree with the events.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from coordinator.events import positioned
from coordinator.storage.base import Row, Store, decode_json

SessionStatus = Literal["running", "completed", "failed", "released", "expired", "cancelled", "reopened"]

_ENDS: dict[str, SessionStatus] = {
    "task_completed": "completed",
    "task_retry_scheduled": "failed",
    "task_failed": "failed",
    "task_released": "released",
    "lease_expired": "expired",
    "task_claimed": "expired",  # taken over after the lease ran out, before a sweep noted it
    "task_cancelled": "cancelled",
    "task_reopened": "reopened",
}
_SUMMARY_KEY = {
    "completed": "summary",
    "failed": "error",
    "released": "note",
    "cancelled": "reason",
    "reopened": "reason",
}


class SessionRecord(BaseModel):
    """One agent's lease on one task: who, what, how it ended and what it cost."""

    id: int = Field(description="Position of the claim in the audit log (get_events).")
    project_id: int
    agent_id: int | None
    agent_name: str | None
    task_id: int
    task_title: str
    attempt: int
    status: SessionStatus = Field(
        description="running while the lease is live; else how it ended (expired: it ran out)."
    )
    summary: str | None = Field(
        description="The completion's summary, the failure's error, the release note or the planner's reason."
    )
    started_at: float
    ended_at: float | None = Field(
        description="None while running, or when an expired lease was never noted."
    )
    cost_usd: float = Field(description="Costs the agent recorded for the task during this session.")


class SessionList(BaseModel):
    sessions: list[SessionRecord]


def _sql(position: str) -> str:
    ends = ", ".join(f"'{kind}'" for kind in _ENDS)
    return f"""
SELECT c.{position} AS id, c.project_id, c.task_id, c.agent_id, c.payload AS claim, c.created_at AS started_at,
       t.title AS task_title, t.status AS task_status, t.lease_token, t.lease_expires_at,
       a.name AS agent_name, e.kind AS end_kind, e.payload AS ending, e.created_at AS ended_at,
       (SELECT COALESCE(SUM(k.cost_usd), 0) FROM agent_costs k
        WHERE k.task_id = c.task_id AND k.agent_id = c.agent_id AND k.created_at >= c.created_at
          AND NOT EXISTS (SELECT 1 FROM events n WHERE n.task_id = c.task_id AND n.kind = 'task_claimed'
                          AND n.{position} > c.{position} AND n.created_at <= k.created_at)) AS cost_usd
FROM events c
JOIN tasks t ON t.id = c.task_id
LEFT JOIN agents a ON a.id = c.agent_id
LEFT JOIN events e ON e.{position} = (
    SELECT MIN(x.{position}) FROM events x
    WHERE x.task_id = c.task_id AND x.{position} > c.{position} AND x.kind IN ({ends}))
WHERE c.project_id = $1 AND c.kind = 'task_claimed' AND c.{position} IS NOT NULL
ORDER BY c.{position} DESC
LIMIT $2"""


async def latest_sessions(store: Store, *, project_id: int, limit: int, now: float) -> list[SessionRecord]:
    """The project's latest `limit` sessions, newest first."""
    async with positioned(store) as (tx, position):
        rows = await tx.fetch(_sql(position), project_id, limit)
    return [_session(row, now) for row in rows]


def _session(row: Row, now: float) -> SessionRecord:
    claim: dict[str, Any] = decode_json(row["claim"]) or {}
    ended_at = row["ended_at"]
    if row["end_kind"] is not None:
        status = _ENDS[row["end_kind"]]
        ending: dict[str, Any] = decode_json(row["ending"]) or {}
        summary = ending.get(_SUMMARY_KEY[status]) if status in _SUMMARY_KEY else None
    else:
        live = row["task_status"] == "in_progress" and row["lease_token"] == claim.get("lease_id")
        status = "running" if live and row["lease_expires_at"] >= now else "expired"
        summary = None
        if live and status == "expired":
            ended_at = row["lease_expires_at"]
    return SessionRecord(
        id=row["id"],
        project_id=row["project_id"],
        agent_id=row["agent_id"],
        agent_name=row["agent_name"],
        task_id=row["task_id"],
        task_title=row["task_title"],
        attempt=int(claim.get("attempt", 1)),
        status=status,
        summary=summary,
        started_at=row["started_at"],
        ended_at=ended_at,
        cost_usd=float(row["cost_usd"]),
    )
