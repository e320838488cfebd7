"""Profiles, annotations, schemas and error texts of the tool surface."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.types import Tool

from coordinator.service import Coordinator
from tests.test_mcp_support import connect, make_project, refused
from tools.runtime import Runtime
from tools.server import HTTP_PATHS, PROFILES, build_server, profile_tools

PLAN_READS = {"validate_dependencies", "get_dependency_graph", "get_parallel_batches", "get_critical_path"}
PLANNER = PLAN_READS | {
    "create_project", "create_epic", "create_task", "expand_epic", "add_dependency", "remove_dependency",
    "create_test", "reopen_task", "cancel_task", "build_execution_plan", "get_execution_plan",
    "update_execution_plan",
}  # fmt: skip
WORKER = {
    "register_agent", "update_agent", "claim_task", "heartbeat", "complete_task", "fail_task", "release_task",
    "update_test_result", "record_cost", "record_learning", "get_expertise",
}  # fmt: skip
OBSERVER = {
    "project_status",
    "list_tasks",
    "get_task",
    "list_agents",
    "get_events",
    "get_costs",
    "list_merges",
    "ping",
    "get_cost_forecast",
    "get_model_stats",
}
YOKEFLOW = {
    "task_status", "get_next_task", "claim_next_task", "list_epics", "get_epic", "list_tasks", "get_task",
    "list_tests", "create_epic", "create_task", "create_test", "update_task_status", "start_task",
    "update_test_result", "expand_epic", "mark_project_complete", "get_session_history", "get_dependency_graph",
    "get_parallel_batches", "validate_dependencies",
}  # fmt: skip
EXPECTED = {
    "planner": PLANNER | {"project_status", "list_tasks", "get_task", "ping"},
    "worker": WORKER | {"get_task", "ping"},
    "observer": OBSERVER,
    "yokeflow": YOKEFLOW,
    "all": PLANNER | WORKER | OBSERVER | YOKEFLOW,
}
READ_ONLY = (
    OBSERVER
    | PLAN_READS
    | {
        "get_execution_plan",
        "task_status",
        "get_next_task",
        "list_epics",
        "get_epic",
        "list_tests",
        "get_session_history",
    }
)
DESTRUCTIVE = {
    "remove_dependency",
    "reopen_task",
    "cancel_task",
    "update_task_status",
    "update_execution_plan",
}


async def _tools(coord: Coordinator, profile: str) -> dict[str, Tool]:
    async with Client(build_server(profile, Runtime(coord))) as client:  # type: ignore[arg-type]
        return {tool.name: tool for tool in (await client.list_tools()).tools}


@pytest.mark.parametrize("profile", PROFILES)
async def test_each_profile_exposes_exactly_its_tools(coord: Coordinator, profile: str) -> None:
    tools = await _tools(coord, profile)
    assert set(tools) == EXPECTED[profile]
    assert [s.name for s in profile_tools(profile)] == list(tools)  # type: ignore[arg-type]


async def test_http_paths_cover_every_profile() -> None:
    assert sorted(HTTP_PATHS.values()) == sorted(PROFILES)
    assert HTTP_PATHS["/mcp"] == "all"


async def test_annotations_and_schemas(coord: Coordinator) -> None:
    tools = await _tools(coord, "all")
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None, name
        assert hints.open_world_hint is False, name
        assert hints.read_only_hint is (name in READ_ONLY), name
        assert hints.destructive_hint is (name in DESTRUCTIVE), name
        if name in READ_ONLY:
            assert hints.idempotent_hint is True, name
        assert hints.title and tool.title == hints.title, name
        assert tool.description and len(tool.description) > 20, name
        assert tool.output_schema is not None and tool.output_schema.get("type") == "object", name
        for argument, schema in tool.input_schema.get("properties", {}).items():
            assert "description" in schema or "$ref" in schema, f"{name}.{argument} has no description"
    assert tools["claim_task"].annotations.idempotent_hint is False  # type: ignore[union-attr]
    assert tools["record_cost"].annotations.idempotent_hint is False  # type: ignore[union-attr]
    assert tools["build_execution_plan"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert tools["update_execution_plan"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert tools["heartbeat"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert tools["claim_task"].output_schema["title"] == "ClaimResult"  # type: ignore[index]


async def test_handshake_clients_work_too(coord: Coordinator) -> None:
    async with Client(build_server("observer", Runtime(coord)), mode="legacy") as client:
        result = await client.call_tool("ping", {})
        assert not result.is_error and result.structured_content["ok"] is True


async def test_error_texts_name_the_argument_the_problem_and_the_fix(coord: Coordinator) -> None:
    async with connect(coord) as client:
        await make_project(client)
        text = await refused(
            client, "get_task", {"task_id": 42}, "task_id: task 42 does not exist in this project"
        )
        assert (
            text.startswith("Error executing tool get_task: ") and "Fix: list tasks with list_tasks" in text
        )
        text = await refused(
            client, "create_task", {"title": "x" * 501}, "title:", "at most 500 characters", "Fix:"
        )
        assert "x" * 100 not in text, "the echoed input is shortened"
        await refused(client, "get_task", {}, "task_id: Field required", "Fix: correct task_id")
        await refused(client, "no_such_tool", {}, "Unknown tool")
