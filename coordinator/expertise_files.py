"""The expertise as files in the project's repository, and hand edits of them imported back.

For each domain, under `<repo>/.claude/commands/experts/{domain}/`: `expertise.yaml` (rewritten
after every change), `question.md` and `self-improve.md` (written once; yours to adapt); and
`<repo>/.claude/skills/{domain}-expert/SKILL.md` once the domain's confidence and usage reach
the thresholds of the `learning` config. The store remembers the hash of the expertise.yaml it
last wrote, so a file that differs was edited by hand and is imported (as a new version) before
it is written again. Nothing is written without a repository.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.config import Config
from coordinator.errors import YokeflowError
from coordinator.events import append_event
from coordinator.expertise_docs import (
    expertise_file,
    question_md,
    self_improve_md,
    skill_file,
    skill_markdown,
)
from coordinator.expertise_model import Diff, Expertise, merge_hand_edits
from coordinator.expertise_render import parse_yaml, render_yaml, shown_description
from coordinator.expertise_store import Stored, apply_change, load, load_all
from coordinator.storage.base import Store

_LOCKS: dict[tuple[Path, str], asyncio.Lock] = {}


@dataclass
class SyncReport:
    """What one sync did for one domain."""

    domain: str
    imported_version: int | None = None  # the version hand edits became, if there were any
    written: list[str] = field(default_factory=list)  # files written, relative to the repository
    problem: str | None = None  # why the domain could not be synced (sync_all only)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise YokeflowError(
            f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
            fix="make the file readable UTF-8 text, or delete it to have it written again",
        ) from None


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step, so no reader sees half a file."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise YokeflowError(
                f"cannot write {path}: {exc.strerror or exc}",
                fix=f"make {path.parent} writable by the coordinator",
            ) from None
        raise


async def import_hand_edits(
    store: Store, root: Path, project_id: int, domain: str, *, config: Config, actor: str = "coordinator"
) -> int | None:
    """Import `expertise.yaml` if it was edited since the coordinator wrote it: the new version, or
    None when there was nothing to import. A malformed file raises an error naming its line, and
    nothing is imported."""
    path = root / expertise_file(domain)
    text = await asyncio.to_thread(_read, path)
    if text is None:
        return None
    digest = text_hash(text)
    async with store.transaction(write=False) as tx:  # the usual case: the file is as written
        stored = await load(tx, project_id, domain)
    if stored is not None and stored.exported_hash == digest:
        return None
    parsed = parse_yaml(text, str(path), domain)
    async with store.transaction() as tx:
        stored = await load(tx, project_id, domain, lock=True)
        if stored is not None and stored.exported_hash == digest:
            return None  # another sync got there first
        current = stored.expertise if stored else Expertise()
        shown = shown_description(domain, current)
        exported_at = stored.exported_at if stored else None

        def edits(expertise: Expertise) -> tuple[Expertise, Diff]:
            return merge_hand_edits(
                expertise,
                parsed.entries,
                description=None if parsed.description == shown else parsed.description,
                exported_at=exported_at,
                now=store.clock(),
            )

        changed = await apply_change(
            tx,
            project_id=project_id,
            domain=domain,
            change=edits,
            change_type="import",
            summary=f"imported hand edits from {expertise_file(domain)}",
            now=store.clock(),
            actor=actor,
            max_lines=config.learning.expertise_max_lines,
        )
    return changed[0].version if changed else None


async def export_files(
    store: Store, root: Path, project_id: int, domain: str, *, config: Config
) -> list[str]:
    """Write the domain's files that are missing or out of date; the paths written."""
    async with store.transaction(write=False) as tx:
        stored = await load(tx, project_id, domain)
    if stored is None:
        return []
    learning = config.learning
    text = render_yaml(domain, stored.expertise, stored.figures(), learning.expertise_max_lines)
    wanted = {expertise_file(domain): text}
    folder = Path(expertise_file(domain)).parent
    once = {  # written when missing; then they are the project's own
        f"{folder}/question.md": question_md(domain),
        f"{folder}/self-improve.md": self_improve_md(domain, learning.expertise_max_lines),
    }
    if (
        stored.confidence >= learning.skill_confidence_threshold
        and stored.usage_count >= learning.skill_usage_threshold
    ):
        wanted[skill_file(domain)] = skill_markdown(
            domain,
            stored.expertise,
            version=stored.version,
            confidence=stored.confidence,
            uses=stored.usage_count,
        )
    written = await asyncio.to_thread(_write_changed, root, wanted, once)
    if stored.exported_hash != text_hash(text):
        await _note_export(store, stored, text_hash(text), written)
    return written


def _write_changed(root: Path, wanted: dict[str, str], once: dict[str, str]) -> list[str]:
    written = []
    for relative, text in wanted.items():
        if _read(root / relative) != text:
            write_atomically(root / relative, text)
            written.append(relative)
    for relative, text in once.items():
        if not (root / relative).exists():
            write_atomically(root / relative, text)
            written.append(relative)
    return written


async def _note_export(store: Store, stored: Stored, digest: str, written: list[str]) -> None:
    async with store.transaction() as tx:
        now = store.clock()
        await tx.execute(
            "UPDATE expertise_files SET exported_hash = $2, exported_at = $3 WHERE id = $1",
            stored.id,
            digest,
            now,
        )
        append_event(
            tx,
            now=now,
            kind="expertise_exported",
            actor="coordinator",
            project_id=stored.project_id,
            payload={"domain": stored.domain, "version": stored.version, "files": written},
        )


async def sync_files(
    store: Store, ws_root: Path | None, project_id: int, domain: str, *, config: Config
) -> SyncReport:
    """Bring the domain's files and its stored expertise together: import hand edits, then write
    what changed. Does nothing without a repository (`ws_root` None)."""
    report = SyncReport(domain)
    if ws_root is None:
        return report
    lock = _LOCKS.setdefault((ws_root, domain), asyncio.Lock())
    async with lock:
        report.imported_version = await import_hand_edits(store, ws_root, project_id, domain, config=config)
        report.written = await export_files(store, ws_root, project_id, domain, config=config)
    return report


async def sync_all(
    store: Store, ws_root: Path | None, project_id: int, *, config: Config
) -> list[SyncReport]:
    """`sync_files` for every configured domain and every domain with stored expertise (at start,
    or on demand); a domain that cannot be synced says why in its report, the others go on."""
    if ws_root is None:
        return []
    async with store.transaction(write=False) as tx:
        stored = await load_all(tx, project_id)
    reports = []
    for domain in dict.fromkeys([*config.learning.domains, *stored]):
        try:
            reports.append(await sync_files(store, ws_root, project_id, domain, config=config))
        except YokeflowError as exc:
            reports.append(SyncReport(domain, problem=str(exc)))
    return reports
