"""The YokeFlow-compatible tools, driven the way prompts written for the TypeScript server drive them."""

from __future__ import annotations

from coordinator.service import Coordinator
from tests.conftest import ManualClock
from tests.test_mcp_support import connect, make_project, ok, refused, worker_token


async def test_yokeflow_scenario(coord: Coordinator) -> None:
    async with connect(coord) as operator:
        await make_project(operator)  # the old server's PROJECT_ID: the only project is the default
    async with connect(coord, "yokeflow") as client:
        backend = await ok(client, "create_epic", {"name": "Backend", "description": "API", "priority": 1})
        frontend = await ok(client, "create_epic", {"name": "Frontend", "description": "UI", "priority": 2})
        needing = await ok(client, "list_epics", {"needs_expansion": True})
        assert [e["name"] for e in needing["epics"]] == ["Backend", "Frontend"]

        api = await ok(
            client,
            "expand_epic",
            {
                "epic_id": backend["id"],
                "tasks": [
                    {"description": "Database schema", "action": "Write schema.sql", "priority": 2},
                    {"description": "REST endpoints", "action": "Write api.py", "priority": 3},
                ],
            },
        )
        schema_id, endpoints_id = (t["id"] for t in api["tasks"])
        ui = await ok(
            client,
            "expand_epic",
            {
                "epic_id": frontend["id"],
                "tasks": [
                    # Most urgent by priority, but it needs the endpoints first.
                    {
                        "description": "Pages",
                        "action": "Write pages",
                        "priority": 1,
                        "depends_on": [endpoints_id],
                    }
                ],
            },
        )
        pages_id = ui["tasks"][0]["id"]
        test = await ok(
            client,
            "create_test",
            {
                "task_id": schema_id,
                "category": "functional",
                "description": "tables exist",
                "steps": ["migrate"],
            },
        )
        assert (await ok(client, "list_epics", {"needs_expansion": True}))["epics"] == []

        # get_next_task respects dependencies (the old server did not) and claims nothing.
        nxt = await ok(client, "get_next_task", {})
        assert nxt["task"]["task"]["id"] == schema_id and nxt["task"]["tests"][0]["id"] == test["id"]
        assert (await ok(client, "get_next_task", {}))["task"]["task"]["id"] == schema_id

        started = await ok(client, "start_task", {"task_id": schema_id})
        assert started["status"] == "claimed" and started["task"]["status"] == "in_progress"
        again = await ok(client, "start_task", {"task_id": schema_id})
        assert (
            again["message"] == "already started"
            and again["lease"]["lease_id"] == started["lease"]["lease_id"]
        )
        await ok(client, "update_test_result", {"test_id": test["id"], "passes": True})
        done = await ok(client, "update_task_status", {"task_id": schema_id, "done": True})
        assert done["changed"] and done["task"]["status"] == "done"
        assert not (await ok(client, "update_task_status", {"task_id": schema_id, "done": True}))["changed"]

        # A pending task nobody holds: leased and completed in one go for the operator.
        assert (await ok(client, "get_next_task", {}))["task"]["task"]["id"] == endpoints_id
        await refused(client, "start_task", {"task_id": pages_id}, "waits on unfinished dependencies", "Fix:")
        done = await ok(client, "update_task_status", {"task_id": endpoints_id, "done": True})
        assert done["task"]["status"] == "done"

        # done=false reopens; a worker named by the prompt claims and finishes it.
        reopened = await ok(client, "update_task_status", {"task_id": endpoints_id, "done": False})
        assert reopened["task"]["status"] == "pending"
        assert not (await ok(client, "update_task_status", {"task_id": endpoints_id, "done": False}))[
            "changed"
        ]
        claimed = await ok(client, "claim_next_task", {"worker_id": "worker-1"})
        assert claimed["status"] == "claimed" and claimed["task"]["id"] == endpoints_id
        await ok(client, "update_task_status", {"task_id": endpoints_id, "done": True})
        claimed_again = await ok(client, "claim_next_task", {"worker_id": "worker-1"})
        assert claimed_again["agent_id"] == claimed["agent_id"] and claimed_again["task"]["id"] == pages_id

        status = await ok(client, "task_status", {})
        assert status["tasks"]["done"] == 2 and status["tasks"]["in_progress"] == 1
        assert status["tests"] == {"total": 1, "passing": 1, "failing": 0, "not_run": 0}
        await refused(client, "mark_project_complete", {}, "1 open tasks", "Fix:")
        await ok(client, "update_task_status", {"task_id": pages_id, "done": True})
        nothing = await ok(client, "get_next_task", {})
        assert nothing["task"] is None and "every task is done" in nothing["message"]
        nothing = await ok(client, "claim_next_task", {"worker_id": "worker-2"})
        assert nothing["status"] == "no_task" and nothing["reason"] == "all_done"

        epic = await ok(client, "get_epic", {"epic_id": backend["id"]})
        assert epic["progress"]["percent_done"] == 100.0 and len(epic["tasks"]) == 2
        assert epic["epic"]["status"] == "done"
        assert (await ok(client, "list_tests", {"task_id": schema_id}))["tests"][0]["passes"] is True
        assert len((await ok(client, "list_tests", {}))["tests"]) == 1
        assert (await ok(client, "list_tasks", {"only_pending": True}))["tasks"] == []
        assert (await ok(client, "list_tasks", {"epic_id": str(frontend["id"])}))["count"] == 1
        assert (await ok(client, "get_task", {"task_id": str(pages_id)}))["task"]["status"] == "done"
        history = (await ok(client, "get_session_history", {"limit": 5}))["sessions"]
        assert [(h["task_id"], h["agent_name"], h["status"]) for h in history] == [
            (pages_id, "worker-1", "completed"),
            (endpoints_id, "worker-1", "completed"),  # after done=false reopened it
            (endpoints_id, "yokeflow", "completed"),
            (schema_id, "yokeflow", "completed"),
        ]
        project = await ok(client, "mark_project_complete", {})
        assert project["status"] == "complete"
        assert (await ok(client, "mark_project_complete", {}))["status"] == "complete"


