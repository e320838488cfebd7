"""The `yokeflow` command line, run as a real process against real databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Database


def yokeflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "launcher.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        timeout=120,
    )


async def test_migrate_then_check_on_each_backend(database: Database, tmp_path: Path) -> None:
    before = yokeflow("--database", database.url, "db", "check", cwd=tmp_path)
    assert before.returncode == 1
    migrated = yokeflow("--database", database.url, "db", "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied migrations 1" in migrated.stdout
    again = yokeflow("--database", database.url, "db", "migrate", cwd=tmp_path)
    assert "nothing to do" in again.stdout
    check = yokeflow("--database", database.url, "db", "check", cwd=tmp_path)
    assert check.returncode == 0 and "status:    ok" in check.stdout, check.stdout + check.stderr
    assert "no projects yet" in yokeflow("--database", database.url, "status", cwd=tmp_path).stdout


def test_default_database_lives_in_the_repo_and_check_creates_nothing(tmp_path: Path) -> None:
    check = yokeflow("db", "check", cwd=tmp_path)
    assert check.returncode == 1 and "yokeflow db migrate" in check.stderr
    assert not (tmp_path / ".yokeflow").exists()
    assert yokeflow("db", "migrate", cwd=tmp_path).returncode == 0
    assert (tmp_path / ".yokeflow" / "coordinator.db").is_file()


def test_bad_input_gives_one_clear_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    unknown = yokeflow("--database", "mysql://localhost/x", "db", "migrate", cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown database scheme 'mysql'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    (tmp_path / ".yokeflow.yaml").write_text("leases:\n  ttl_seconds: 2\n")
    bad_config = yokeflow("db", "migrate", cwd=tmp_path)
    assert bad_config.returncode == 1 and "leases.ttl_seconds = 2" in bad_config.stderr
    assert not (tmp_path / ".yokeflow").exists()
    (tmp_path / ".yokeflow.yaml").write_text("leases: [unclosed\n")
    assert "line" in yokeflow("status", cwd=tmp_path).stderr


def test_plan_import_show_and_critical_path(tmp_path: Path) -> None:
    plan = Path(__file__).parent / "data" / "shop_plan.yaml"
    imported = yokeflow("plan", "import", str(plan), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "12 tasks" in imported.stdout and "suggestion (not applied)" in imported.stdout
    mermaid = yokeflow("plan", "show", "--format", "mermaid", cwd=tmp_path)
    assert mermaid.returncode == 0 and mermaid.stdout.startswith(("flowchart", "graph"))
    assert "Create the schema" in yokeflow("plan", "show", cwd=tmp_path).stdout
    critical = yokeflow("plan", "critical-path", cwd=tmp_path)
    assert critical.returncode == 0 and "Create the schema" in critical.stdout
    assert "batches" in yokeflow("plan", "build", cwd=tmp_path).stdout
    status = yokeflow("status", cwd=tmp_path)
    assert "shop" in status.stdout and "pending 12" in status.stdout


def test_plan_import_of_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    missing = yokeflow("plan", "import", "nowhere.yaml", cwd=tmp_path)
    assert missing.returncode == 1 and "nowhere.yaml" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("project: p\nepics:\n  - name: a\n    tasks: [ {title: x\n")
    result = yokeflow("plan", "import", str(broken), cwd=tmp_path)
    assert result.returncode == 1 and "line" in result.stderr and "Traceback" not in result.stderr
    assert "no projects yet" in yokeflow("status", cwd=tmp_path).stdout


def test_repo_check_reports_committed_clutter_and_fix_adds_the_ignores(tmp_path: Path) -> None:
    from tests.gitrepo import git, make_repo

    repo = make_repo(tmp_path / "app")
    (repo / "node_modules").mkdir()
    (repo / "node_modules" / "left-pad.js").write_text("x")
    (repo / ".env").write_text("SECRET=1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "oops")
    check = yokeflow("repo", "check", cwd=repo)
    assert check.returncode == 1
    assert "git rm -r --cached -- node_modules" in check.stdout and ".env is committed" in check.stdout
    fixed = yokeflow("repo", "fix", cwd=repo)
    assert fixed.returncode == 0 and "node_modules/" in (repo / ".gitignore").read_text()
    assert "already has" in yokeflow("repo", "fix", cwd=repo).stdout  # idempotent
    missing = yokeflow("repo", "check", "--repo", str(tmp_path / "nowhere"), cwd=repo)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    plain = tmp_path / "plain"
    plain.mkdir()
    not_git = yokeflow("repo", "check", cwd=plain)
    assert not_git.returncode == 1 and "not inside a git repository" in not_git.stderr
