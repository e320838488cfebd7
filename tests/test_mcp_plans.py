"""The plan and cost tools through an in-process `mcp.Client`, on SQLite and PostgreSQL.

The dependency-graph tools also in the shapes YokeFlow's task manager used (no project, `epic_id`).
"""

from __future__ import annotations

from typing import Any

from mcp import Client

from coordinator.service import Coordinator
from tests.test_mcp_support import connect, make_project, ok, refused, worker_token


async def _two_epics(client: Client) -> dict[str, Any]:
    """Backend: schema → api; Frontend: pages (needs api) → polish. Returns the ids by key and the epics."""
    await make_project(client)
    backend = await ok(client, "create_epic", {"name": "Backend"})
    frontend = await ok(client, "create_epic", {"name": "Frontend"})
    api = await ok(
        client,
        "expand_epic",
        {
            "epic_id": backend["id"],
            "tasks": [
                {"key": "schema", "title": "Schema", "estimate": 2, "predicted_files": ["db/schema.sql"]},
                {"key": "api", "title": "API", "depends_on": ["schema"], "predicted_files": ["api.py"]},
            ],
        },
    )
    ui = await ok(
        client,
        "expand_epic",
        {
            "epic_id": frontend["id"],
            "tasks": [
                {"key": "pages", "title": "Pages", "depends_on": ["api"]},
                {"key": "polish", "title": "Polish", "depends_on": ["pages"], "dependency_type": "soft"},
                {"key": "icons", "title": "Icons"},
            ],
        },
    )
    return {"backend": backend["id"], "frontend": frontend["id"], **api["keys"], **ui["keys"]}


# ------------------------------------------------------------------------------ the graph


async def test_dependency_graph_views(coord: Coordinator) -> None:
    async with connect(coord, "planner") as client:
        ids = await _two_epics(client)
        chain = [ids["schema"], ids["api"], ids["pages"], ids["polish"]]

        check = await ok(client, "validate_dependencies", {})
        assert check["ok"] is True and check["issues"] == [] and check["epic_id"] is None

        graph = await ok(client, "get_dependency_graph", {})
        assert graph["format"] == "json" and graph["text"] is None and graph["external_edges"] == []
        data = graph["graph"]
        assert {n["id"] for n in data["nodes"]} == {
            ids[k] for k in ("schema", "api", "pages", "polish", "icons")
        }
        assert data["batches"] == [
            [ids["schema"], ids["icons"]],
            [ids["api"]],
            [ids["pages"]],
            [ids["polish"]],
        ]
        assert data["critical_path"] == {"tasks": chain, "length": 5.0}
        kinds = {(e["before"], e["after"]): e["kind"] for e in data["edges"]}
        assert kinds[ids["pages"], ids["polish"]] == "soft"
        by_id = {n["id"]: n for n in data["nodes"]}
        assert by_id[ids["api"]]["batch"] == 2 and by_id[ids["api"]]["on_critical_path"] is True
        assert by_id[ids["icons"]]["title"] == "Icons" and by_id[ids["icons"]]["status"] == "pending"

        mermaid = await ok(client, "get_dependency_graph", {"format": "mermaid"})
        assert mermaid["graph"] is None and mermaid["text"].startswith("flowchart TD")
        assert f"t{ids['pages']} -.-> t{ids['polish']}" in mermaid["text"]
        ascii_view = await ok(client, "get_dependency_graph", {"format": "ascii"})
        assert (
            ascii_view["text"].startswith("Batch 1 (2 tasks)")
            and "critical path (length 5)" in ascii_view["text"]
        )

        assert (await ok(client, "get_parallel_batches", {}))["batches"] == data["batches"]
        assert await ok(client, "get_critical_path", {}) == {"tasks": chain, "length": 5.0}

        await refused(
            client, "get_dependency_graph", {"format": "svg"}, "format:", "'json', 'mermaid' or 'ascii'"
        )
        await refused(
            client, "get_parallel_batches", {"project": "nope"}, "project: project 'nope' does not exist"
        )
        await refused(client, "get_critical_path", {"epic_id": 0}, "epic_id:", "greater than or equal to 1")


async def test_an_epic_filter_gives_the_epics_own_subgraph(coord: Coordinator) -> None:
    async with connect(coord, "planner") as client:
        ids = await _two_epics(client)
        frontend = ids["frontend"]
        view = await ok(client, "get_dependency_graph", {"epic_id": frontend})
        data = view["graph"]
        assert view["epic_id"] == frontend
        assert {n["id"] for n in data["nodes"]} == {ids["pages"], ids["polish"], ids["icons"]}
        assert data["batches"] == [[ids["pages"], ids["icons"]], [ids["polish"]]]
        assert [(e["before"], e["after"]) for e in view["external_edges"]] == [(ids["api"], ids["pages"])]
        assert (await ok(client, "get_parallel_batches", {"epic_id": frontend}))["batches"] == data["batches"]
        assert (await ok(client, "get_critical_path", {"epic_id": ids["backend"]}))["tasks"] == [
            ids["schema"],
            ids["api"],
        ]
        text = (await ok(client, "get_dependency_graph", {"epic_id": frontend, "format": "ascii"}))["text"]
        assert "Pages" in text and "Schema" not in text
        assert (await ok(client, "validate_dependencies", {"epic_id": frontend}))["ok"] is True

        await refused(client, "get_dependency_graph", {"epic_id": 999}, "epic_id: epic 999 does not exist")
    async with connect(coord) as operator:
        await make_project(operator, "other")
        await refused(
            operator,
            "get_parallel_batches",
            {"epic_id": frontend, "project": "other"},
            f"epic_id: epic {frontend} belongs to project 1, not to project 'other'",
            "Fix:",
        )
        named = await ok(operator, "get_parallel_batches", {"epic_id": frontend, "project": "shop"})
        assert named["batches"] == data["batches"]