async def test_yokeflow_tools_refuse_bad_input(coord: Coordinator, clock: ManualClock) -> None:
    async with connect(coord) as operator:
        await make_project(operator, "a")
        await make_project(operator, "b")
    async with connect(coord, "yokeflow") as client:
        # Several projects and none named: say so.
        await refused(client, "task_status", {}, "project: no project was named", "Fix:")
        await refused(client, "get_next_task", {"project": "nope"}, "project: project 'nope' does not exist")
        await refused(client, "list_epics", {"needs_expansion": "maybe"}, "needs_expansion:")
        await refused(client, "get_epic", {"epic_id": 999}, "epic_id: epic 999 does not exist")
        await refused(client, "list_tests", {"task_id": 999}, "task_id: task 999 does not exist")
        await refused(client, "get_session_history", {"limit": 0, "project": "a"}, "limit:")
        await refused(client, "claim_next_task", {"worker_id": ""}, "worker_id:")
        await refused(client, "start_task", {"task_id": 999}, "task_id: task 999 does not exist")
        await refused(client, "update_task_status", {"task_id": 999, "done": True}, "task_id: task 999")
        await refused(client, "update_task_status", {"task_id": 1}, "done: Field required")

        first = await ok(client, "create_task", {"description": "First", "action": "x", "project": "a"})
        second = await ok(
            client, "create_task", {"description": "Second", "action": "x", "priority": 5, "project": "a"}
        )
        # any ready task can be started, not only the one a claim would pick first
        started = await ok(client, "start_task", {"task_id": second["id"]})
        assert started["task"]["id"] == second["id"]
        reopened = await ok(client, "update_task_status", {"task_id": second["id"], "done": False})
        assert reopened["task"]["status"] == "pending"
        await refused(client, "mark_project_complete", {"project": "a"}, "2 open tasks")

    async with connect(coord) as operator:
        token = await worker_token(operator, project="a")
        other = await worker_token(operator, "other", project="a")
    async with connect(coord, "worker", token=token) as worker:
        await ok(worker, "claim_task", {})
    async with connect(coord, "yokeflow") as client:
        # Leased through claim_task by a native agent: the operator may not complete it behind its back.
        await refused(
            client,
            "update_task_status",
            {"task_id": first["id"], "done": True},
            "works on it through claim_task",
        )
        await refused(client, "start_task", {"task_id": first["id"]}, "is leased by agent")
    async with connect(coord, "yokeflow", token=other) as client:
        await refused(client, "update_task_status", {"task_id": first["id"], "done": True}, "not by you")
    async with connect(coord, "yokeflow", token=token) as client:
        # The holder may mark its own task done with the old tool.
        assert (await ok(client, "update_task_status", {"task_id": first["id"], "done": True}))["changed"]
        claimed = await ok(client, "claim_next_task", {"worker_id": "ignored-for-tokens"})
        assert claimed["task"]["id"] == second["id"]
        handed_back = await ok(client, "update_task_status", {"task_id": second["id"], "done": False})
        assert handed_back["task"]["status"] == "pending" and handed_back["message"].endswith("handed back")
        await refused(
            client, "update_task_status", {"task_id": first["id"], "done": False}, "permission denied"
        )

    async with connect(coord, "yokeflow") as client:
        claimed = await ok(client, "claim_next_task", {"worker_id": "w9", "project": "a"})
        lease = claimed["lease"]
        assert lease["ttl_seconds"] == 3600
    async with connect(coord) as operator:
        # A cancelled task must be reopened before it can be marked done.
        await ok(operator, "cancel_task", {"task_id": second["id"]})
        await refused(
            operator, "update_task_status", {"task_id": second["id"], "done": True}, "is cancelled", "reopen"
        )
