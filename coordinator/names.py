"""Names that work everywhere: as a folder on Windows, macOS and Linux, and inside a git branch name.

Every name is a lower-case slug of letters, digits, marks, '.', '_' and '-'. It never begins with
'.', '-' or '_' (names beginning with '_' are kept for the coordinator's own worktrees, such as the
merge queue's `_integration`), never ends with '.', '-' or '.lock', holds no '..', is never a
Windows device name (CON, NUL, COM1, lpt9.tar.gz…) and is at most `max_length` UTF-8 bytes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from coordinator.errors import InvalidInput

BRANCH_PREFIX = "yokeflow/"
MAX_BRANCH_LENGTH = 200
MAX_AGENT_LENGTH = 60
MIN_LENGTH = 8

_SUPERSCRIPTS = "¹²³"  # Windows treats COM¹ and LPT³ as devices too
WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"}
    | {f"{device}{digit}" for device in ("com", "lpt") for digit in "0123456789" + _SUPERSCRIPTS}
)
_RUNS = re.compile(r"-{2,}|\.{2,}")


def _allowed(char: str) -> bool:
    return char in "._-" or unicodedata.category(char)[0] in "LNM"


def _cap(text: str, max_bytes: int) -> str:
    """The longest prefix of at most `max_bytes` UTF-8 bytes that cuts no character off its marks."""
    size = 0
    for cut, char in enumerate(text):
        size += len(char.encode())
        if size > max_bytes:
            while cut > 0 and unicodedata.category(text[cut])[0] == "M":
                cut -= 1
            return text[:cut]
    return text


def _trim(text: str) -> str:
    """Strip what may not begin or end a name, until nothing more changes."""
    while True:
        trimmed = text.lstrip("-._").rstrip("-.").removesuffix(".lock")
        if trimmed == text:
            return text
        text = trimmed


def _unreserve(text: str) -> str:
    stem, dot, rest = text.partition(".")
    return f"{stem}_{dot}{rest}" if stem in WINDOWS_RESERVED else text


def _clean(text: str, max_length: int) -> str:
    """The sanitised form of `text`; empty when nothing usable is left."""
    lowered = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower())
    slug = "".join(char if _allowed(char) else "-" for char in lowered)
    slug = _trim(_RUNS.sub(lambda run: run.group()[0], slug))
    while True:
        capped = _trim(_cap(_unreserve(slug), max_length))
        if capped == slug:
            return slug
        slug = capped


def _check_length(max_length: int) -> None:
    if max_length < MIN_LENGTH:
        raise InvalidInput("max_length", f"{max_length} is too short", fix=f"use {MIN_LENGTH} or more")


def safe_component(text: str, *, max_length: int = 200, fallback: str = "item") -> str:
    """One folder name and branch-name component made from any text ("Add cart: API" → "add-cart-api")."""
    _check_length(max_length)
    return _clean(text, max_length) or _clean(fallback, max_length) or "item"


def _fold(name: str) -> str:
    """The key under which case-insensitive (and normalisation-insensitive) file systems compare names."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name).casefold())


def unique_name(name: str, taken: Iterable[str], *, max_length: int = 200) -> str:
    """`name`, or `name-2`, `name-3`…: the first that no taken name equals, ignoring case."""
    _check_length(max_length)
    folded = {_fold(other) for other in taken}
    candidate, number = _cap(name, max_length), 1
    while _fold(candidate) in folded:
        number += 1
        suffix = f"-{number}"
        candidate = _cap(name, max_length - len(suffix)) + suffix
    return candidate


def _check_id(field: str, value: int) -> None:
    if value < 1:
        raise InvalidInput(field, f"{value} is not an id", fix="pass the positive id the store gave")


def task_branch(task_id: int, title: str) -> str:
    """The branch of one task, such as `yokeflow/task-12-add-cart-api` (at most 200 characters)."""
    _check_id("task_id", task_id)
    stem = f"{BRANCH_PREFIX}task-{task_id}"
    slug = _clean(title, MAX_BRANCH_LENGTH - len(stem) - 1)
    return f"{stem}-{slug}" if slug else stem


def agent_folder(agent_name: str, agent_id: int) -> str:
    """The worktree folder of one agent, such as `implementer-3`."""
    _check_id("agent_id", agent_id)
    return f"{safe_component(agent_name, max_length=MAX_AGENT_LENGTH, fallback='agent')}-{agent_id}"


_REF_FORBIDDEN = frozenset(" ~^:?*[\\\x7f") | frozenset(chr(code) for code in range(32))


def valid_branch_name(name: str) -> bool:
    """Whether `git check-ref-format --branch name` accepts `name`, decided without starting git.

    `refs/heads/<name>` must be a valid ref name (git-check-ref-format(1)): no control character,
    DEL, space, `~ ^ : ? * [ \\`, `..` or `@{`; no empty component (`//`, a leading or trailing
    `/`), none beginning with `.` or ending with `.lock`; no final `.`. A branch name also never
    begins with `-` and is never `HEAD`. Unlike git, `@{-1}` ("the branch before") is not expanded:
    it is refused like every other `@{`.
    """
    try:
        name.encode()
    except UnicodeEncodeError:  # lone surrogates cannot reach git
        return False
    if not name or name.startswith("-") or name == "HEAD" or name.endswith("."):
        return False
    if ".." in name or "@{" in name or not _REF_FORBIDDEN.isdisjoint(name):
        return False
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))
