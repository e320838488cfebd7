"""Repository hygiene on real repositories: committed junk is found, .gitignore gains what it lacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.gitcli import Git
from coordinator.hygiene import (
    STANDARD_IGNORES,
    fix_gitignore,
    missing_ignores,
    required_ignores,
    validate_repository,
)
from tests.gitrepo import git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def commit_files(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "--force", "--", *files)
    git(repo, "commit", "-q", "-m", "add files")


def write_full_gitignore(repo: Path) -> None:
    (repo / ".gitignore").write_text("\n".join(required_ignores()) + "\n")


async def test_a_clean_repository_passes(repo: Path) -> None:
    write_full_gitignore(repo)
    commit_files(repo, {"src/app.py": "", ".env.example": "KEY=\n", "docs/build.md": ""})
    report = await validate_repository(Git(repo))
    assert report.ok, report.problems


async def test_committed_generated_folders_secrets_and_system_files_are_found(repo: Path) -> None:
    write_full_gitignore(repo)
    commit_files(
        repo,
        {
            ".venv/pyvenv.cfg": "home = /usr\n",
            ".venv/lib/site.py": "",
            "node_modules/left-pad/index.js": "",
            "web/node_modules/react/index.js": "",
            "build/out.o": "",
            "src/pkg.egg-info/PKG-INFO": "",
            "src/__pycache__/app.cpython-311.pyc": "",
            "target/debug/app": "",
            ".env": "SECRET=1\n",
            "config/.env.local": "SECRET=2\n",
            ".env.example": "SECRET=\n",
            "assets/.DS_Store": "",
            ".worktrees/agent-1/file": "",
        },
    )
    report = await validate_repository(Git(repo))
    found = {problem.path: problem for problem in report.problems}
    assert set(found) == {
        ".venv",
        "node_modules",
        "web/node_modules",
        "build",
        "src/pkg.egg-info",
        "src/__pycache__",
        "target",
        ".env",
        "config/.env.local",
        "assets/.DS_Store",
        ".worktrees",
    }
    assert found[".venv"].kind == "virtual environment"
    assert found["web/node_modules"].fix.startswith("git rm -r --cached -- web/node_modules")
    assert found["build"].kind == "build output"
    assert "secrets" in found[".env"].message
    assert "change every secret" in found["config/.env.local"].fix
    assert found["assets/.DS_Store"].fix.startswith("git rm --cached -- assets/.DS_Store")


async def test_the_suggested_fix_really_fixes_it(repo: Path) -> None:
    write_full_gitignore(repo)
    commit_files(repo, {"node_modules/a/index.js": "", "src/app.py": ""})
    [problem] = (await validate_repository(Git(repo))).problems
    command = problem.fix.split(" && ")[0].split()
    git(repo, *command[1:])
    git(repo, "commit", "-q", "-m", "untrack")
    assert (await validate_repository(Git(repo))).ok
    assert (repo / "node_modules/a/index.js").exists()  # the files stay on disk


async def test_missing_gitignore_entries_are_reported(repo: Path) -> None:
    report = await validate_repository(Git(repo))
    [problem] = report.problems
    assert problem.path == ".gitignore"
    assert problem.message.startswith("there is no .gitignore")
    assert "node_modules/" in problem.message
    (repo / ".gitignore").write_text("\n".join(STANDARD_IGNORES) + "\n")
    [problem] = (await validate_repository(Git(repo))).problems
    assert problem.message == ".gitignore lacks /.worktrees/"


async def test_fix_gitignore_keeps_existing_lines_and_is_idempotent(repo: Path) -> None:
    original = "# mine\n*.log\nnode_modules\n/build/\n**/dist\n.venv\n"
    (repo / ".gitignore").write_text(original)
    added = await fix_gitignore(Git(repo))
    assert "node_modules/" not in added
    assert "build/" not in added
    assert "dist/" not in added
    assert ".venv/" not in added
    assert added[-1] == "/.worktrees/"
    text = (repo / ".gitignore").read_text()
    assert text == original + "".join(line + "\n" for line in added)
    assert await fix_gitignore(Git(repo)) == []
    assert (repo / ".gitignore").read_text() == text


async def test_fix_gitignore_creates_the_file_and_keeps_windows_line_endings(tmp_path: Path) -> None:
    first = make_repo(tmp_path / "first")
    assert await fix_gitignore(Git(first), worktree_dir="agents") == required_ignores("agents")
    assert (first / ".gitignore").read_text().splitlines() == required_ignores("agents")
    second = make_repo(tmp_path / "second")
    (second / ".gitignore").write_bytes(b"*.log\r\n*.tmp")  # no final newline
    await fix_gitignore(Git(second))
    raw = (second / ".gitignore").read_bytes()
    assert raw.startswith(b"*.log\r\n*.tmp\r\n.venv/\r\n")
    assert raw.count(b"\n") == raw.count(b"\r\n")


async def test_the_rules_mean_what_git_says(repo: Path) -> None:
    await fix_gitignore(Git(repo))
    ignored = ["node_modules/x.js", "a/b/node_modules/y.js", ".env", "app/.env.local", ".worktrees/agent-1/f"]
    kept = [".env.example", "src/.worktrees/f", "src/app.py"]
    for path in ignored:
        git(repo, "check-ignore", "--quiet", "--no-index", path)
    for path in kept:
        with pytest.raises(AssertionError):
            git(repo, "check-ignore", "--quiet", "--no-index", path)


def test_a_negation_must_come_after_the_pattern_it_excepts() -> None:
    wanted = list(STANDARD_IGNORES)
    assert "!.env.example" in missing_ignores("!.env.example\n.env.*\n", wanted)
    assert "!.env.example" not in missing_ignores(".env.*\n!.env.example\n", wanted)
    missing = missing_ignores("", wanted)
    assert missing.index(".env.*") + 1 == missing.index("!.env.example")
