"""`yokeflow repo check|fix`: repository hygiene and the agents' worktrees, from the terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from coordinator.config import load_config
from coordinator.gitcli import Git, repository_root
from coordinator.hygiene import fix_gitignore, validate_repository
from coordinator.worktrees import WorktreeManager


def add_repo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `repo check` and `repo fix` to the `yokeflow` command line."""
    repo = commands.add_parser("repo", help="check the git repository agents work in, or fix its .gitignore")
    actions = repo.add_subparsers(dest="repo_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="committed virtualenvs, node_modules, build output or .env files; the worktrees"
    )
    fix = actions.add_parser("fix", help="add the missing standard entries to .gitignore (does not commit)")
    for sub, handler in ((check, cmd_repo_check), (fix, cmd_repo_fix)):
        sub.add_argument("--repo", metavar="PATH", help="the repository (default: --root)")
        sub.set_defaults(handler=handler)


async def _open(args: argparse.Namespace) -> tuple[Git, str]:
    root = await repository_root(Git(Path(args.repo or args.root)))
    return Git(root), load_config(Path(args.root)).parallel.worktree_dir


async def cmd_repo_check(args: argparse.Namespace) -> int:
    git, worktree_dir = await _open(args)
    report = await validate_repository(git, worktree_dir=worktree_dir)
    for problem in report.problems:
        print(f"{problem.path}: {problem.message}\n  fix: {problem.fix}")
    worktrees = [
        w for w in await WorktreeManager(git, worktree_dir=worktree_dir).list() if w.path != git.repo
    ]
    print(f"{len(worktrees)} agent worktree(s) under {worktree_dir}/")
    for w in worktrees:
        print(
            f"  {w.path.name}: {w.branch or 'detached at ' + (w.head or '?')[:12]}{' (locked)' if w.locked else ''}"
        )
    print(
        "repository is clean"
        if report.ok
        else f"{len(report.problems)} problem(s); `yokeflow repo fix` adds the missing .gitignore entries"
    )
    return 0 if report.ok else 1


async def cmd_repo_fix(args: argparse.Namespace) -> int:
    git, worktree_dir = await _open(args)
    added = await fix_gitignore(git, worktree_dir)
    if added:
        print(f"added to {git.repo / '.gitignore'}: {', '.join(added)} (commit it when you like)")
    else:
        print(".gitignore already has the standard entries")
    return 0
