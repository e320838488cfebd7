"""Expertise per domain: the list, one domain's entries and history, validation, improvement, and
adding, editing and removing entries."""

from __future__ import annotations

from pydantic import BaseModel, Field

from coordinator.expertise import (
    DomainSummary,
    EntryChanged,
    ImproveReport,
    LearningRecorded,
    ValidationReport,
)
from coordinator.expertise_model import Kind
from coordinator.expertise_store import ExpertiseUpdate, ExpertiseView
from coordinator.rest.api import Call, RouteTable
from coordinator.rest.params import Id, Limit, Name, ProjectPath, ShortText, Strict, Text

EXPERTISE = RouteTable("expertise")


class DomainPath(ProjectPath):
    domain: Name


class DomainList(BaseModel):
    domains: list[DomainSummary]


class History(BaseModel):
    history: list[ExpertiseUpdate] = Field(description="The domain's changes, newest first.")


class HistoryQuery(Strict):
    limit: Limit = 50


class Improvement(BaseModel):
    reports: list[ImproveReport]


class NewEntry(Strict):
    kind: Kind
    content: Text = Field(description="The learning; for core_file, a path in the repository.")
    fix: Text | None = Field(default=None, description="For a failure: what fixed it.")
    files: list[ShortText] = Field(default=[], max_length=100, description="Files the learning is about.")
    task_id: Id | None = Field(default=None, description="The task it was learned on.")


class EntryPath(DomainPath):
    entry_id: int = Field(
        ge=0, le=100_000, description="The entry's position in the domain's entries, from 0."
    )


class EntryEdit(Strict):
    content: Text | None = Field(default=None, description="The new wording (for core_file, a path).")
    fix: Text | None = Field(default=None, description='For a failure: the new fix ("" clears it).')
    version: int | None = Field(
        default=None,
        ge=0,
        description="The domain's version the edit was made on; refused if it has changed.",
    )


class EntryRemoval(Strict):
    version: int | None = Field(
        default=None,
        ge=0,
        description="The domain's version the removal was decided on; refused if it has changed.",
    )


@EXPERTISE.get("/api/projects/{project}/expertise")
async def list_domains(call: Call, path: ProjectPath) -> DomainList:
    """The configured domains and any other with stored expertise: version, entries, confidence, use."""
    return DomainList(domains=await call.coord.expertise.list_domains(call.caller, project=path.project))


@EXPERTISE.get("/api/projects/{project}/expertise/{domain}")
async def get_domain(call: Call, path: DomainPath) -> ExpertiseView:
    """A domain's expertise: its entries and figures (reading it counts as a use)."""
    return await call.coord.expertise.get_expertise(call.caller, domain=path.domain, project=path.project)


@EXPERTISE.get("/api/projects/{project}/expertise/{domain}/history")
async def domain_history(call: Call, path: DomainPath, query: HistoryQuery) -> History:
    """The domain's changes, newest first: version, kind of change, summary and diff."""
    changes = await call.coord.expertise.history(
        call.caller, domain=path.domain, project=path.project, limit=query.limit
    )
    return History(history=changes)


@EXPERTISE.post("/api/projects/{project}/expertise/{domain}/validate")
async def validate_domain(call: Call, path: DomainPath) -> ValidationReport:
    """Prune old failures, core files gone from the repository and anything over the line cap."""
    return await call.coord.expertise.validate(call.caller, domain=path.domain, project=path.project)


@EXPERTISE.post("/api/projects/{project}/expertise/{domain}/improve")
async def improve_domain(call: Call, path: DomainPath) -> Improvement:
    """Import hand edits of the domain's expertise.yaml, validate, and rewrite its files."""
    reports = await call.coord.expertise.improve(call.caller, domain=path.domain, project=path.project)
    return Improvement(reports=reports)


@EXPERTISE.post("/api/projects/{project}/expertise/{domain}/entries", status=201)
async def add_entry(call: Call, path: DomainPath, body: NewEntry) -> LearningRecorded:
    """Add an entry by hand (the same learning again raises its count instead of adding a copy)."""
    return await call.coord.expertise.record_learning(
        call.caller,
        kind=body.kind,
        content=body.content,
        domain=path.domain,
        task_id=body.task_id,
        fix=body.fix,
        files=body.files,
        project=path.project,
    )


@EXPERTISE.patch("/api/projects/{project}/expertise/{domain}/entries/{entry_id}")
async def edit_entry(call: Call, path: EntryPath, body: EntryEdit) -> EntryChanged:
    """Reword an entry and/or change a failure's fix, as a new version; its counts and sources stay."""
    return await call.coord.expertise.edit_entry(
        call.caller,
        domain=path.domain,
        entry_id=path.entry_id,
        content=body.content,
        fix=body.fix,
        version=body.version,
        project=path.project,
    )


@EXPERTISE.delete("/api/projects/{project}/expertise/{domain}/entries/{entry_id}")
async def remove_entry(call: Call, path: EntryPath, query: EntryRemoval) -> EntryChanged:
    """Remove an entry, as a new version."""
    return await call.coord.expertise.remove_entry(
        call.caller, domain=path.domain, entry_id=path.entry_id, version=query.version, project=path.project
    )
