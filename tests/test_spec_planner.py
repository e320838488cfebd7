"""`yokeflow plan --spec`: a spec becomes a plan through the planner MCP tools over real HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from coordinator.context import OPERATOR
from coordinator.service import Coordinator
from launcher.runners.claude import load_persona
from launcher.spec_planner import PlanningFailed, SpecError, parse_spec, plan_spec_file
from tests.conftest import Database
from tests.test_mcp_support import http_client, ok, running_http_server

SPEC = """\
# Shop
A small web shop.

## Database
Tables and seed data.
- Create the schema [est 2] [files: schema.sql]
  Tables for users and orders.
- Seed data [after: Create the schema] [files: seed.sql]

## API
- Users endpoint [est 3] [files: api/users.py, api/routes.py] [after: Create the schema; Audit log]
- Orders endpoint [files: api/orders.py, api/routes.py] [after: Seed data] [priority 1]

## Audit
- Audit log [est 0.5]
"""


def _write(tmp_path: Path, text: str, name: str = "app_spec.md") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def _tasks(base: str, project: str) -> dict[str, dict[str, Any]]:
    async with http_client(f"{base}/mcp/observer") as observer:
        page = await ok(observer, "list_tasks", {"project": project, "limit": 500})
    return {task["title"]: task for task in page["tasks"]}


async def test_a_spec_becomes_epics_tasks_and_dependencies(database: Database, tmp_path: Path) -> None:
    with running_http_server(database.url) as base:
        planned = await plan_spec_file(
            _write(tmp_path, SPEC), runner="sim", database_url=database.url, server_url=base
        )
        assert (planned.project, planned.epics, planned.tasks) == ("Shop", 3, 5)
        assert "planned project 'Shop': 3 epics, 5 tasks" in planned.summary()
        tasks = await _tasks(base, "Shop")
        async with http_client(f"{base}/mcp/planner") as planner:
            status = await ok(planner, "project_status", {"project": "Shop"})
            stored_plan = await ok(planner, "get_execution_plan", {"project": "Shop"})
            schema = await ok(planner, "get_task", {"task_id": tasks["Create the schema"]["id"]})

    assert status["project"]["description"] == "A small web shop."
    assert [(e["name"], e["total_tasks"]) for e in status["epics"]] == [
        ("Database", 2),
        ("API", 2),
        ("Audit", 1),
    ]
    assert status["epics"][0]["description"] == "Tables and seed data."
    assert schema["task"]["description"] == "Tables for users and orders."
    assert schema["task"]["estimate"] == 2 and schema["task"]["predicted_files"] == ["schema.sql"]
    assert tasks["Orders endpoint"]["priority"] == 1

    def depends_on(title: str) -> set[int]:
        return set(tasks[title]["depends_on"])

    ids = {title: task["id"] for title, task in tasks.items()}
    assert depends_on("Seed data") == {ids["Create the schema"]}
    assert depends_on("Users endpoint") == {ids["Create the schema"], ids["Audit log"]}  # a later epic's task
    assert depends_on("Orders endpoint") == {ids["Seed data"]}
    assert depends_on("Create the schema") == depends_on("Audit log") == set()
    # the execution plan was built: every task in it, the routes.py overlap found
    assert sorted(t["id"] for t in stored_plan["tasks"]) == sorted(ids.values())
    assert any(set(c["files"]) == {"api/routes.py"} for c in stored_plan["conflicts"])
    assert stored_plan == planned.plan


async def test_a_bad_spec_names_its_line_and_creates_nothing(database: Database, tmp_path: Path) -> None:
    bad = SPEC.replace("[after: Seed data]", "[after: Seed]").replace("[est 0.5]", "[est none]")
    with pytest.raises(SpecError) as error:
        await plan_spec_file(_write(tmp_path, bad), runner="sim", database_url=database.url)
    assert str(error.value) == (
        "app_spec.md line 12: no task in this plan has the key or title 'Seed'; did you mean 'Seed data'?; "
        "line 15: [est none] is not a number greater than 0. "
        "Fix: name a task of the spec by its exact title in [after: …]"
    )
    coord = await Coordinator.open(database.url)
    try:
        async with coord.store.transaction(write=False) as tx:
            assert await tx.fetchval("SELECT COUNT(*) FROM projects") == 0
    finally:
        await coord.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("## E\n- A\n", "s.md line 1: the spec names no project"),
        ("# P\n- A\n", "s.md line 1: the spec has no epics; line 2: a task before any epic"),
        (
            "# P\n## E\n- A [after: B]\n- B [after: A]\n",
            "s.md line 4: this dependency closes the cycle 'B' -> 'A' -> 'B'",
        ),
        ("# P\n## E\n- A\n## F\n- A\n", "s.md line 5: the task title 'A' is used on line 3 too"),
        ("# P\n## E\n- A [colour: red]\n", "s.md line 3: unknown tag [colour: red]"),
        ("# P\n## E\n- A\n### Sub\n", "s.md line 4: '### Sub' is not a heading of this format"),
        ("# P\n## E\n", "s.md line 2: epic 'E' has no tasks"),
    ],
)
def test_spec_errors_name_the_line(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec, source="s.md")
    assert str(error.value).startswith(message), str(error.value)


def test_project_option_names_the_project() -> None:
    assert parse_spec("## E\n- A\n", project="Other").project == "Other"
    assert parse_spec(SPEC, project="Other").project == "Other"


async def test_a_tool_error_part_way_says_what_was_created(database: Database, tmp_path: Path) -> None:
    spec = SPEC.replace("## Audit", "## " + "A" * 201)  # too long a name for the server
    with running_http_server(database.url) as base:
        with pytest.raises(PlanningFailed) as error:
            await plan_spec_file(
                _write(tmp_path, spec), runner="sim", database_url=database.url, server_url=base
            )
        text = str(error.value)
        assert text.startswith("planning stopped at create_epic: name:"), text
        assert "created so far: project 'Shop' with 2 epics, 4 tasks and 3 dependencies" in text
        assert "plan again into a new project with --project NAME" in text
        with pytest.raises(PlanningFailed) as again:  # the project exists now
            await plan_spec_file(
                _write(tmp_path, SPEC), runner="sim", database_url=database.url, server_url=base
            )
        assert "created so far: nothing" in str(again.value)


async def test_yokeflow_plan_spec_command_serves_in_process(database: Database, tmp_path: Path) -> None:
    path = _write(tmp_path, SPEC)
    root = await asyncio.to_thread(lambda: Path(__file__).resolve().parent.parent)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "launcher.cli",
        "--database",
        database.url,
        "plan",
        "--spec",
        str(path),
        "--runner",
        "sim",
        "--project",
        "shop-2",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    assert out.decode().startswith("planned project 'shop-2': 3 epics, 5 tasks, "), out.decode()
    coord = await Coordinator.open(database.url)
    try:
        async with coord.store.transaction(write=False) as tx:
            assert await tx.fetchval("SELECT COUNT(*) FROM tasks") == 5
            assert await tx.fetchval("SELECT COUNT(*) FROM task_dependencies") == 4
        plan = await coord.plans.get(OPERATOR, project="shop-2")
        assert len(plan.tasks) == 5
    finally:
        await coord.close()


FREE_SPEC = "# Shop\nA small web shop with users and orders, a REST API and a database.\n"


async def test_the_claude_planner_plans_through_the_planner_tools(database: Database, tmp_path: Path) -> None:
    pytest.importorskip("claude_agent_sdk", reason="claude-agent-sdk is not installed")
    from tests.claude_double import Sessions, mcp_of, result

    async def act(prompt: str, options: Any) -> list[dict[str, Any]]:
        assert "Plan the project 'Shop'" in prompt and FREE_SPEC in prompt
        async with mcp_of(options) as planner:  # as the planner persona would, with its own token
            epic = await ok(planner, "create_epic", {"name": "Backend"})
            tasks = [
                {"key": "schema", "title": "Schema"},
                {"key": "api", "title": "API", "depends_on": ["schema"]},
            ]
            await ok(planner, "expand_epic", {"epic_id": epic["id"], "tasks": tasks})
        return result(cost=0.5, input_tokens=10_000, output_tokens=2_000)

    sessions = Sessions(act)
    with running_http_server(database.url) as base:
        planned = await plan_spec_file(
            _write(tmp_path, FREE_SPEC, "app_spec.txt"),
            runner="claude",
            database_url=database.url,
            server_url=base,
            cwd=tmp_path,
            transport=sessions,
        )
        async with http_client(f"{base}/mcp/planner") as operator:
            stored_plan = await ok(operator, "get_execution_plan", {"project": "Shop"})
            agents = await ok(operator, "list_tasks", {"project": "Shop"})
        async with http_client(f"{base}/mcp/observer") as observer:
            costs = await ok(observer, "get_costs", {"project": "Shop"})
            planners = (await ok(observer, "list_agents", {"project": "Shop"}))["agents"]

    assert (planned.project, planned.epics, planned.tasks) == ("Shop", 1, 2)
    assert len(stored_plan["tasks"]) == 2 == agents["count"]
    assert [(a["name"], a["role"]) for a in planners] == [("planner", "planner")]
    assert {line["key"]: line["cost_usd"] for line in costs["by_model"]} == {"opus": 0.5}
    (options,) = sessions.options
    persona, prompt = load_persona("planner")
    assert options.system_prompt == prompt and options.model == persona.model == "opus"
    assert options.cwd == tmp_path and options.max_budget_usd is None
    assert isinstance(options.mcp_servers, dict)
    server = cast(dict[str, Any], options.mcp_servers["yokeflow"])
    assert server["url"] == f"{base}/mcp/planner" and server["headers"]["Authorization"].startswith(
        "Bearer yf_"
    )
    assert (
        options.strict_mcp_config and options.setting_sources == [] and options.permission_mode == "dontAsk"
    )
    assert options.allowed_tools[:3] == ["Read", "Grep", "Glob"]
    for name in ("create_epic", "expand_epic", "add_dependency", "create_test", "build_execution_plan"):
        assert f"mcp__yokeflow__{name}" in options.allowed_tools
    assert "mcp__yokeflow__claim_task" not in options.allowed_tools


async def test_a_failed_planner_session_says_what_exists(database: Database, tmp_path: Path) -> None:
    pytest.importorskip("claude_agent_sdk", reason="claude-agent-sdk is not installed")
    from tests.claude_double import Sessions, mcp_of, result

    async def act(prompt: str, options: Any) -> list[dict[str, Any]]:
        async with mcp_of(options) as planner:
            await ok(planner, "create_epic", {"name": "Backend"})
        return result(
            cost=0.2, input_tokens=5, output_tokens=5, text="", is_error=True, terminal_reason="max_turns"
        )

    with running_http_server(database.url) as base:
        with pytest.raises(PlanningFailed) as error:
            await plan_spec_file(
                _write(tmp_path, FREE_SPEC, "app_spec.txt"),
                runner="claude",
                database_url=database.url,
                server_url=base,
                transport=Sessions(act),
            )
        async with http_client(f"{base}/mcp/observer") as observer:
            costs = await ok(observer, "get_costs", {"project": "Shop"})
    assert str(error.value).startswith(
        "the Claude session failed (max_turns): Claude Code returned an error result"
    ), str(error.value)
    assert "project 'Shop' has 1 epics and 0 tasks" in str(error.value)
    assert costs["total_usd"] == pytest.approx(0.2)  # the failed session's cost is kept


def test_plan_with_claude_and_no_credential_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("claude_agent_sdk", reason="claude-agent-sdk is not installed")
    path = _write(tmp_path, FREE_SPEC, "app_spec.txt")
    root = Path(__file__).resolve().parent.parent
    database = tmp_path / "c.db"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher.cli",
            "--database",
            f"sqlite:///{database}",
            "plan",
            "--spec",
            str(path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "CLAUDE_CONFIG_DIR": str(tmp_path)},
        timeout=120,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: cannot start Claude agents: no credential for Claude: none of "), (
        done.stderr
    )
    assert "ANTHROPIC_API_KEY" in done.stderr and done.stderr.count("\n") == 1
    assert not database.exists()  # checked before anything was started or written
