"""Storing expertise: one row per project and domain, a version per change, its history and events.

Every change goes through `apply_change` inside the caller's transaction: it locks the row,
applies a pure change to the stored model, enforces the line cap, bumps the version and
records the change (summary and diff) in `expertise_updates` and as an `expertise_updated` event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, Field

from coordinator.events import append_event
from coordinator.expertise_model import Diff, Entry, Expertise, confidence
from coordinator.expertise_render import Figures, fit_to_cap
from coordinator.storage.base import Row, Tx, decode_json, encode_json

Change = Callable[[Expertise], tuple[Expertise, Diff]]


@dataclass(frozen=True)
class Stored:
    """One row of `expertise_files`, decoded."""

    id: int
    project_id: int
    domain: str
    expertise: Expertise
    version: int
    line_count: int
    confidence: float
    usage_count: int
    completions: int
    validated_at: float | None
    exported_hash: str | None
    exported_at: float | None
    updated_at: float

    @classmethod
    def of_row(cls, row: Row) -> Stored:
        content = decode_json(row["content"]) or {}
        return cls(
            id=int(row["id"]),
            project_id=int(row["project_id"]),
            domain=str(row["domain"]),
            expertise=Expertise.model_validate(content),
            version=int(row["version"]),
            line_count=int(row["line_count"]),
            confidence=float(row["confidence"]),
            usage_count=int(row["usage_count"]),
            completions=int(row["completions"]),
            validated_at=row["validated_at"],
            exported_hash=row["exported_hash"],
            exported_at=row["exported_at"],
            updated_at=float(row["updated_at"]),
        )

    def figures(self) -> Figures:
        return Figures(self.confidence, self.usage_count, self.version, self.updated_at)


class ExpertiseView(BaseModel):
    """A domain's expertise as `get_expertise` answers it."""

    domain: str
    description: str
    version: int = Field(description="Bumped by every change; 0 while nothing has been learned.")
    line_count: int = Field(
        description="Lines of the rendered expertise.yaml (at most learning.expertise_max_lines)."
    )
    confidence: float = Field(
        description="0 to 1: completed tasks and confirmed learnings against open failures."
    )
    usage_count: int = Field(description="How often the expertise was read (get_expertise, claims).")
    completions: int = Field(description="Tasks of the domain completed since its first learning.")
    updated_at: float | None
    validated_at: float | None
    entries: list[Entry]

    @classmethod
    def of(cls, domain: str, stored: Stored | None) -> ExpertiseView:
        if stored is None:
            return cls(
                domain=domain,
                description="",
                version=0,
                line_count=0,
                confidence=0.0,
                usage_count=0,
                completions=0,
                updated_at=None,
                validated_at=None,
                entries=[],
            )
        return cls(
            domain=domain,
            description=stored.expertise.description,
            version=stored.version,
            line_count=stored.line_count,
            confidence=stored.confidence,
            usage_count=stored.usage_count,
            completions=stored.completions,
            updated_at=stored.updated_at,
            validated_at=stored.validated_at,
            entries=stored.expertise.entries,
        )


class ExpertiseUpdate(BaseModel):
    """One entry of a domain's history."""

    version: int
    change_type: str
    summary: str
    diff: dict[str, Any]
    created_at: float


async def load(tx: Tx, project_id: int, domain: str, *, lock: bool = False) -> Stored | None:
    suffix = " FOR UPDATE" if lock and tx.backend == "postgresql" else ""
    row = await tx.fetchrow(
        f"SELECT * FROM expertise_files WHERE project_id = $1 AND domain = $2{suffix}", project_id, domain
    )
    return Stored.of_row(row) if row else None


async def load_all(tx: Tx, project_id: int) -> dict[str, Stored]:
    rows = await tx.fetch("SELECT * FROM expertise_files WHERE project_id = $1 ORDER BY domain", project_id)
    return {str(r["domain"]): Stored.of_row(r) for r in rows}


async def apply_change(
    tx: Tx,
    *,
    project_id: int,
    domain: str,
    change: Change,
    change_type: str,
    summary: str | Callable[[Diff], str],
    now: float,
    actor: str,
    max_lines: int,
    task_id: int | None = None,
    completed: bool = False,
) -> tuple[Stored, Diff] | None:
    """Apply `change` to the domain's stored expertise as one new version; None when it changed nothing.

    `summary` says what changed, or is made from the diff of the change.
    `completed`: a task of the domain was completed, which counts towards confidence (only once
    the domain has learned something).
    """
    stored = await load(tx, project_id, domain, lock=True)
    if stored is None:
        if not change(Expertise())[1]:
            return None
        await tx.execute(
            "INSERT INTO expertise_files (project_id, domain, content, version, created_at, updated_at) "
            "VALUES ($1, $2, $3, 0, $4, $4) ON CONFLICT (project_id, domain) DO NOTHING",
            project_id,
            domain,
            encode_json(Expertise().model_dump()),
            now,
        )
        stored = await load(tx, project_id, domain, lock=True)
        assert stored is not None
    completions = stored.completions + (1 if completed else 0)
    expertise, diff = change(stored.expertise)
    if not diff:
        if completed:
            await tx.execute(
                "UPDATE expertise_files SET completions = $2, confidence = $3 WHERE id = $1",
                stored.id,
                completions,
                confidence(stored.expertise, completions),
            )
        return None
    summary = summary if isinstance(summary, str) else summary(diff)
    expertise, pruned, lines = fit_to_cap(domain, expertise, max_lines)
    if pruned:
        diff.extend(pruned)
        summary += f"; pruned {len(pruned.removed)} to stay within {max_lines} lines"
    version = stored.version + 1
    score = confidence(expertise, completions)
    await tx.execute(
        "UPDATE expertise_files SET content = $2, version = $3, line_count = $4, confidence = $5, "
        "completions = $6, updated_at = $7 WHERE id = $1",
        stored.id,
        encode_json(expertise.model_dump()),
        version,
        lines,
        score,
        completions,
        now,
    )
    await tx.execute(
        "INSERT INTO expertise_updates (expertise_id, version, change_type, change_summary, diff, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        stored.id,
        version,
        change_type,
        summary,
        encode_json(diff.model_dump(exclude_none=True)),
        now,
    )
    append_event(
        tx,
        now=now,
        kind="expertise_updated",
        actor=actor,
        project_id=project_id,
        task_id=task_id,
        payload={
            "domain": domain,
            "version": version,
            "change_type": change_type,
            "summary": summary,
            **diff.counts(),
        },
    )
    updated = replace(
        stored,
        expertise=expertise,
        version=version,
        line_count=lines,
        confidence=score,
        completions=completions,
        updated_at=now,
    )
    return updated, diff


async def count_use(tx: Tx, stored: Stored) -> None:
    """One more use of the expertise (a read by an agent); a counter, so no version and no event."""
    await tx.execute("UPDATE expertise_files SET usage_count = usage_count + 1 WHERE id = $1", stored.id)


async def history(tx: Tx, stored: Stored, limit: int) -> list[ExpertiseUpdate]:
    rows = await tx.fetch(
        "SELECT version, change_type, change_summary, diff, created_at FROM expertise_updates "
        "WHERE expertise_id = $1 ORDER BY version DESC, id DESC LIMIT $2",
        stored.id,
        limit,
    )
    return [
        ExpertiseUpdate(
            version=int(r["version"]),
            change_type=str(r["change_type"]),
            summary=str(r["change_summary"]),
            diff=decode_json(r["diff"]) or {},
            created_at=float(r["created_at"]),
        )
        for r in rows
    ]
