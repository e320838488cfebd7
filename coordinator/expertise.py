"""Expertise per domain: learnings from agents and outcomes, the claim context, validation.

`ExpertiseService` is the door for callers (MCP tools, REST); `expertise_hooks` holds what runs
inside WorkService's transactions (learning from outcomes, the claim context). The model lives in `expertise_model`, the file format in `expertise_render`, storage and
history in `expertise_store`, and the `.claude/` files in `expertise_files`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from coordinator.config import Config
from coordinator.context import OPERATOR, Caller, Role, ServiceBase, Wakeup, require_role
from coordinator.domains import classify_domain
from coordinator.errors import InvalidInput, NotFound, StateConflict, YokeflowError
from coordinator.events import append_event
from coordinator.expertise_files import SyncReport, sync_files
from coordinator.expertise_hooks import task_domain
from coordinator.expertise_model import (
    Diff,
    DiffItem,
    Entry,
    Expertise,
    Kind,
    check_path,
    check_text,
    edit,
    observe,
    remove,
)
from coordinator.expertise_render import fit_to_cap
from coordinator.expertise_store import (
    ExpertiseUpdate,
    ExpertiseView,
    Stored,
    apply_change,
    count_use,
    history,
    load,
    load_all,
)
from coordinator.queries import get_task
from coordinator.storage.base import Store
from coordinator.workspaces import Workspaces

log = logging.getLogger(__name__)
MAX_FILES = 100
STALE_FAILURE_DAYS = 30
DAY = 86_400.0
_READERS: tuple[Role, ...] = ("operator", "planner", "worker", "observer")


class LearningRecorded(BaseModel):
    """What `record_learning` did."""

    domain: str
    version: int
    merged: bool = Field(description="True: the same learning was known, so its count went up.")
    entry: Entry
    line_count: int
    pruned: list[DiffItem] = Field(description="Entries removed to keep within learning.expertise_max_lines.")
    files_written: list[str] = Field(description="Files of .claude/ rewritten (none without a repository).")
    files_problem: str | None = Field(default=None, description="Why the .claude/ files could not be synced.")


class EntryChanged(BaseModel):
    """What `edit_entry` or `remove_entry` did."""

    domain: str
    version: int = Field(
        description="The domain's version after the change (unchanged when nothing changed)."
    )
    entry: Entry | None = Field(description="The entry as edited; none when it was removed (or pruned).")
    line_count: int
    diff: Diff = Field(description="What changed, as recorded in the history.")
    files_written: list[str] = Field(description="Files of .claude/ rewritten (none without a repository).")
    files_problem: str | None = Field(default=None, description="Why the .claude/ files could not be synced.")


class DomainSummary(BaseModel):
    domain: str
    configured: bool = Field(description="Listed in learning.domains.")
    version: int
    entries: int
    line_count: int
    confidence: float
    usage_count: int
    updated_at: float | None


class ValidationReport(BaseModel):
    domain: str
    version: int
    removed: list[DiffItem] = Field(description="Old failures, missing core files, entries over the cap.")
    checked_files: bool = Field(description="Core files were checked against the project's repository.")


class ImproveReport(BaseModel):
    domain: str
    imported_version: int | None = Field(description="The version hand edits of expertise.yaml became.")
    validation: ValidationReport
    files_written: list[str]


class ExpertiseService(ServiceBase):
    """Record and read expertise; validate and improve it; keep the `.claude/` files in step."""

    def __init__(
        self, store: Store, config: Config, wakeup: Wakeup, workspaces: Workspaces | None = None
    ) -> None:
        super().__init__(store, config, wakeup)
        self.workspaces = workspaces

    def _domain(self, domain: str, stored: Stored | None = None) -> str:
        """`domain` if it is configured (or, for reading and pruning, has stored expertise)."""
        domains = self.config.learning.domains
        if domain not in domains and stored is None:
            raise InvalidInput(
                "domain",
                f"{domain!r} is not an expertise domain of this project",
                fix=f"use one of {', '.join(domains)} (learning.domains in .yokeflow.yaml)",
            )
        return domain

    async def _root(self, project_id: int) -> Path | None:
        workspace = await self.workspaces.of_project(project_id) if self.workspaces else None
        return workspace.root if workspace else None

    async def _sync(self, project_id: int, domain: str) -> SyncReport:
        """Sync the files after a change; a problem is reported, never raised (the change stands)."""
        try:
            return await sync_files(
                self.store, await self._root(project_id), project_id, domain, config=self.config
            )
        except YokeflowError as exc:
            log.warning("expertise files of %s not synced: %s", domain, exc)
            return SyncReport(domain, problem=str(exc))

    async def record_learning(
        self,
        caller: Caller,
        *,
        kind: Kind,
        content: str,
        domain: str | None = None,
        task_id: int | None = None,
        fix: str | None = None,
        files: Sequence[str] = (),
        project: int | str | None = None,
    ) -> LearningRecorded:
        """Add a learning to a domain (the one named, else the task's, else classified from the
        content and files); the same learning again raises its count instead of adding a copy."""
        require_role(caller, ("operator", "planner", "worker"), "record learnings")
        learning = self.config.learning
        if not learning.enabled:
            raise StateConflict(
                "learning is turned off for this coordinator",
                fix="set learning.enabled: true in .yokeflow.yaml",
            )
        content = check_path(content, "content") if kind == "core_file" else check_text(content, "content")
        if fix is not None and kind != "failure":
            raise InvalidInput("fix", f"a {kind} has no fix", fix="leave fix out, or record kind failure")
        fix = check_text(fix, "fix") if fix is not None else None
        if len(files) > MAX_FILES:
            raise InvalidInput("files", f"lists {len(files)} files", fix=f"name at most {MAX_FILES}")
        paths = [check_path(path, f"files[{i}]") for i, path in enumerate(files)]
        if domain is not None:
            self._domain(domain)
        recorded: list[Entry] = []

        def change(expertise: Expertise) -> tuple[Expertise, Diff]:
            updated, diff, entry = observe(
                expertise, kind=kind, content=content, now=now, fix=fix, files=paths, task_id=task_id
            )
            recorded.append(entry)
            return updated, diff

        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            task = await get_task(tx, task_id, project_id=target.id) if task_id is not None else None
            chosen = domain or (
                task_domain(task, learning.domains)
                if task
                else classify_domain(
                    "", content, [*paths, content] if kind == "core_file" else paths, learning.domains
                )
            )
            changed = await apply_change(
                tx,
                project_id=target.id,
                domain=chosen,
                change=change,
                change_type="learning",
                summary=lambda diff: f"{kind} {'seen again' if diff.updated else 'learned'}: {content[:80]}",
                now=now,
                actor=caller.name,
                max_lines=learning.expertise_max_lines,
                task_id=task_id,
            )
            assert changed is not None  # a learning always adds or updates an entry
            stored, diff = changed
        synced = await self._sync(target.id, chosen)
        return LearningRecorded(
            domain=chosen,
            version=stored.version,
            merged=bool(diff.updated),
            entry=recorded[-1],
            line_count=stored.line_count,
            pruned=list(diff.removed),
            files_written=synced.written,
            files_problem=synced.problem,
        )

    async def edit_entry(
        self,
        caller: Caller,
        *,
        domain: str,
        entry_id: int,
        content: str | None = None,
        fix: str | None = None,
        version: int | None = None,
        project: int | str | None = None,
    ) -> EntryChanged:
        """Reword entry `entry_id` (its position in the domain's entries) and/or change its fix
        ("" clears it); counts and sources stay. `version`: refuse if the domain has changed since."""
        require_role(caller, ("operator", "planner"), "edit expertise")
        if content is None and fix is None:
            raise InvalidInput(
                "content", "nothing to change", fix="give the new content, the new fix, or both"
            )

        def change(expertise: Expertise) -> tuple[Expertise, Diff]:
            kind = expertise.entries[entry_id].kind
            text = None
            if content is not None:
                text = (
                    check_path(content, "content") if kind == "core_file" else check_text(content, "content")
                )
            if fix is not None and kind != "failure":
                raise InvalidInput("fix", f"a {kind} has no fix", fix="leave fix out; only failures have one")
            return edit(expertise, entry_id, content=text, fix=check_text(fix, "fix") if fix else fix)

        return await self._change_entry(caller, domain, entry_id, version, project, change, "edited")

    async def remove_entry(
        self,
        caller: Caller,
        *,
        domain: str,
        entry_id: int,
        version: int | None = None,
        project: int | str | None = None,
    ) -> EntryChanged:
        """Remove entry `entry_id` (its position in the domain's entries)."""
        require_role(caller, ("operator", "planner"), "edit expertise")

        def change(expertise: Expertise) -> tuple[Expertise, Diff]:
            return remove(expertise, [expertise.entries[entry_id]], f"removed by {caller.name}")

        return await self._change_entry(caller, domain, entry_id, version, project, change, "removed")

    async def _change_entry(
        self,
        caller: Caller,
        domain: str,
        entry_id: int,
        version: int | None,
        project: int | str | None,
        change: Callable[[Expertise], tuple[Expertise, Diff]],
        change_type: str,
    ) -> EntryChanged:
        """One change to one existing entry, as a new version; then the files are synced."""
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self.resolve_project(tx, caller, project)
            stored = await load(tx, target.id, domain, lock=True)
            if stored is None:
                raise NotFound(
                    f"expertise domain {domain!r} has no entries",
                    fix="check the domain's name; a domain has entries once something is learned or added",
                )
            entries = stored.expertise.entries
            if not 0 <= entry_id < len(entries):
                raise NotFound(
                    f"entry {entry_id} of expertise domain {domain!r} does not exist",
                    fix=f"entries are numbered 0 to {len(entries) - 1}; read the domain again",
                )
            if version is not None and version != stored.version:
                raise StateConflict(
                    f"expertise domain {domain!r} is at version {stored.version}, not {version}",
                    fix="read the domain again and repeat the change",
                )
            old = entries[entry_id]
            changed = await apply_change(
                tx,
                project_id=target.id,
                domain=domain,
                change=change,
                change_type=change_type,
                summary=lambda diff: f"{old.kind} {change_type}: {_changed(diff, old)[:80]}",
                now=now,
                actor=caller.name,
                max_lines=self.config.learning.expertise_max_lines,
            )
        if changed is None:
            return EntryChanged(
                domain=domain,
                version=stored.version,
                entry=old,
                line_count=stored.line_count,
                diff=Diff(),
                files_written=[],
            )
        stored, diff = changed
        synced = await self._sync(target.id, domain)
        index = stored.expertise.find(old.kind, _changed(diff, old)) if change_type == "edited" else None
        entry = stored.expertise.entries[index] if index is not None else None
        return EntryChanged(
            domain=domain,
            version=stored.version,
            entry=entry,
            line_count=stored.line_count,
            diff=diff,
            files_written=synced.written,
            files_problem=synced.problem,
        )

    async def get_expertise(
        self, caller: Caller, *, domain: str, project: int | str | None = None
    ) -> ExpertiseView:
        """A domain's expertise with its figures; reading it counts as a use."""
        require_role(caller, _READERS, "read expertise")
        async with self.store.transaction() as tx:
            target = await self.resolve_project(tx, caller, project)
            stored = await load(tx, target.id, domain)
            self._domain(domain, stored)
            if stored is not None:
                await count_use(tx, stored)
        view = ExpertiseView.of(domain, stored)
        return view.model_copy(update={"usage_count": view.usage_count + 1}) if stored else view

    async def list_domains(self, caller: Caller, *, project: int | str | None = None) -> list[DomainSummary]:
        """The configured domains and any other domain with stored expertise, with their figures."""
        require_role(caller, _READERS, "read expertise")
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            rows = await load_all(tx, target.id)
        names = dict.fromkeys([*self.config.learning.domains, *rows])
        return [self._summary(name, rows.get(name)) for name in names]

    def _summary(self, domain: str, stored: Stored | None) -> DomainSummary:
        view = ExpertiseView.of(domain, stored)
        return DomainSummary(
            domain=domain,
            configured=domain in self.config.learning.domains,
            version=view.version,
            entries=len(view.entries),
            line_count=view.line_count,
            confidence=view.confidence,
            usage_count=view.usage_count,
            updated_at=view.updated_at,
        )

    async def history(
        self, caller: Caller, *, domain: str, project: int | str | None = None, limit: int = 50
    ) -> list[ExpertiseUpdate]:
        """The domain's changes, newest first: version, kind of change, summary and diff."""
        require_role(caller, _READERS, "read expertise")
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            stored = await load(tx, target.id, domain)
            self._domain(domain, stored)
            return await history(tx, stored, limit) if stored else []

    async def validate(
        self,
        caller: Caller,
        *,
        domain: str,
        project: int | str | None = None,
        max_age_days: float = STALE_FAILURE_DAYS,
    ) -> ValidationReport:
        """Prune failures not seen for `max_age_days` and core files gone from the repository (and
        anything over the line cap), as one version; the files are synced afterwards."""
        require_role(caller, ("operator", "planner"), "validate expertise")
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
        return (await self._validate(caller, target.id, domain, max_age_days))[0]

    async def _validate(
        self, caller: Caller, project_id: int, domain: str, max_age_days: float
    ) -> tuple[ValidationReport, list[str]]:
        """Validation, and the files its sync wrote."""
        async with self.store.transaction(write=False) as tx:
            stored = await load(tx, project_id, domain)
        self._domain(domain, stored)
        root = await self._root(project_id)
        paths = [e.content for e in stored.expertise.of_kind("core_file")] if stored else []
        missing = set(await asyncio.to_thread(_missing, root, paths)) if root else set()
        max_lines = self.config.learning.expertise_max_lines
        async with self.store.transaction() as tx:
            now = self.now()
            cutoff = now - max_age_days * DAY

            def change(expertise: Expertise) -> tuple[Expertise, Diff]:
                old = [e for e in expertise.of_kind("failure") if e.last_seen < cutoff]
                expertise, diff = remove(expertise, old, f"failure not seen for {max_age_days:g} days")
                gone = [e for e in expertise.of_kind("core_file") if e.content in missing]
                expertise, removed = remove(expertise, gone, "file no longer in the repository")
                diff.extend(removed)
                expertise, capped, _ = fit_to_cap(domain, expertise, max_lines)
                diff.extend(capped)
                return expertise, diff

            changed = await apply_change(
                tx,
                project_id=project_id,
                domain=domain,
                change=change,
                change_type="validation",
                summary=lambda diff: f"validation pruned {len(diff.removed)}",
                now=now,
                actor=caller.name,
                max_lines=max_lines,
            )
            current = changed[0] if changed else await load(tx, project_id, domain, lock=True)
            removed = changed[1].removed if changed else []
            if current is not None:
                await tx.execute(
                    "UPDATE expertise_files SET validated_at = $2 WHERE id = $1", current.id, now
                )
            append_event(
                tx,
                now=now,
                kind="expertise_validated",
                actor=caller.name,
                project_id=project_id,
                payload={"domain": domain, "removed": len(removed), "checked_files": root is not None},
            )
        written = (await self._sync(project_id, domain)).written if changed else []
        report = ValidationReport(
            domain=domain,
            version=current.version if current else 0,
            removed=removed,
            checked_files=root is not None,
        )
        return report, written

    async def improve(
        self, caller: Caller, *, domain: str | None = None, project: int | str | None = None
    ) -> list[ImproveReport]:
        """For one domain or all: import hand edits of expertise.yaml, validate, and rewrite the files.
        A malformed expertise.yaml stops with an error naming its line; nothing of it is imported."""
        require_role(caller, ("operator", "planner"), "improve expertise")
        domains = [self._domain(domain)] if domain is not None else list(self.config.learning.domains)
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
        root = await self._root(target.id)
        reports = []
        for name in domains:
            synced = await sync_files(self.store, root, target.id, name, config=self.config)
            validation, written = await self._validate(caller, target.id, name, STALE_FAILURE_DAYS)
            reports.append(
                ImproveReport(
                    domain=name,
                    imported_version=synced.imported_version,
                    validation=validation,
                    files_written=list(dict.fromkeys([*synced.written, *written])),
                )
            )
        return reports

    async def improve_due(self, *, validated_before: float) -> list[tuple[int, ImproveReport]]:
        """Improve every configured domain of every project whose expertise was last validated
        (or, never validated, created) before `validated_before`: what
        `learning.self_improve_interval` asks for. A domain that cannot be improved (a malformed
        expertise.yaml, a file that cannot be written) is logged and skipped; it stays due."""
        async with self.store.transaction(write=False) as tx:
            rows = await tx.fetch(
                "SELECT project_id, domain FROM expertise_files "
                "WHERE COALESCE(validated_at, created_at) < $1 ORDER BY project_id, domain",
                validated_before,
            )
        improved: list[tuple[int, ImproveReport]] = []
        for row in rows:
            project_id, domain = int(row["project_id"]), str(row["domain"])
            if domain not in self.config.learning.domains:
                continue
            try:
                reports = await self.improve(OPERATOR, domain=domain, project=project_id)
            except (YokeflowError, OSError) as exc:
                log.warning("expertise %s of project %s was not improved: %s", domain, project_id, exc)
                continue
            improved += [(project_id, report) for report in reports]
        return improved


def _changed(diff: Diff, old: Entry) -> str:
    """The content of the entry an edit or removal was about, as it is now."""
    return diff.updated[0].content if diff.updated else old.content


def _missing(root: Path, paths: list[str]) -> list[str]:
    return [path for path in paths if not (root / path).exists()]