async def test_yokeflow_shapes_of_the_graph_tools(coord: Coordinator) -> None:
    """What an old prompt sends: no project (the server's default), ids as strings, an epic filter."""
    async with connect(coord) as operator:
        ids = await _two_epics(operator)
    async with connect(coord, "yokeflow") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"get_dependency_graph", "get_parallel_batches", "validate_dependencies"} <= tools
        assert "get_critical_path" not in tools and "update_execution_plan" not in tools
        assert (await ok(client, "get_dependency_graph", {"format": "mermaid"}))["text"].startswith(
            "flowchart"
        )
        assert len((await ok(client, "get_parallel_batches", {}))["batches"]) == 4
        epic = str(ids["frontend"])
        assert (await ok(client, "get_parallel_batches", {"epic_id": epic}))["epic_id"] == ids["frontend"]
        assert (await ok(client, "validate_dependencies", {"epic_id": epic}))["ok"] is True
        graph = await ok(client, "get_dependency_graph", {"epic_id": epic, "format": "json"})
        assert len(graph["graph"]["nodes"]) == 3


async def test_validate_dependencies_reports_broken_stored_edges(coord: Coordinator) -> None:
    async with connect(coord) as client:
        ids = await _two_epics(client)
        # Edges the tools refuse, written behind their back: a cycle schema → api → schema.
        async with coord.store.transaction() as tx:
            await tx.execute(
                "INSERT INTO task_dependencies (task_id, depends_on_task_id, kind, created_at) VALUES ($1, $2, 'hard', 0)",
                ids["schema"],
                ids["api"],
            )
        check = await ok(client, "validate_dependencies", {})
        assert (
            check["ok"] is False
            and check["cycles"]
            and set(check["cycles"][0]) == {ids["schema"], ids["api"]}
        )
        assert check["issues"][0]["problem"] == "cycle" and "1 problem found" in check["message"]
        assert (await ok(client, "validate_dependencies", {"epic_id": ids["backend"]}))["ok"] is False
        assert (await ok(client, "validate_dependencies", {"epic_id": ids["frontend"]}))["ok"] is True
        for name in ("get_dependency_graph", "get_parallel_batches", "get_critical_path"):
            await refused(
                client, name, {}, "the stored dependencies hold the cycle", "Fix: list the broken edges"
            )


# ------------------------------------------------------------------------- the execution plan


async def test_build_get_and_adjust_the_execution_plan(coord: Coordinator) -> None:
    async with connect(coord, "planner") as client:
        ids = await _two_epics(client)
        await refused(client, "get_execution_plan", {}, "has no execution plan yet", "Fix: build it")
        built = await ok(client, "build_execution_plan", {})
        assert built["batches"][0]["tasks"] == [ids["schema"], ids["icons"]]
        again = await ok(client, "build_execution_plan", {})
        assert again["batches"] == built["batches"] and again["tasks"] == built["tasks"]
        assert (await ok(client, "get_execution_plan", {}))["batches"] == built["batches"]

        patched = await ok(
            client,
            "update_execution_plan",
            {
                "worktrees": {str(ids["icons"]): "ui-icons"},
                "sequential": [[ids["schema"], ids["icons"]]],
                "pins": {str(ids["icons"]): 3},
            },
        )
        planned = {t["id"]: t for t in patched["tasks"]}
        assert planned[ids["icons"]]["worktree"] == "ui-icons" and planned[ids["icons"]]["batch"] == 3
        assert patched["adjustments"]["pins"] == {str(ids["icons"]): 3}
        icons = await ok(client, "get_task", {"task_id": ids["icons"]})
        assert [d["task_id"] for d in icons["dependencies"]] == [ids["schema"]], "sequential is stored"
        repeated = await ok(client, "update_execution_plan", {"pins": {str(ids["icons"]): 3}})
        assert repeated["tasks"] == patched["tasks"], "the same patch again changes nothing more"
        rebuilt = await ok(client, "build_execution_plan", {})
        assert rebuilt["adjustments"] == patched["adjustments"], "a rebuild keeps the adjustments"
        unpinned = await ok(client, "update_execution_plan", {"pins": {str(ids["icons"]): None}})
        assert unpinned["adjustments"]["pins"] == {}
        assert {t["id"]: t["batch"] for t in unpinned["tasks"]}[ids["icons"]] == 2


