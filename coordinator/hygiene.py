"""Repository hygiene: nothing generated or secret is committed, and .gitignore keeps it that way.

Agents work in worktrees of the user's repository. A committed virtual environment, `node_modules`
or `.env` ends up in every worktree and every merge, and an ignore rule for a tracked folder makes
an agent's new files there vanish from its commits without a word.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from coordinator.gitcli import Git

DEFAULT_WORKTREE_DIR = ".worktrees"
# Order matters: a negation works only below the pattern it excepts.
STANDARD_IGNORES: tuple[str, ...] = (
    ".venv/",
    "venv/",
    "env/",
    "node_modules/",
    "build/",
    "dist/",
    "*.egg-info/",
    "__pycache__/",
    ".pytest_cache/",
    "target/",
    ".next/",
    "coverage/",
    ".env",
    ".env.*",
    "!.env.example",
    ".DS_Store",
)

_VENVS = (".venv", "venv", "env")
_FOLDER_KINDS = {
    "virtual environment": _VENVS,
    "installed dependencies": ("node_modules",),
    "build output": (
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".pytest_cache",
        "target",
        ".next",
        "coverage",
    ),
}


def required_ignores(worktree_dir: str = DEFAULT_WORKTREE_DIR) -> list[str]:
    """STANDARD_IGNORES plus the (root-anchored) folder holding agent worktrees."""
    return [*STANDARD_IGNORES, worktree_ignore(worktree_dir)]


def worktree_ignore(worktree_dir: str) -> str:
    return f"/{worktree_dir.strip('/')}/"


@dataclass(frozen=True)
class HygieneProblem:
    kind: str
    path: str
    message: str
    fix: str


@dataclass
class HygieneReport:
    problems: list[HygieneProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _pattern_key(line: str) -> str:
    """What a .gitignore line matches, so that `node_modules`, `/node_modules/` and `**/node_modules` agree."""
    line = line.strip()
    negated = line.startswith("!")
    body = line.removeprefix("!").removeprefix("/").removeprefix("**/").rstrip("/")
    return ("!" if negated else "") + body


def missing_ignores(text: str, wanted: list[str]) -> list[str]:
    """The lines of `wanted` that the .gitignore text `text` lacks, in the order of `wanted`."""
    present = [_pattern_key(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    missing: list[str] = []
    for index, entry in enumerate(wanted):
        key = _pattern_key(entry)
        after = [*present, *map(_pattern_key, missing)]
        if key not in after:
            missing.append(entry)
        elif key.startswith("!") and index > 0:
            last = len(after) - 1 - after[::-1].index(key)
            excepted = _pattern_key(wanted[index - 1])
            if excepted in after[last + 1 :]:
                missing.append(entry)
    return missing


def with_lines(text: str, lines: list[str]) -> str:
    """`text` with `lines` appended, in its own line-ending style."""
    if not lines:
        return text
    newline = "\r\n" if "\r\n" in text else "\n"
    if text and not text.endswith("\n"):
        text += newline
    return text + "".join(line + newline for line in lines)


def _folder(kind: str, folder: str, rule: str) -> HygieneProblem:
    return HygieneProblem(
        kind,
        folder,
        f"{folder}/ ({kind}) is committed: every worktree and merge carries it, "
        f"and the ignore rule {rule} hides new files there from commits",
        f"git rm -r --cached -- {folder} && git commit -m 'Stop tracking {folder}' "
        "(the files stay on disk; .gitignore keeps them out)",
    )


def _folder_problem(path: str, worktree_dir: str) -> HygieneProblem | None:
    anchored = worktree_ignore(worktree_dir)
    if path.startswith(anchored[1:]):
        return _folder("agent worktrees", anchored[1:-1], anchored)
    parts = path.split("/")
    for depth, part in enumerate(parts[:-1]):
        for kind, names in _FOLDER_KINDS.items():
            if any(fnmatchcase(part, name) for name in names):
                return _folder(kind, "/".join(parts[: depth + 1]), f"{part}/")
    return None


def _file_problem(path: str) -> HygieneProblem | None:
    name = path.rsplit("/", 1)[-1]
    untrack = f"git rm --cached -- {path} && git commit -m 'Stop tracking {path}'"
    if name == ".env" or (fnmatchcase(name, ".env.*") and name != ".env.example"):
        return HygieneProblem(
            "secrets",
            path,
            f"{path} is committed and may hold secrets",
            f"{untrack}, then change every secret it held (they stay in the history); "
            "commit a .env.example with placeholder values instead",
        )
    if name == ".DS_Store":
        return HygieneProblem("system file", path, f"{path} (macOS folder settings) is committed", untrack)
    return None


async def validate_repository(git: Git, *, worktree_dir: str = DEFAULT_WORKTREE_DIR) -> HygieneReport:
    """Committed generated folders, secrets and system files, and missing .gitignore entries."""
    tracked = (await git.run("ls-files", "-z", "--cached", "--full-name")).split("\0")
    report = HygieneReport()
    seen: set[str] = set()
    for path in filter(None, tracked):
        problem = _folder_problem(path, worktree_dir) or _file_problem(path)
        if problem and problem.path not in seen:
            seen.add(problem.path)
            report.problems.append(problem)
    gitignore = git.repo / ".gitignore"
    text = gitignore.read_text(encoding="utf-8", errors="surrogateescape") if gitignore.is_file() else ""
    missing = missing_ignores(text, required_ignores(worktree_dir))
    if missing:
        report.problems.append(
            HygieneProblem(
                "gitignore",
                ".gitignore",
                (".gitignore lacks " if gitignore.is_file() else "there is no .gitignore; it needs ")
                + ", ".join(missing),
                "add these lines to .gitignore and commit it (YokeFlow does this itself before "
                "the first worktree is made)",
            )
        )
    return report


def append_missing(path: Path, wanted: list[str]) -> list[str]:
    """Append the lines of `wanted` that the ignore file at `path` lacks, creating it if needed; return them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8", errors="surrogateescape", newline="") as file:
        file.seek(0)
        text = file.read()
        missing = missing_ignores(text, wanted)
        file.write(with_lines(text, missing)[len(text) :])
    return missing


async def fix_gitignore(git: Git, worktree_dir: str = DEFAULT_WORKTREE_DIR) -> list[str]:
    """Append the missing standard lines to the .gitignore of the checkout at `git.repo`; return them."""
    return append_missing(git.repo / ".gitignore", required_ignores(worktree_dir))
