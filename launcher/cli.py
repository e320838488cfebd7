"""The `yokeflow` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from coordinator import __version__
from coordinator.config import Config, load_config
from coordinator.context import OPERATOR
from coordinator.errors import YokeflowError
from coordinator.queries import get_tasks_by_id
from coordinator.service import Coordinator
from coordinator.storage import Store, StoreOptions, migrate, open_store, schema_status
from launcher.demo import add_demo_command
from launcher.files import read_text_file
from launcher.init_command import add_init_command
from launcher.launch import add_launch_command
from launcher.repo_commands import add_repo_command
from launcher.serve import add_serve_command


def _store_options(config: Config) -> StoreOptions:
    db = config.database
    return StoreOptions(
        sqlite_synchronous=db.sqlite_synchronous,
        sqlite_busy_timeout_ms=db.sqlite_busy_timeout_ms,
        pool_min_size=db.pool_min_size,
        pool_max_size=min(db.pool_max_size, 4),
        connect_timeout_seconds=db.connect_timeout_seconds,
    )


def _config_and_url(args: argparse.Namespace) -> tuple[Config, str]:
    root = Path(args.root).resolve()
    config = load_config(root, path=Path(args.config) if args.config else None)
    url = args.database or config.database_url(root)
    return config, url


async def _open(args: argparse.Namespace, *, create: bool, prepare: bool) -> Store:
    config, url = _config_and_url(args)
    return await open_store(url, options=_store_options(config), create=create, prepare=prepare)


async def cmd_db_migrate(args: argparse.Namespace) -> int:
    store = await _open(args, create=True, prepare=False)
    try:
        applied = await migrate(store)
        status = await schema_status(store)
    finally:
        await store.close()
    if applied:
        print(
            f"{store.describe()}: applied migrations {', '.join(map(str, applied))}; "
            f"schema is at version {status.current}"
        )
    else:
        print(f"{store.describe()}: schema already at version {status.current}; nothing to do")
    return 0


async def cmd_db_check(args: argparse.Namespace) -> int:
    store = await _open(args, create=False, prepare=False)
    try:
        status = await schema_status(store)
        problems = await store.integrity_problems() if status.current else []
    finally:
        await store.close()
    print(f"database:  {store.describe()}")
    print(f"schema:    version {status.current} (this yokeflow knows {status.latest})")
    if status.current > status.latest:
        problems.append(
            f"the schema is newer than this yokeflow (version {status.current} > {status.latest}); "
            "upgrade yokeflow-coordinator"
        )
    if status.pending:
        problems.append(
            f"migrations {', '.join(map(str, status.pending))} are pending; run `yokeflow db migrate`"
        )
    if status.checksum_mismatches:
        problems.append(f"applied migrations {status.checksum_mismatches} differ from the shipped files")
    for problem in problems:
        print(f"problem:   {problem}")
    print("status:    ok" if not problems else f"status:    {len(problems)} problem(s)")
    return 0 if not problems else 1


async def cmd_status(args: argparse.Namespace) -> int:
    store = await _open(args, create=False, prepare=False)
    try:
        async with store.transaction(write=False) as tx:
            projects = await tx.fetch("SELECT id, name, status FROM projects ORDER BY id")
            counts = await tx.fetch(
                "SELECT project_id, status, COUNT(*) AS n FROM tasks GROUP BY project_id, status"
            )
            agents = await tx.fetch(
                "SELECT project_id, COUNT(*) AS n FROM agents WHERE status = 'active' GROUP BY project_id"
            )
    finally:
        await store.close()
    if not projects:
        print("no projects yet")
        return 0
    active = {r["project_id"]: r["n"] for r in agents}
    for project in projects:
        if args.project and args.project not in (project["name"], str(project["id"])):
            continue
        by_status = {r["status"]: r["n"] for r in counts if r["project_id"] == project["id"]}
        total = sum(by_status.values())
        summary = ", ".join(f"{status} {n}" for status, n in sorted(by_status.items())) or "no tasks"
        print(
            f"{project['name']} (#{project['id']}, {project['status']}): {total} tasks: {summary}; "
            f"{active.get(project['id'], 0)} active agents"
        )
    return 0


async def _with_coordinator(args: argparse.Namespace, use: Callable[[Coordinator], Awaitable[int]]) -> int:
    config, url = _config_and_url(args)
    coord = await Coordinator.open(url, config)
    try:
        return await use(coord)
    finally:
        await coord.close()


async def cmd_plan_import(args: argparse.Namespace) -> int:
    text = await read_text_file(Path(args.file), "a JSON or YAML plan file")

    async def run(coord: Coordinator) -> int:
        imported = await coord.plans.import_plan(OPERATOR, text, project=args.project)
        plan = imported.plan
        print(
            f"imported into project {imported.project.name!r}: {len(imported.epic_ids)} epics, "
            f"{len(imported.task_ids)} tasks, {len(plan.batches)} batches, {len(plan.conflicts)} file conflicts"
        )
        print(
            f"critical path {plan.critical_path.length:g} units; with {plan.makespan.agents} agents about "
            f"{plan.makespan.estimate:g} (serial {plan.makespan.serial:g}, lower bound {plan.makespan.lower_bound:g})"
        )
        for suggestion in imported.suggested_dependencies:
            print(
                f"suggestion (not applied): {suggestion.after.path} may depend on {suggestion.before.path} "
                f"({suggestion.phrase!r})"
            )
        return 0

    return await _with_coordinator(args, run)


async def cmd_plan_show(args: argparse.Namespace) -> int:
    async def run(coord: Coordinator) -> int:
        view = await coord.plans.graph_view(OPERATOR, project=args.project, format=args.format)
        print(view if isinstance(view, str) else json.dumps(view, indent=2))
        return 0

    return await _with_coordinator(args, run)


async def cmd_plan_build(args: argparse.Namespace) -> int:
    async def run(coord: Coordinator) -> int:
        plan = await coord.plans.build(OPERATOR, project=args.project)
        print(
            json.dumps(plan.model_dump(mode="json"), indent=2)
            if args.json
            else f"{len(plan.batches)} batches, {len(plan.worktrees)} worktrees, {len(plan.conflicts)} file conflicts; "
            f"makespan about {plan.makespan.estimate:g} with {plan.makespan.agents} agents "
            f"(serial {plan.makespan.serial:g}, lower bound {plan.makespan.lower_bound:g})"
        )
        return 0

    return await _with_coordinator(args, run)


async def cmd_plan_critical_path(args: argparse.Namespace) -> int:
    async def run(coord: Coordinator) -> int:
        path = await coord.plans.critical_path(OPERATOR, project=args.project)
        async with coord.store.transaction(write=False) as tx:
            titles = {t.id: t.title for t in await get_tasks_by_id(tx, path.tasks)}
        print(f"critical path: {path.length:g} units over {len(path.tasks)} tasks")
        for task_id in path.tasks:
            print(f"  {task_id:>6}  {titles.get(task_id, '')}")
        return 0

    return await _with_coordinator(args, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yokeflow",
        description="YokeFlow Coordinator: an MCP coordination server for teams of AI coding agents.",
    )
    parser.add_argument("--version", action="version", version=f"yokeflow {__version__}")
    parser.add_argument("--root", default=".", help="the repository root holding .yokeflow.yaml (default: .)")
    parser.add_argument("--config", help="a config file other than <root>/.yokeflow.yaml")
    parser.add_argument("--database", help="database URL, overriding the config and YOKEFLOW_DATABASE_URL")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db = commands.add_parser("db", help="create, upgrade or check the database")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("migrate", help="create the database or apply pending migrations").set_defaults(
        handler=cmd_db_migrate
    )
    db_commands.add_parser(
        "check", help="report the schema version and integrity; changes nothing"
    ).set_defaults(handler=cmd_db_check)

    status = commands.add_parser("status", help="tasks per state and active agents, per project")
    status.add_argument("--project", help="only this project (name or id)")
    status.set_defaults(handler=cmd_status)

    _add_plan_commands(commands)
    add_serve_command(commands)
    add_launch_command(commands)
    add_repo_command(commands)
    add_init_command(commands)
    add_demo_command(commands)
    return parser


def _add_plan_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from launcher.spec_planner import add_spec_options

    plan = commands.add_parser(
        "plan", help="plan a spec (--spec FILE), or import, show and analyse a project's plan"
    )
    add_spec_options(plan)
    actions = plan.add_subparsers(dest="plan_command", metavar="ACTION")
    imported = actions.add_parser(
        "import", help="create the epics, tasks and dependencies of a JSON/YAML plan file"
    )
    imported.add_argument("file", help="the plan file")
    show = actions.add_parser("show", help="the dependency graph")
    show.add_argument("--format", choices=["ascii", "mermaid", "json"], default="ascii")
    build = actions.add_parser(
        "build", help="rebuild the execution plan (batches, worktrees, conflicts, makespan)"
    )
    build.add_argument("--json", action="store_true", help="print the whole plan as JSON")
    critical = actions.add_parser("critical-path", help="the longest chain of work, by estimates")
    for sub, handler in (
        (imported, cmd_plan_import),
        (show, cmd_plan_show),
        (build, cmd_plan_build),
        (critical, cmd_plan_critical_path),
    ):
        sub.add_argument("--project", help="project name or id (default: the only one, or server.project)")
        sub.set_defaults(handler=handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.handler(args))
    except YokeflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
