"""The model of one domain's expertise: entries of five kinds, how they merge, and confidence.

Pure data, no database: the service loads an `Expertise`, changes a copy with the functions
here, and stores it with the `Diff` of what changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

from pydantic import BaseModel, Field

from coordinator.errors import InvalidInput

Kind = Literal["pattern", "technique", "failure", "core_file", "gotcha"]
KINDS: tuple[Kind, ...] = get_args(Kind)
MAX_CONTENT_CHARS = 2_000
MAX_ENTRY_FILES = 20
MAX_SOURCES = 20
FAILURE_CHARS = 500  # a failure learning keeps the start of the error text
_TRAILING = re.compile(r"[\s.;:!,]+$")
T = TypeVar("T")


class Entry(BaseModel):
    """One learning. `count` is how often it was seen (recorded again, or confirmed by a task)."""

    kind: Kind
    content: str = Field(description="The learning; for a core file, its path in the repository.")
    fix: str | None = Field(default=None, description="A failure's solution, once one is known.")
    files: list[str] = Field(default_factory=list, description="Files the learning is about.")
    count: int = Field(default=1, ge=1)
    first_seen: float
    last_seen: float
    sources: list[int] = Field(default_factory=list, description="Ids of the tasks it came from.")

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, normalise(self.kind, self.content)


class Expertise(BaseModel):
    """Everything known about one domain of one project."""

    description: str = ""
    entries: list[Entry] = Field(default_factory=list)

    def find(self, kind: Kind, content: str) -> int | None:
        key = (kind, normalise(kind, content))
        return next((i for i, entry in enumerate(self.entries) if entry.key == key), None)

    def of_kind(self, kind: Kind) -> list[Entry]:
        return [entry for entry in self.entries if entry.kind == kind]


class DiffItem(BaseModel):
    kind: Kind
    content: str
    reason: str | None = None
    was: str | None = Field(default=None, description="For an edited entry: its content before the edit.")


class Diff(BaseModel):
    """What one change did to the entries."""

    added: list[DiffItem] = Field(default_factory=list)
    updated: list[DiffItem] = Field(default_factory=list)
    removed: list[DiffItem] = Field(default_factory=list)
    description: str | None = Field(default=None, description="The new description, when it changed.")

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.description is not None)

    def extend(self, other: Diff) -> None:
        self.added += other.added
        self.updated += other.updated
        self.removed += other.removed
        if other.description is not None:
            self.description = other.description

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "updated": len(self.updated), "removed": len(self.removed)}


def normalise(kind: Kind, content: str) -> str:
    """The form two learnings are compared in: case, spacing and trailing punctuation ignored
    (a path: separators and a leading ./ ignored, case kept)."""
    if kind == "core_file":
        return normalise_path(content)
    return _TRAILING.sub("", " ".join(content.split()).lower())


def normalise_path(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return re.sub(r"/{2,}", "/", path).rstrip("/")


def check_path(path: str, field: str) -> str:
    """A repository-relative path, or an error saying how to write one."""
    cleaned = normalise_path(path)
    if (
        not cleaned
        or cleaned.startswith("/")
        or re.match(r"^[a-zA-Z]:", cleaned)
        or ".." in cleaned.split("/")
    ):
        raise InvalidInput(
            field,
            f"{path!r} is not a path inside the repository",
            fix="give the path relative to the repository root, e.g. src/db/schema.sql",
        )
    return cleaned


def check_text(value: str, field: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidInput(field, "is empty", fix="say what was learned in a sentence or two")
    if len(text) > MAX_CONTENT_CHARS:
        raise InvalidInput(
            field,
            f"is {len(text)} characters long, more than {MAX_CONTENT_CHARS}",
            fix="keep one learning short; record several learnings instead of one long one",
        )
    return text


def shorten_error(error: str) -> str:
    """The part of an error text a failure learning keeps: whitespace collapsed, at most 500 characters."""
    text = " ".join(error.split())
    return text if len(text) <= FAILURE_CHARS else text[: FAILURE_CHARS - 1] + "…"


def _merge_unique(old: Iterable[T], new: Iterable[T], keep: int) -> list[T]:
    merged = list(dict.fromkeys([*old, *new]))
    return merged[-keep:]


def observe(
    expertise: Expertise,
    *,
    kind: Kind,
    content: str,
    now: float,
    fix: str | None = None,
    files: Iterable[str] = (),
    task_id: int | None = None,
) -> tuple[Expertise, Diff, Entry]:
    """Record one learning: a new entry, or one more sighting of the same (normalised) one."""
    entries = list(expertise.entries)
    index = expertise.find(kind, content)
    sources = [task_id] if task_id is not None else []
    if index is None:
        entry = Entry(
            kind=kind,
            content=content,
            fix=fix,
            files=_merge_unique([], files, MAX_ENTRY_FILES),
            first_seen=now,
            last_seen=now,
            sources=sources,
        )
        entries.append(entry)
        diff = Diff(added=[DiffItem(kind=kind, content=content)])
    else:
        old = entries[index]
        entry = old.model_copy(
            update={
                "count": old.count + 1,
                "last_seen": now,
                "fix": fix or old.fix,
                "files": _merge_unique(old.files, files, MAX_ENTRY_FILES),
                "sources": _merge_unique(old.sources, sources, MAX_SOURCES),
            }
        )
        entries[index] = entry
        diff = Diff(updated=[DiffItem(kind=kind, content=old.content, reason="seen again")])
    return expertise.model_copy(update={"entries": entries}), diff, entry


def record_fix(expertise: Expertise, *, task_id: int, fix: str, now: float) -> tuple[Expertise, Diff]:
    """Give the open failures that came from `task_id` their fix (the task then succeeded)."""
    entries, diff = [], Diff()
    for entry in expertise.entries:
        if entry.kind == "failure" and entry.fix is None and task_id in entry.sources:
            entry = entry.model_copy(update={"fix": fix, "last_seen": now})
            diff.updated.append(DiffItem(kind="failure", content=entry.content, reason="fix found"))
        entries.append(entry)
    return expertise.model_copy(update={"entries": entries}), diff


def remove(expertise: Expertise, doomed: list[Entry], reason: str) -> tuple[Expertise, Diff]:
    keys = {entry.key for entry in doomed}
    kept = [entry for entry in expertise.entries if entry.key not in keys]
    diff = Diff(removed=[DiffItem(kind=e.kind, content=e.content, reason=reason) for e in doomed])
    return expertise.model_copy(update={"entries": kept}), diff


def edit(expertise: Expertise, index: int, *, content: str | None, fix: str | None) -> tuple[Expertise, Diff]:
    """Entry `index` with new wording and/or fix (checked already; `fix` "" clears it), keeping
    its counts and sources. Refused when the new wording is another entry's."""
    entries = list(expertise.entries)
    old = entries[index]
    new_content = old.content if content is None else content
    new_fix = old.fix if fix is None else (fix or None)
    other = expertise.find(old.kind, new_content)
    if other is not None and other != index:
        raise InvalidInput(
            "content",
            f"entry {other} already says this",
            fix="remove this entry instead, or edit that one",
        )
    changed = [
        name
        for name, same in (("content", new_content == old.content), ("fix", new_fix == old.fix))
        if not same
    ]
    if not changed:
        return expertise, Diff()
    entries[index] = old.model_copy(update={"content": new_content, "fix": new_fix})
    item = DiffItem(
        kind=old.kind,
        content=new_content,
        reason=f"{' and '.join(changed)} edited",
        was=old.content if "content" in changed else None,
    )
    return expertise.model_copy(update={"entries": entries}), Diff(updated=[item])


