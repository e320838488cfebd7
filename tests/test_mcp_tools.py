"""Every native tool through an in-process `mcp.Client`, on SQLite and PostgreSQL: success and bad input."""

from __future__ import annotations

from typing import Any

from coordinator.service import Coordinator
from tests.conftest import ManualClock
from tests.test_mcp_support import connect, make_project, ok, refused, worker_token

# ------------------------------------------------------------------------------------ planner


async def test_create_project_and_epic(coord: Coordinator) -> None:
    async with connect(coord) as client:
        project = await make_project(client)
        assert project["name"] == "shop" and project["status"] == "active"
        await refused(
            client, "create_project", {"name": "shop"}, "name: a project named 'shop' already exists", "Fix:"
        )
        await refused(
            client, "create_project", {"name": ""}, "name:", "at least 1 character", "Fix: correct name"
        )

        first = await ok(client, "create_epic", {"name": "Backend", "description": "API", "priority": 1})
        second = await ok(client, "create_epic", {"name": "Frontend", "depends_on": [first["id"]]})
        assert second["project_id"] == project["id"]
        await refused(client, "create_epic", {"name": "X", "depends_on": [999]}, "epic 999 does not exist")
        await refused(client, "create_epic", {"priority": 1}, "name: Field required")


async def test_create_epic_needs_a_project_when_there_are_several(coord: Coordinator) -> None:
    async with connect(coord) as client:
        await make_project(client, "a")
        await make_project(client, "b")
        await refused(
            client, "create_epic", {"name": "E"}, "project: no project was named", "Fix: pass project="
        )
        epic = await ok(client, "create_epic", {"name": "E", "project": "b"})
        await refused(
            client, "create_epic", {"name": "E", "project": "nope"}, "project: project 'nope' does not exist"
        )
        assert epic["project_id"] == 2


async def test_create_task_native_and_yokeflow_shapes(coord: Coordinator) -> None:
    async with connect(coord) as client:
        await make_project(client)
        epic = await ok(client, "create_epic", {"name": "E"})
        native = await ok(
            client,
            "create_task",
            {
                "title": "Schema",
                "epic_id": epic["id"],
                "estimate": 3,
                "predicted_files": ["db.sql"],
                "key": "schema",
            },
        )
        assert native["title"] == "Schema" and native["local_key"] == "schema"
        # YokeFlow's shape: epic_id, description, action, priority, depends_on, dependency_type (ids as strings).
        legacy = await ok(
            client,
            "create_task",
            {
                "epic_id": str(epic["id"]),
                "description": "Build the API\nwith FastAPI",
                "action": "Create app.py",
                "priority": 2,
                "depends_on": [str(native["id"])],
                "dependency_type": "soft",
            },
        )
        assert legacy["title"] == "Build the API" and legacy["action"] == "Create app.py"
        detail = await ok(client, "get_task", {"task_id": legacy["id"]})
        assert detail["dependencies"] == [
            {"task_id": native["id"], "title": "Schema", "status": "pending", "kind": "soft"}
        ]
        await refused(client, "create_task", {"action": "only an action"}, "title: is missing", "Fix:")
        await refused(
            client, "create_task", {"title": "T", "epic_id": 999}, "epic_id: epic 999 does not exist"
        )
        await refused(
            client,
            "create_task",
            {"title": "T", "depends_on": [999]},
            "depends_on: task 999 does not exist",
            "Fix:",
        )
        await refused(client, "create_task", {"title": "T", "dependency_type": "maybe"}, "dependency_type:")
        await refused(
            client,
            "create_task",
            {"title": "T", "persona": "pilot"},
            "persona: persona 'pilot' does not exist",
        )
        await refused(
            client, "create_task", {"title": "bad\x00title"}, "title: must not contain NUL characters"
        )
        await refused(client, "create_task", {"title": "T", "key": "schema"}, "key: 'schema' is already used")