async def test_a_bad_patch_changes_nothing(coord: Coordinator) -> None:
    async with connect(coord, "planner") as client:
        ids = await _two_epics(client)
        before = await ok(client, "build_execution_plan", {})
        graph_before = await ok(client, "get_dependency_graph", {})
        cycle = [ids["schema"], ids["api"], ids["pages"], ids["schema"]]
        text = await refused(
            client,
            "update_execution_plan",
            {
                "worktrees": {str(ids["icons"]): "x"},
                "sequential": [[ids["icons"], ids["pages"]], [ids["pages"], ids["schema"]]],
            },
            "sequential[1]: this dependency would close the cycle " + " -> ".join(map(str, cycle)),
            "Fix:",
        )
        assert "cycle" in text
        await refused(
            client,
            "update_execution_plan",
            {"pins": {"999": 1}},
            "pins[999]: task 999 does not exist",
            "Fix:",
        )
        await refused(
            client,
            "update_execution_plan",
            {"sequential": [[ids["api"], 999]]},
            "sequential[0]: task 999 does not exist",
        )
        await refused(
            client,
            "update_execution_plan",
            {"sequential": [[ids["api"], ids["api"]]]},
            "sequential[0]:",
            "itself",
        )
        await refused(
            client,
            "update_execution_plan",
            {"pins": {str(ids["api"]): 0}},
            "pins.",
            "greater than or equal to 1",
        )
        await refused(
            client,
            "update_execution_plan",
            {"pins": {str(ids["pages"]): 1}},
            f"pins[{ids['pages']}]:",
            "batch 3",
        )
        await refused(
            client,
            "update_execution_plan",
            {"worktrees": {str(ids["api"]): "no spaces"}},
            f"worktrees[{ids['api']}]:",
        )
        await refused(client, "update_execution_plan", {"sequential": [[1, 2, 3]]}, "sequential")
        await refused(client, "update_execution_plan", {}, "the patch is empty", "Fix: to rebuild")

        assert await ok(client, "get_execution_plan", {}) == before, (
            "a refused patch leaves the plan as it was"
        )
        assert await ok(client, "get_dependency_graph", {}) == graph_before, "and adds no dependency"


async def test_plan_tools_respect_roles(coord: Coordinator) -> None:
    async with connect(coord) as operator:
        ids = await _two_epics(operator)
        worker = await worker_token(operator)
    async with connect(coord, token=worker) as client:
        assert (await ok(client, "get_parallel_batches", {}))["batches"]  # reading is for everyone
        await refused(
            client, "build_execution_plan", {}, "permission denied: a worker may not build the execution plan"
        )
        await refused(
            client,
            "update_execution_plan",
            {"pins": {str(ids["api"]): 2}},
            "permission denied: a worker may not change the execution plan",
        )


# ------------------------------------------------------------------------------------ costs


async def test_record_and_summarise_costs(coord: Coordinator) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
        task = await ok(operator, "create_task", {"title": "A"})
        worker = await worker_token(operator)
        observer = await worker_token(operator, "watcher", role="observer")
    async with connect(coord, "worker", token=worker) as client:
        priced = await ok(
            client,
            "record_cost",
            {
                "model": "claude-sonnet-4-5",
                "input_tokens": 1_000_000,
                "output_tokens": 100_000,
                "cache_read_tokens": 10,
                "cache_write_tokens": 20,
                "task_id": task["id"],
            },
        )
        assert priced["cost_usd"] > 0 and priced["agent_id"] is not None and priced["operation"] == "task"
        given = await ok(
            client, "record_cost", {"model": "local-llm", "cost_usd": 0.25, "operation": "review"}
        )
        assert given["cost_usd"] == 0.25 and given["task_id"] is None
        await refused(
            client,
            "record_cost",
            {"model": "local-llm", "input_tokens": 5},
            "model: 'local-llm' has no price",
            "Fix: pass cost_usd",
        )
        await refused(
            client, "record_cost", {"model": "sonnet", "task_id": 999}, "task_id: task 999 does not exist"
        )
        await refused(
            client,
            "record_cost",
            {"model": "sonnet", "input_tokens": -1},
            "input_tokens:",
            "greater than or equal to 0",
        )
        await refused(client, "record_cost", {"model": "sonnet", "cost_usd": "NaN"}, "cost_usd:")
        await refused(client, "record_cost", {}, "model: Field required")
    async with connect(coord, "observer", token=observer) as client:
        summary = await ok(client, "get_costs", {})
        assert summary["total_usd"] == priced["cost_usd"] + 0.25
        assert {line["key"] for line in summary["by_model"]} == {"claude-sonnet-4-5", "local-llm"}
        assert {line["key"] for line in summary["by_task"]} == {str(task["id"]), "none"}
        await refused(client, "get_costs", {"project": 99}, "project")
    async with connect(coord, token=observer) as client:
        await refused(
            client, "record_cost", {"model": "sonnet"}, "permission denied: an observer may not record costs"
        )