def confidence(expertise: Expertise, completions: int) -> float:
    """How far the expertise has proven itself, from 0 to 1.

    evidence = completed tasks of the domain since its first learning + confirmations (each
    sighting of an entry beyond its first); open = failures without a fix.
    confidence = evidence / (evidence + open + 2): nothing proven is 0, 8 pieces of evidence
    and no open failure is 0.8, and every unsolved failure pulls it down.
    """
    evidence = completions + sum(entry.count - 1 for entry in expertise.entries)
    open_failures = sum(1 for entry in expertise.entries if entry.kind == "failure" and entry.fix is None)
    return round(evidence / (evidence + open_failures + 2), 3)


@dataclass(frozen=True)
class HandEntry:
    """An entry as written in a hand-edited file: no counts or sources."""

    kind: Kind
    content: str
    fix: str | None


def merge_hand_edits(
    current: Expertise,
    written: list[HandEntry],
    *,
    description: str | None,
    exported_at: float | None,
    now: float,
) -> tuple[Expertise, Diff]:
    """The expertise after the edits made to its exported file.

    Entries written in the file keep the counts and sources of the stored entry they match
    (normalised); new ones start at a count of 1; a changed wording or solution is taken. A
    stored entry missing from the file was deleted by hand, unless it was learned after the
    file was written (`exported_at`), or the file was never written by the coordinator.
    """
    by_key = {entry.key: entry for entry in current.entries}
    entries: dict[tuple[Kind, str], Entry] = {}
    diff = Diff()
    for hand in written:
        key = (hand.kind, normalise(hand.kind, hand.content))
        if key in entries:
            continue
        old = by_key.get(key)
        if old is None:
            entries[key] = Entry(
                kind=hand.kind, content=hand.content, fix=hand.fix, first_seen=now, last_seen=now
            )
            diff.added.append(DiffItem(kind=hand.kind, content=hand.content, reason="written by hand"))
        elif (old.content, old.fix) != (hand.content, hand.fix):
            entries[key] = old.model_copy(update={"content": hand.content, "fix": hand.fix})
            diff.updated.append(DiffItem(kind=hand.kind, content=hand.content, reason="edited by hand"))
        else:
            entries[key] = old
    merged: list[Entry] = []
    for entry in current.entries:
        if entry.key in entries:
            merged.append(entries[entry.key])
        elif exported_at is None or entry.first_seen > exported_at:
            merged.append(entry)
        else:
            diff.removed.append(DiffItem(kind=entry.kind, content=entry.content, reason="deleted by hand"))
    merged += [entry for key, entry in entries.items() if key not in by_key]
    if description is not None and description != current.description:
        diff.description = description
    new_description = description if description is not None else current.description
    return Expertise(description=new_description, entries=merged), diff