async def test_expand_epic_with_local_keys(coord: Coordinator) -> None:
    async with connect(coord) as client:
        await make_project(client)
        epic = await ok(client, "create_epic", {"name": "E"})
        existing = await ok(client, "create_task", {"title": "Existing", "key": "base"})
        expanded = await ok(
            client,
            "expand_epic",
            {
                "epic_id": epic["id"],
                "tasks": [
                    {"key": "ui", "title": "UI", "depends_on": ["api"]},
                    {"key": "api", "title": "API", "depends_on": ["model", existing["id"]]},
                    {"key": "model", "title": "Model", "depends_on": ["base"]},
                    {"description": "Docs (YokeFlow shape)", "action": "write", "depends_on": ["ui"]},
                ],
            },
        )
        ids = expanded["keys"]
        assert set(ids) == {"ui", "api", "model"}
        by_title = {t["title"]: t for t in expanded["tasks"]}
        assert [t["title"] for t in expanded["tasks"]] == ["UI", "API", "Model", "Docs (YokeFlow shape)"]
        assert by_title["UI"]["depends_on"] == [ids["api"]]
        assert sorted(by_title["API"]["depends_on"]) == sorted([ids["model"], existing["id"]])
        assert by_title["Model"]["depends_on"] == [existing["id"]]
        assert all(t["epic_id"] == epic["id"] for t in expanded["tasks"])

        before = (await ok(client, "list_tasks", {}))["count"]
        cycle = [
            {"key": "a", "title": "A", "depends_on": ["b"]},
            {"key": "b", "title": "B", "depends_on": ["a"]},
        ]
        await refused(client, "expand_epic", {"epic_id": epic["id"], "tasks": cycle}, "in a cycle", "Fix:")
        unknown = [{"key": "c", "title": "C"}, {"title": "D", "depends_on": ["c", "nowhere"]}]
        await refused(
            client, "expand_epic", {"epic_id": epic["id"], "tasks": unknown}, "tasks[1].depends_on[1]"
        )
        duplicate = [{"key": "ui", "title": "again"}]
        await refused(
            client, "expand_epic", {"epic_id": epic["id"], "tasks": duplicate}, "tasks[0].key", "task"
        )
        persona = [{"key": "p1", "title": "P1"}, {"title": "P2", "persona": "pilot", "depends_on": ["p1"]}]
        await refused(client, "expand_epic", {"epic_id": epic["id"], "tasks": persona}, "tasks[1].persona")
        await refused(client, "expand_epic", {"epic_id": 999, "tasks": [{"title": "x"}]}, "epic_id: epic 999")
        await refused(
            client, "expand_epic", {"epic_id": epic["id"], "tasks": []}, "tasks:", "at least 1 item"
        )
        assert (await ok(client, "list_tasks", {}))["count"] == before, "a refused call must create nothing"


async def test_dependencies(coord: Coordinator) -> None:
    async with connect(coord) as client:
        await make_project(client)
        a = await ok(client, "create_task", {"title": "A"})
        b = await ok(client, "create_task", {"title": "B"})
        added = await ok(client, "add_dependency", {"task_id": b["id"], "depends_on": a["id"]})
        assert added["dependencies"][0]["task_id"] == a["id"] and added["dependencies"][0]["kind"] == "hard"
        await refused(client, "add_dependency", {"task_id": a["id"], "depends_on": b["id"]}, "cycle", "Fix:")
        await refused(client, "add_dependency", {"task_id": 999, "depends_on": a["id"]}, "task_id: task 999")
        await refused(
            client, "add_dependency", {"task_id": b["id"], "depends_on": 0}, "depends_on:", "greater than"
        )
        removed = await ok(client, "remove_dependency", {"task_id": b["id"], "depends_on": a["id"]})
        assert removed["dependencies"] == []
        await refused(
            client, "remove_dependency", {"task_id": b["id"], "depends_on": a["id"]}, "does not depend"
        )


