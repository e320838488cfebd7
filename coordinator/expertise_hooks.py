"""Expertise inside WorkService's transactions: learning from outcomes, and the claim context.

`learn_from_outcome` runs in the transaction that completes or fails a task, and
`expertise_context` in the one that claims it, so expertise changes exactly when the work does.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.config import Config
from coordinator.domains import FALLBACK, classify_domain
from coordinator.errors import InvalidInput
from coordinator.expertise_docs import context_markdown
from coordinator.expertise_model import (
    MAX_CONTENT_CHARS,
    Diff,
    Expertise,
    check_path,
    observe,
    record_fix,
    shorten_error,
)
from coordinator.expertise_store import apply_change, count_use, load
from coordinator.records import Task
from coordinator.storage.base import Tx


def task_domain(task: Task, domains: Sequence[str]) -> str:
    """The task's own domain when it is configured, else the one its words and files point to."""
    if task.domain in domains:
        return str(task.domain)
    return classify_domain(task.title, task.description, task.predicted_files, domains)


def _describe(diff: Diff) -> str:
    parts = [
        f"{len(items)} {word}" for word, items in (("added", diff.added), ("updated", diff.updated)) if items
    ]
    parts += [f"{len(diff.removed)} removed"] if diff.removed else []
    return ", ".join(parts) or "description changed"


async def learn_from_outcome(
    tx: Tx,
    *,
    task: Task,
    failed: bool,
    error: str | None,
    summary: str | None,
    files: list[str],
    now: float,
    config: Config,
    domain_has_expertise: bool = True,
) -> bool:
    """Learn from a task's outcome inside the transaction that records it; whether expertise changed.

    A failure becomes a failure learning of the task's domain (its error text). A completion
    gives the task's earlier failures their fix (its summary), makes the files it touched core
    files, and counts towards the domain's confidence. `domain_has_expertise` False says the
    task's own domain has none, so a completion that touched no files has nothing to change.
    """
    learning = config.learning
    if not learning.enabled:
        return False
    domain = task_domain(task, learning.domains)
    if failed:
        if not error or not error.strip():
            return False
        issue = shorten_error(error)

        def change(expertise: Expertise) -> tuple[Expertise, Diff]:
            updated, diff, _ = observe(expertise, kind="failure", content=issue, now=now, task_id=task.id)
            return updated, diff

        what = f"failure of task {task.id}"
    else:
        fix = (
            " ".join((summary or "").split())[:MAX_CONTENT_CHARS]
            or f"task {task.id} ({task.title}) succeeded"
        )
        paths = list(dict.fromkeys(_valid_paths(files)))
        if not paths and not domain_has_expertise and domain == (task.domain or FALLBACK):
            return False  # no failures to fix, no files, no confidence to count

        def change(expertise: Expertise) -> tuple[Expertise, Diff]:
            expertise, diff = record_fix(expertise, task_id=task.id, fix=fix, now=now)
            for path in paths:
                expertise, seen, _ = observe(
                    expertise, kind="core_file", content=path, now=now, task_id=task.id
                )
                diff.extend(seen)
            return expertise, diff

        what = f"completion of task {task.id}"
    changed = await apply_change(
        tx,
        project_id=task.project_id,
        domain=domain,
        change=change,
        change_type="outcome",
        summary=lambda diff: f"{what}: {_describe(diff)}",
        now=now,
        actor="coordinator",
        max_lines=learning.expertise_max_lines,
        task_id=task.id,
        completed=not failed,
    )
    return changed is not None


def _valid_paths(files: Sequence[str]) -> list[str]:
    paths = []
    for path in files:
        try:
            paths.append(check_path(path, "files"))
        except InvalidInput:
            continue  # a file outside the repository is no core file
    return paths


async def expertise_context(
    tx: Tx, *, project_id: int, domain: str | None, max_chars: int = 3000
) -> str | None:
    """The domain's expertise for a claim as concise markdown within `max_chars`, strongest and most
    recent first; None when the domain has learned nothing. Counts as a use of the expertise."""
    stored = await load(tx, project_id, domain or FALLBACK)
    if stored is None:
        return None
    text = context_markdown(
        stored.domain,
        stored.expertise,
        version=stored.version,
        confidence=stored.confidence,
        max_chars=max_chars,
    )
    if text is not None:
        await count_use(tx, stored)
    return text