async def test_tests_reopen_and_cancel(coord: Coordinator) -> None:
    async with connect(coord) as client:
        await make_project(client)
        task = await ok(client, "create_task", {"title": "A"})
        test = await ok(
            client,
            "create_test",
            {"task_id": task["id"], "description": "works", "category": "style", "steps": ["run"]},
        )
        assert test["steps"] == ["run"] and test["passes"] is None and test["category"] == "style"
        await refused(
            client, "create_test", {"task_id": 999, "description": "x"}, "task_id: task 999 does not exist"
        )
        await refused(client, "create_test", {"task_id": task["id"], "description": ""}, "description:")

        cancelled = await ok(client, "cancel_task", {"task_id": task["id"], "reason": "not needed"})
        assert cancelled["status"] == "cancelled"
        await refused(client, "cancel_task", {"task_id": task["id"]}, "cannot cancel task", "Fix:")
        reopened = await ok(client, "reopen_task", {"task_id": task["id"]})
        assert reopened["status"] == "pending"
        await refused(client, "reopen_task", {"task_id": task["id"]}, "cannot reopen task", "it is pending")
        await refused(client, "reopen_task", {"task_id": "x"}, "task_id:", "valid integer")


# ------------------------------------------------------------------------------------- worker


async def test_worker_loop(coord: Coordinator, clock: ManualClock) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
        first = await ok(operator, "create_task", {"title": "First", "priority": 0})
        second = await ok(operator, "create_task", {"title": "Second", "depends_on": [first["id"]]})
        test = await ok(operator, "create_test", {"task_id": first["id"], "description": "passes"})
        token = await worker_token(operator)
        await refused(
            operator, "register_agent", {"persona": "pilot"}, "persona 'pilot' does not exist", "Fix:"
        )
        await refused(operator, "register_agent", {"role": "boss"}, "role:")

    async with connect(coord, "worker", token=token) as worker:
        claimed = await ok(worker, "claim_task", {"ttl_seconds": 60})
        assert claimed["status"] == "claimed" and claimed["task"]["id"] == first["id"]
        assert claimed["context"]["tests"][0]["id"] == test["id"]
        lease = claimed["lease"]["lease_id"]
        await refused(worker, "claim_task", {"wait_seconds": -1}, "wait_seconds:", "greater than or equal")
        await refused(worker, "claim_task", {"ttl_seconds": 1}, "ttl_seconds:")

        renewed = await ok(
            worker, "heartbeat", {"task_id": first["id"], "lease_id": lease, "progress_note": "half"}
        )
        assert renewed["lease_id"] == lease
        await refused(worker, "heartbeat", {"task_id": first["id"], "lease_id": "stale-a1"}, "lease lost")

        await ok(worker, "update_test_result", {"test_id": test["id"], "passes": False, "notes": "red"})
        await refused(
            worker, "complete_task", {"task_id": first["id"], "lease_id": lease}, "failing tests", "Fix:"
        )
        await ok(worker, "update_test_result", {"test_id": test["id"], "passes": True})
        await refused(
            worker, "update_test_result", {"test_id": 999, "passes": True}, "test_id: test 999 does not exist"
        )
        await refused(worker, "update_test_result", {"test_id": test["id"]}, "passes: Field required")

        done = await ok(
            worker,
            "complete_task",
            {
                "task_id": first["id"],
                "lease_id": lease,
                "summary": "ok",
                "files_changed": ["a.py"],
                "commit": "abc",
            },
        )
        assert done["status"] == "done" and done["files_changed"] == ["a.py"]
        await refused(
            worker, "complete_task", {"task_id": first["id"], "lease_id": lease}, "lease lost", "done"
        )

        claimed = await ok(worker, "claim_task", {})
        assert claimed["task"]["id"] == second["id"]
        released = await ok(
            worker,
            "release_task",
            {"task_id": second["id"], "lease_id": claimed["lease"]["lease_id"], "note": "later"},
        )
        assert released["status"] == "pending" and released["progress_note"] == "later"
        await refused(worker, "release_task", {"task_id": second["id"], "lease_id": "x-a1"}, "lease lost")

        claimed = await ok(worker, "claim_task", {})
        failed = await ok(
            worker,
            "fail_task",
            {
                "task_id": second["id"],
                "lease_id": claimed["lease"]["lease_id"],
                "error": "boom",
                "retryable": False,
            },
        )
        assert failed["status"] == "failed" and failed["last_error"] == "boom"
        await refused(worker, "fail_task", {"task_id": second["id"], "lease_id": "x", "error": ""}, "error:")
        nothing = await ok(worker, "claim_task", {})
        assert nothing["status"] == "no_task" and nothing["reason"] == "blocked_by_failures"


async def test_lease_lost_after_expiry_and_takeover(coord: Coordinator, clock: ManualClock) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
        task = await ok(operator, "create_task", {"title": "Slow"})
        slow, fast = await worker_token(operator, "slow"), await worker_token(operator, "fast")
    async with connect(coord, "worker", token=slow) as a, connect(coord, "worker", token=fast) as b:
        old = (await ok(a, "claim_task", {"ttl_seconds": 30}))["lease"]["lease_id"]
        clock.advance(31)
        new = (await ok(b, "claim_task", {}))["lease"]["lease_id"]
        text = await refused(
            a, "complete_task", {"task_id": task["id"], "lease_id": old}, "lease lost", "re-claimed"
        )
        assert "Fix: stop working on this task" in text
        # The other agent's lease cannot be used by this agent either.
        await refused(a, "complete_task", {"task_id": task["id"], "lease_id": new}, "lease lost")
        await ok(b, "complete_task", {"task_id": task["id"], "lease_id": new})


# ------------------------------------------------------------------------------------ observer


async def test_observer_tools(coord: Coordinator) -> None:
    async with connect(coord) as operator:
        await make_project(operator)
        epic = await ok(operator, "create_epic", {"name": "E"})
        a = await ok(operator, "create_task", {"title": "A", "epic_id": epic["id"]})
        b = await ok(operator, "create_task", {"title": "B", "epic_id": epic["id"], "depends_on": [a["id"]]})
        token = await worker_token(operator)
    async with connect(coord, "worker", token=token) as worker:
        claimed = await ok(worker, "claim_task", {})
    async with connect(coord, "observer") as observer:
        status = await ok(observer, "project_status", {})
        assert status["tasks"]["in_progress"] == 1 and status["tasks"]["pending"] == 1
        assert status["total_tasks"] == 2 and status["running_tasks"] == 1 and status["ready_tasks"] == 0
        assert status["epics"][0]["total_tasks"] == 2
        assert status["active_agents"][0]["leased_task_ids"] == [a["id"]]
        assert "token" not in str(status["active_agents"][0])
        await refused(
            observer, "project_status", {"project": "nope"}, "project: project 'nope' does not exist"
        )

        listed = await ok(observer, "list_tasks", {"status": "pending"})
        assert [t["id"] for t in listed["tasks"]] == [b["id"]] and listed["tasks"][0]["depends_on"] == [
            a["id"]
        ]
        page = await ok(observer, "list_tasks", {"limit": 1})
        assert page["count"] == 1 and page["next_offset"] == 1
        both = await ok(observer, "list_tasks", {"status": ["pending", "in_progress"], "epic_id": epic["id"]})
        assert both["count"] == 2
        assert (await ok(observer, "list_tasks", {"only_pending": True}))["count"] == 2
        await refused(observer, "list_tasks", {"status": "sleeping"}, "status")
        await refused(observer, "list_tasks", {"epic_id": 999}, "epic_id: epic 999 does not exist")
        await refused(observer, "list_tasks", {"limit": 0}, "limit:")

        detail = await ok(observer, "get_task", {"task_id": b["id"]})
        assert detail["blocked_by"] == [a["id"]] and detail["epic"]["id"] == epic["id"]
        assert [e["kind"] for e in detail["recent_events"]] == ["task_created"]
        assert (await ok(observer, "get_task", {"task_id": a["id"]}))["dependents"][0]["task_id"] == b["id"]
        await refused(observer, "get_task", {"task_id": 999}, "task_id: task 999 does not exist", "Fix:")

        agents = await ok(observer, "list_agents", {})
        assert agents["agents"][0]["name"] == "w" and "token_hash" not in agents["agents"][0]
        assert (await ok(observer, "list_agents", {"status": "stopped"}))["agents"] == []
        await refused(observer, "list_agents", {"status": "sleeping"}, "status:")

        first = await ok(observer, "get_events", {"limit": 2})
        assert first["more"] and len(first["events"]) == 2
        rest = await ok(observer, "get_events", {"after_id": first["next_after_id"]})
        kinds = [e["kind"] for e in first["events"] + rest["events"]]
        assert kinds[0] == "project_created" and "task_claimed" in kinds and not rest["more"]
        only_a = await ok(observer, "get_events", {"task_id": a["id"]})
        assert {e["task_id"] for e in only_a["events"]} == {a["id"]}
        assert claimed["lease"]["lease_id"] in str(only_a["events"])
        await refused(observer, "get_events", {"after_id": -1}, "after_id:")

        pong = await ok(observer, "ping", {})
        assert pong["ok"] is True and pong["server"] == "yokeflow-observer"


# ------------------------------------------------------------------------------------ identity


async def test_tokens_fix_role_and_project(coord: Coordinator) -> None:
    async with connect(coord) as operator:
        await make_project(operator, "mine")
        await make_project(operator, "theirs")
        mine = await ok(operator, "create_task", {"title": "Mine", "project": "mine"})
        theirs = await ok(operator, "create_task", {"title": "Theirs", "project": "theirs"})
        worker = await worker_token(operator, project="mine")
        planner = await worker_token(operator, "planner", persona="planner", role="planner", project="mine")
        observer = await worker_token(operator, "watcher", role="observer", project="mine")

    async with connect(coord, token=worker) as client:
        await refused(
            client, "create_task", {"title": "X"}, "permission denied: a worker may not create tasks", "Fix:"
        )
        await refused(
            client, "add_dependency", {"task_id": mine["id"], "depends_on": mine["id"]}, "permission denied"
        )
        await refused(client, "cancel_task", {"task_id": mine["id"]}, "permission denied")
        await refused(client, "register_agent", {}, "permission denied")
        await refused(client, "get_task", {"task_id": theirs["id"]}, f"task {theirs['id']} does not exist")
        await refused(client, "list_tasks", {"project": "theirs"}, "permission denied", "belongs to project")
        assert [t["id"] for t in (await ok(client, "list_tasks", {}))["tasks"]] == [mine["id"]]
    async with connect(coord, token=planner) as client:
        made = await ok(client, "create_task", {"title": "Planned"})
        assert made["project_id"] == mine["project_id"]
        await refused(client, "create_project", {"name": "new"}, "permission denied")
        await refused(client, "claim_task", {}, "permission denied: a planner may not claim tasks")
    async with connect(coord, token=observer) as client:
        await ok(client, "project_status", {})
        await refused(client, "create_epic", {"name": "E"}, "permission denied: an observer may not")
    async with connect(coord, token="yf_not-a-token") as client:
        assert (await ok(client, "ping", {}))["ok"] is True  # ping touches neither database nor token
        await refused(
            client, "project_status", {}, "permission denied: the bearer token is not valid", "Fix:"
        )


async def test_a_broken_store_gives_error_results_and_the_server_keeps_answering(database: Any) -> None:
    coord = await Coordinator.open(database.url)
    async with connect(coord) as client:
        await make_project(client)
        await coord.close()
        result = await client.call_tool("create_task", {"title": "after close"})
        assert result.is_error
        pong = await ok(client, "ping", {})
        assert pong["ok"] is True
