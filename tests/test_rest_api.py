"""The REST API over real HTTP (uvicorn on loopback, httpx), on SQLite and PostgreSQL.

Each endpoint's happy path and its bad input: malformed JSON, unknown ids, a dependency that
closes a cycle, an oversized body, a worker writing. Setup (projects, tasks, agents, claims)
goes through an in-process coordinator on the same database, as agents would over MCP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from coordinator.context import OPERATOR
from coordinator.events import read_events
from coordinator.planning import NewTask
from coordinator.rest import endpoints
from coordinator.rest.api import MAX_BODY_BYTES
from coordinator.service import Coordinator
from coordinator.work import Claimed, NoWork
from tests.conftest import Database
from tests.test_rest_support import Server, answer, plan_shop, refused, register, serving, until

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server(database: Database, local: Coordinator) -> Iterator[Server]:
    with serving(database.url) as running:
        yield running


@asynccontextmanager
async def server_on_loopback(database: Database) -> AsyncIterator[Server]:
    with serving(database.url) as running:
        yield running


async def kinds_of(coord: Coordinator, project_id: int = 1) -> list[str]:
    return [e.kind for e in await read_events(coord.store, project_id=project_id, limit=10_000)]


# ------------------------------------------------------------------------------------ the document


async def test_the_openapi_document_describes_every_endpoint_with_resolvable_schemas(server: Server) -> None:
    async with server.client() as http:
        document = answer(await http.get("/api/openapi.json"))
    assert document["openapi"].startswith("3.1")
    for endpoint in endpoints():
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["summary"] and operation["operationId"] == endpoint.handler.__name__
        assert str(endpoint.status) in operation["responses"] and "4XX" in operation["responses"]
        named = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert named == {part.strip("{}") for part in endpoint.path.split("/") if part.startswith("{")}
    schemas = document["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(document))
    assert found and all(ref.removeprefix("#/components/schemas/") in schemas for ref in found)
    patch = document["paths"]["/api/tasks/{task_id}"]["patch"]
    body = schemas[patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"priority", "parked", "status", "reason"}
    stream = document["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]


# -------------------------------------------------------------------------------------- projects


async def test_projects_status_pause_and_resume(local: Coordinator, server: Server) -> None:
    first, _ = await plan_shop(local, NewTask(title="A", local_key="a"), NewTask(title="B", depends_on=["a"]))
    await local.planning.create_project(OPERATOR, name="other")
    worker, token = await register(local, "ann")
    async with server.client() as http:
        listed = answer(await http.get("/api/projects"))["projects"]
        assert [p["name"] for p in listed] == ["shop", "other"]
        assert listed[0]["tasks"]["pending"] == 2 and listed[1]["tasks"]["pending"] == 0
        status = answer(await http.get("/api/projects/shop"))
        assert status["total_tasks"] == 2 and status["ready_tasks"] == 1 and status["last_event_id"] > 0
        assert answer(await http.get(f"/api/projects/{status['project']['id']}"))["project"]["name"] == "shop"
        refused(await http.get("/api/projects/nope"), 404, "not_found", "'nope' does not exist", "shop")

        assert answer(await http.post("/api/projects/shop/pause"))["status"] == "paused"
        paused = await local.work.claim(worker)
        assert isinstance(paused, NoWork) and paused.reason == "paused"
        assert answer(await http.post("/api/projects/shop/resume"))["status"] == "active"
        claimed = await local.work.claim(worker)
        assert isinstance(claimed, Claimed) and claimed.task.id == first
    assert (await kinds_of(local)).count("project_status") == 2

    async with server.client(token) as as_worker:
        assert [p["name"] for p in answer(await as_worker.get("/api/projects"))["projects"]] == ["shop"]
        refused(await as_worker.get("/api/projects/other"), 403, "permission_denied", "project")
        refused(await as_worker.post("/api/projects/shop/pause"), 403, "permission_denied", "planner")
    assert (await kinds_of(local)).count("project_status") == 2


# ----------------------------------------------------------------------------------------- tasks


async def test_task_lists_filter_and_page_and_a_task_shows_its_tests_and_events(
    local: Coordinator, server: Server
) -> None:
    epic = await local.planning.create_project(OPERATOR, name="shop")
    built = await local.planning.create_epic(OPERATOR, name="Cart", project=epic.name)
    schema, api, docs = ids = [
        t.id
        for t in await local.planning.create_tasks(
            OPERATOR,
            [
                NewTask(title="Schema", epic_id=built.id, local_key="schema"),
                NewTask(title="API", epic_id=built.id, depends_on=["schema"], persona="implementer"),
                NewTask(title="Docs", persona="reviewer"),
            ],
            project="shop",
        )
    ]
    ids.sort()
    await local.planning.create_test(OPERATOR, task_id=api, description="GET /cart answers 200")
    await local.work.cancel(OPERATOR, task_id=docs, reason="not needed")
    async with server.client() as http:
        page = answer(await http.get("/api/projects/shop/tasks"))
        assert [t["id"] for t in page["tasks"]] == ids and page["total"] == 3 and page["next_offset"] is None
        assert page["tasks"][api - 1]["depends_on"] == [schema] and page["tasks"][0]["parked"] is False
        pending = answer(await http.get("/api/projects/shop/tasks", params={"status": "pending"}))
        assert [t["id"] for t in pending["tasks"]] == sorted([schema, api])
        repeated = await http.get(
            "/api/projects/shop/tasks", params=[("status", "pending"), ("status", "cancelled")]
        )
        assert [t["id"] for t in answer(repeated)["tasks"]] == ids
        commas = answer(await http.get("/api/projects/shop/tasks?status=cancelled,done"))
        assert [t["id"] for t in commas["tasks"]] == [docs]
        by_epic = answer(await http.get("/api/projects/shop/tasks", params={"epic_id": built.id}))
        assert [t["id"] for t in by_epic["tasks"]] == sorted([schema, api])
        by_persona = answer(await http.get("/api/projects/shop/tasks", params={"persona": "reviewer"}))
        assert [t["id"] for t in by_persona["tasks"]] == [docs]
        first = answer(await http.get("/api/projects/shop/tasks", params={"limit": 2}))
        assert first["count"] == 2 and first["next_offset"] == 2
        rest = answer(await http.get("/api/projects/shop/tasks", params={"limit": 2, "offset": 2}))
        assert [t["id"] for t in rest["tasks"]] == [ids[2]] and rest["next_offset"] is None

        refused(
            await http.get("/api/projects/shop/tasks?status=sleeping"), 422, "invalid_input", "query.status"
        )
        refused(await http.get("/api/projects/shop/tasks?limit=0"), 422, "invalid_input", "query.limit")
        refused(await http.get("/api/projects/shop/tasks?stauts=done"), 422, "invalid_input", "stauts")
        refused(await http.get("/api/projects/shop/tasks?epic_id=999"), 404, "not_found", "epic 999")

        detail = answer(await http.get(f"/api/tasks/{api}"))
        assert detail["task"]["title"] == "API" and detail["task"]["assigned_agent"] is None
        assert detail["epic"]["name"] == "Cart" and detail["blocked_by"] == [schema]
        assert [t["description"] for t in detail["tests"]] == ["GET /cart answers 200"]
        assert [e["kind"] for e in detail["recent_events"]] == ["task_created", "test_created"]
        assert answer(await http.get(f"/api/tasks/{api}", params={"events": 1}))["recent_events"][0][
            "kind"
        ] == ("test_created")
        refused(await http.get("/api/tasks/999"), 404, "not_found", "task 999")
        refused(await http.get("/api/tasks/abc"), 422, "invalid_input", "path.task_id")


async def test_patch_sets_priority_parks_cancels_and_reopens_each_whole_or_not_at_all(
    local: Coordinator, server: Server
) -> None:
    a, b = await plan_shop(local, NewTask(title="A", priority=1), NewTask(title="B", priority=2))
    worker, token = await register(local, "ann")
    _, observer = await register(local, "eve", role="observer")
    async with server.client() as http:
        raised = answer(await http.patch(f"/api/tasks/{b}", json={"priority": 0, "reason": "urgent"}))
        assert raised["priority"] == 0
        parked = answer(await http.patch(f"/api/tasks/{b}", json={"parked": True}))
        assert parked["parked"] is True
        claimed = await local.work.claim(worker)  # B runs first by priority, but it is parked
        assert isinstance(claimed, Claimed) and claimed.task.id == a
        nothing = await local.work.claim(worker)
        assert isinstance(nothing, NoWork) and nothing.reason == "waiting" and "parked" in nothing.message
        assert answer(await http.patch(f"/api/tasks/{b}", json={"parked": False}))["parked"] is False
        claimed_b = await local.work.claim(worker)
        assert isinstance(claimed_b, Claimed) and claimed_b.task.id == b

        assert (
            answer(await http.patch(f"/api/tasks/{a}", json={"status": "cancelled"}))["status"] == "cancelled"
        )
        assert answer(await http.patch(f"/api/tasks/{a}", json={"status": "pending"}))["status"] == "pending"
        refused(
            await http.patch(f"/api/tasks/{a}", json={"status": "pending"}),
            409,
            "state_conflict",
            "cannot reopen",
        )
        before = await kinds_of(local)

        # Bad input: nothing is written.
        refused(
            await http.patch(f"/api/tasks/{a}", json={"status": "cancelled", "priority": 5}),
            422,
            "invalid_input",
            "two requests",
        )
        refused(await http.patch(f"/api/tasks/{a}", json={}), 422, "invalid_input", "priority, parked")
        refused(
            await http.patch(f"/api/tasks/{a}", json={"status": "done"}), 422, "invalid_input", "body.status"
        )
        refused(
            await http.patch(f"/api/tasks/{a}", json={"priority": 10**9}), 422, "invalid_input", "priority"
        )
        refused(
            await http.patch(f"/api/tasks/{a}", content=b'{"priority": 1', headers=JSON), 400, "invalid_json"
        )
        refused(await http.patch(f"/api/tasks/{a}", content=b"[1, 2]", headers=JSON), 422, "invalid_input")
        refused(
            await http.patch(
                f"/api/tasks/{a}", content=b"priority=1", headers={"Content-Type": "text/plain"}
            ),
            415,
            "unsupported_media_type",
        )
        big = b'{"reason": "' + b"x" * MAX_BODY_BYTES + b'", "priority": 3}'
        refused(await http.patch(f"/api/tasks/{a}", content=big, headers=JSON), 413, "too_large")

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
            yield b'{"reason": "'
            for _ in range(MAX_BODY_BYTES // 65536 + 1):
                yield b"x" * 65536
            yield b'"}'

        refused(await http.patch(f"/api/tasks/{a}", content=chunks(), headers=JSON), 413, "too_large")
        refused(await http.patch("/api/tasks/999", json={"priority": 1}), 404, "not_found", "task 999")
        refused(
            await http.patch(f"/api/tasks/{a}", json={"priority": 1, "colour": "red"}), 422, "invalid_input"
        )
    async with server.client(token) as as_worker:
        refused(
            await as_worker.patch(f"/api/tasks/{a}", json={"priority": 3}),
            403,
            "permission_denied",
            "planner",
        )
    async with server.client(observer) as as_observer:
        refused(await as_observer.patch(f"/api/tasks/{a}", json={"parked": True}), 403, "permission_denied")
    after = await local.observe.get_task(OPERATOR, task_id=a)
    assert after.task.priority == 1 and after.task.status == "pending"
    assert await kinds_of(local) == before
    kinds = await kinds_of(local)
    for kind in ("task_priority_changed", "task_parked", "task_unparked", "task_cancelled", "task_reopened"):
        assert kinds.count(kind) == 1, kind


async def test_assign_lets_only_that_agent_claim_and_leaves_a_held_lease_alone(
    local: Coordinator, server: Server
) -> None:
    (task,) = await plan_shop(local, NewTask(title="A", persona="implementer"))
    ann, _ = await register(local, "ann")
    bob, _ = await register(local, "bob")
    rita, _ = await register(local, "rita", persona="reviewer")
    assert ann.agent is not None and bob.agent is not None and rita.agent is not None
    async with server.client() as http:
        assigned = answer(await http.post(f"/api/tasks/{task}/assign", json={"agent_id": bob.agent.id}))
        assert assigned["task"]["assigned_agent"] == bob.agent.id and assigned["lease_held_by"] is None
        assert f"only agent {bob.agent.id}" in assigned["message"]
        not_for_ann = await local.work.claim(ann)
        assert isinstance(not_for_ann, NoWork) and not_for_ann.reason == "waiting"
        held = await local.work.claim(bob)
        assert isinstance(held, Claimed) and held.task.id == task

        moved = answer(await http.post(f"/api/tasks/{task}/assign", json={"agent_id": ann.agent.id}))
        assert moved["lease_held_by"] == bob.agent.id and "keeps it" in moved["message"]
        detail = await local.observe.get_task(OPERATOR, task_id=task)
        assert detail.task.lease_owner == bob.agent.id and detail.task.status == "in_progress"
        cleared = answer(await http.post(f"/api/tasks/{task}/assign", json={"agent_id": None}))
        assert cleared["task"]["assigned_agent"] is None

        refused(
            await http.post(f"/api/tasks/{task}/assign", json={"agent_id": 999}),
            404,
            "not_found",
            "agent 999",
        )
        refused(
            await http.post(f"/api/tasks/{task}/assign", json={"agent_id": rita.agent.id}),
            422,
            "invalid_input",
            "for the implementer persona",
        )
        refused(await http.post(f"/api/tasks/{task}/assign", json={}), 422, "invalid_input", "body.agent_id")
        refused(await http.post("/api/tasks/999/assign", json={"agent_id": None}), 404, "not_found")
    kinds = await kinds_of(local)
    assert kinds.count("task_assigned") == 3


# ----------------------------------------------------------------------------------- dependencies


async def test_the_graph_its_batches_and_critical_path_and_edges_that_cannot_close_a_cycle(
    local: Coordinator, server: Server
) -> None:
    a, b, c = await plan_shop(
        local,
        NewTask(title="Schema", local_key="a", estimate=3),
        NewTask(title="API", local_key="b", depends_on=["a"], estimate=2),
        NewTask(title="Docs", local_key="c", estimate=1),
    )
    async with server.client() as http:
        graph = answer(await http.get("/api/projects/shop/graph"))
        assert {n["id"]: n["batch"] for n in graph["nodes"]} == {a: 1, b: 2, c: 1}
        assert graph["edges"] == [{"before": a, "after": b, "kind": "hard", "critical": True}]
        assert graph["critical_path"] == {"tasks": [a, b], "length": 5.0}
        assert answer(await http.get("/api/projects/shop/batches")) == {"batches": [[a, c], [b]]}
        assert answer(await http.get("/api/projects/shop/critical-path"))["tasks"] == [a, b]
        assert answer(await http.post("/api/projects/shop/dependencies/validate")) == {
            "ok": True,
            "issues": [],
        }

        added = answer(await http.post("/api/dependencies", json={"task_id": c, "depends_on": b}), 201)
        assert added == {"task_id": c, "depends_on": b, "kind": "hard", "removed": False}
        assert answer(await http.get("/api/projects/shop/critical-path"))["tasks"] == [a, b, c]
        before = await kinds_of(local)
        cycle = refused(
            await http.post("/api/dependencies", json={"task_id": a, "depends_on": c}),
            422,
            "cycle",
            "would close the cycle",
        )
        assert set(cycle["cycle"]) == {a, b, c} and cycle["field"] == "depends_on"
        refused(
            await http.post("/api/dependencies", json={"task_id": a, "depends_on": a}), 422, "invalid_input"
        )
        refused(
            await http.post("/api/dependencies", json={"task_id": a, "depends_on": 999}), 404, "not_found"
        )
        refused(
            await http.post("/api/dependencies", json={"task_id": a, "depends_on": b, "kind": "x"}),
            422,
            "invalid_input",
        )
        refused(await http.post("/api/dependencies", content=b"{", headers=JSON), 400, "invalid_json")
        assert await kinds_of(local) == before
        assert len(answer(await http.get("/api/projects/shop/graph"))["edges"]) == 2

        removed = answer(await http.delete("/api/dependencies", params={"task_id": c, "depends_on": b}))
        assert removed["removed"] is True
        refused(
            await http.delete("/api/dependencies", params={"task_id": c, "depends_on": b}),
            404,
            "not_found",
            f"task {c} does not depend on task {b}",
        )
        refused(
            await http.delete("/api/dependencies", params={"task_id": c}), 422, "invalid_input", "depends_on"
        )
        soft = answer(
            await http.post("/api/dependencies", json={"task_id": c, "depends_on": a, "kind": "soft"}), 201
        )
        assert soft["kind"] == "soft"
    kinds = await kinds_of(local)
    assert kinds.count("dependency_added") == 2 and kinds.count("dependency_removed") == 1


async def test_the_execution_plan_is_built_read_and_patched_and_a_cyclic_patch_writes_nothing(
    local: Coordinator, server: Server
) -> None:
    a, b = await plan_shop(local, NewTask(title="A", local_key="a"), NewTask(title="B", depends_on=["a"]))
    async with server.client() as http:
        refused(await http.get("/api/projects/shop/execution-plan"), 404, "not_found", "no execution plan")
        built = answer(await http.post("/api/projects/shop/execution-plan"))
        assert [batch["tasks"] for batch in built["batches"]] == [[a], [b]]
        assert answer(await http.get("/api/projects/shop/execution-plan"))["batches"] == built["batches"]
        patched = answer(
            await http.patch("/api/projects/shop/execution-plan", json={"worktrees": {str(b): "lane-b"}})
        )
        assert patched["worktrees"]["lane-b"] == [b]
        before = await kinds_of(local)
        refused(
            await http.patch("/api/projects/shop/execution-plan", json={"sequential": [[b, a]]}),
            422,
            "cycle",
        )
        refused(
            await http.patch("/api/projects/shop/execution-plan", json={"pins": {"x": 1}}),
            422,
            "invalid_input",
        )
        refused(
            await http.patch("/api/projects/shop/execution-plan", json={"lanes": {}}), 422, "invalid_input"
        )
        assert await kinds_of(local) == before
        assert answer(await http.get("/api/projects/shop/execution-plan"))["worktrees"]["lane-b"] == [b]
    assert (await kinds_of(local)).count("plan_patched") == 1


# ------------------------------------------------------------------------- agents, costs, events


async def test_agents_costs_and_the_event_log_page_by_page(local: Coordinator, server: Server) -> None:
    (task,) = await plan_shop(local, NewTask(title="A"))
    worker, _ = await register(local, "ann")
    assert worker.agent is not None
    claimed = await local.work.claim(worker)
    assert isinstance(claimed, Claimed)
    await local.costs.record(worker, model="sonnet", input_tokens=1000, output_tokens=500, task_id=task)
    async with server.client() as http:
        agents = answer(await http.get("/api/projects/shop/agents"))["agents"]
        assert [(a["name"], a["leased_task_ids"]) for a in agents] == [("ann", [task])]
        assert "token_hash" not in agents[0]
        assert answer(await http.get("/api/projects/shop/agents", params={"status": "lost"})) == {
            "agents": []
        }
        refused(await http.get("/api/projects/shop/agents?status=asleep"), 422, "invalid_input")

        (session,) = answer(await http.get("/api/projects/shop/sessions"))["sessions"]
        assert (session["task_id"], session["agent_name"], session["status"]) == (task, "ann", "running")
        assert session["cost_usd"] > 0
        refused(await http.get("/api/projects/shop/sessions?limit=0"), 422, "invalid_input")

        costs = answer(await http.get("/api/projects/shop/costs"))
        assert costs["total_usd"] > 0 and costs["by_model"][0]["key"] == "sonnet"
        assert answer(await http.get("/api/projects/shop/costs/breakdown"))["total_usd"] == costs["total_usd"]
        assert "remaining_tasks" in answer(await http.get("/api/projects/shop/costs/forecast"))
        assert isinstance(answer(await http.get("/api/projects/shop/costs/models")), dict)

        everything = answer(await http.get("/api/projects/shop/events", params={"limit": 1000}))
        kinds = [e["kind"] for e in everything["events"]]
        assert kinds[0] == "project_created" and "task_claimed" in kinds and "cost_recorded" in kinds
        ids = [e["id"] for e in everything["events"]]
        assert ids == sorted(ids) and everything["more"] is False
        first = answer(await http.get("/api/projects/shop/events", params={"limit": 2}))
        assert first["more"] is True and [e["id"] for e in first["events"]] == ids[:2]
        after = answer(
            await http.get("/api/projects/shop/events", params={"after_id": first["next_after_id"]})
        )
        assert [e["id"] for e in after["events"]] == ids[2:]
        of_task = answer(await http.get("/api/projects/shop/events", params={"task_id": task}))
        assert {e["task_id"] for e in of_task["events"]} == {task}
        refused(await http.get("/api/projects/shop/events?after_id=-1"), 422, "invalid_input", "after_id")


# -------------------------------------------------------------------------------------- identity


async def test_identity_tokens_hosts_origins_and_unknown_paths(
    local: Coordinator, database: Database
) -> None:
    (task,) = await plan_shop(local, NewTask(title="A"))
    await local.planning.create_project(OPERATOR, name="other")
    _, worker = await register(local, "ann")
    _, planner = await register(local, "pat", role="planner", persona="planner")
    with serving(database.url, require_token=True) as server:
        async with server.client() as anonymous:
            response = await anonymous.get("/api/projects")
            refused(response, 401, "unauthorized", "requires a bearer token", "Authorization: Bearer")
            assert response.headers["www-authenticate"].startswith("Bearer")
            refused(
                await anonymous.get("/api/projects", headers={"Authorization": "Basic x"}),
                401,
                "unauthorized",
            )
            refused(
                await anonymous.get("/api/projects", headers={"Authorization": "Bearer yf_wrong"}),
                401,
                "unauthorized",
                "not valid",
            )
            assert answer(await anonymous.get("/api/openapi.json"))["openapi"].startswith("3.1")
        async with server.client(worker) as as_worker:
            assert answer(await as_worker.get("/api/projects/shop/tasks"))["total"] == 1
            refused(
                await as_worker.get("/api/projects/other/tasks"), 403, "permission_denied", "token belongs"
            )
            refused(
                await as_worker.post("/api/projects/shop/execution-plan"),
                403,
                "permission_denied",
                "may not make changes",
                "role planner",
            )
            refused(
                await as_worker.post(f"/api/tasks/{task}/assign", json={"agent_id": None}),
                403,
                "permission_denied",
            )
        async with server.client(planner) as as_planner:
            assert answer(await as_planner.patch(f"/api/tasks/{task}", json={"priority": 4}))["priority"] == 4
            refused(await as_planner.get("/api/tasks/999"), 404, "not_found")
    async with server_on_loopback(database) as loopback, loopback.client() as http:
        assert answer(await http.get("/api/projects"))["projects"]  # no token on loopback: the operator
        refused(await http.get("/api/projects", headers={"Host": "evil.example"}), 421, "invalid_host")
        refused(
            await http.post("/api/projects/shop/pause", headers={"Origin": "http://evil.example"}),
            403,
            "invalid_origin",
            "evil.example",
        )
        same_site = await http.post("/api/projects/shop/pause", headers={"Origin": loopback.url})
        assert answer(same_site)["status"] == "paused"
        refused(await http.get("/api/nothing/here"), 404, "not_found", "/api/nothing/here", "openapi.json")
        wrong = await http.delete("/api/projects/shop")
        refused(wrong, 405, "method_not_allowed", "GET")
        assert wrong.headers["allow"] == "GET"


# ------------------------------------------------------------------------------------- expertise


async def test_expertise_domains_entries_history_validation_and_improvement(
    local: Coordinator, server: Server
) -> None:
    await plan_shop(local, NewTask(title="A"))
    _, worker = await register(local, "ann")
    async with server.client() as http:
        domains = answer(await http.get("/api/projects/shop/expertise"))["domains"]
        assert "database" in [d["domain"] for d in domains] and all(d["version"] == 0 for d in domains)
        added = answer(
            await http.post(
                "/api/projects/shop/expertise/database/entries",
                json={"kind": "gotcha", "content": "SQLite needs BEGIN IMMEDIATE for writers"},
            ),
            201,
        )
        assert added["domain"] == "database" and added["version"] == 1
        answer(
            await http.post(
                "/api/projects/shop/expertise/database/entries",
                json={"kind": "failure", "content": "deadlock in claims", "fix": "lock rows in one order"},
            ),
            201,
        )
        view = answer(await http.get("/api/projects/shop/expertise/database"))
        assert view["version"] == 2 and len(view["entries"]) == 2
        history = answer(await http.get("/api/projects/shop/expertise/database/history", params={"limit": 1}))
        assert [h["version"] for h in history["history"]] == [2]
        validated = answer(await http.post("/api/projects/shop/expertise/database/validate"))
        assert validated["domain"] == "database"
        improved = answer(await http.post("/api/projects/shop/expertise/database/improve"))
        assert [r["domain"] for r in improved["reports"]] == ["database"]

        refused(await http.get("/api/projects/shop/expertise/astrology"), 422, "invalid_input", "astrology")
        refused(
            await http.post(
                "/api/projects/shop/expertise/database/entries", json={"kind": "rumour", "content": "x"}
            ),
            422,
            "invalid_input",
            "body.kind",
        )
        refused(
            await http.post(
                "/api/projects/shop/expertise/database/entries",
                json={"kind": "gotcha", "content": "x", "fix": "y"},
            ),
            422,
            "invalid_input",
            "fix",
        )
    async with server.client(worker) as as_worker:
        refused(
            await as_worker.post(
                "/api/projects/shop/expertise/database/entries", json={"kind": "gotcha", "content": "z"}
            ),
            403,
            "permission_denied",
        )
        assert answer(await as_worker.get("/api/projects/shop/expertise/database"))["version"] == 2
    assert (await kinds_of(local)).count("expertise_updated") == 2


async def test_a_server_consolidates_expertise_at_start_when_the_interval_is_session(
    local: Coordinator, database: Database
) -> None:
    await local.planning.create_project(OPERATOR, name="shop")
    await local.expertise.record_learning(OPERATOR, kind="pattern", content="small commits", domain="api")
    async with local.store.transaction() as tx:  # learned two days ago, never validated since
        await tx.execute("UPDATE expertise_files SET created_at = created_at - 172800")
    learning = local.config.learning.model_copy(update={"self_improve_interval": "session"})

    async def validated() -> bool:
        async with local.store.transaction(write=False) as tx:
            return (
                await tx.fetchval("SELECT validated_at FROM expertise_files WHERE domain = 'api'") is not None
            )

    assert not await validated()
    with serving(database.url, config=local.config.model_copy(update={"learning": learning})):
        await until(validated, "the server's expertise upkeep")
    kinds = [event.kind for event in await read_events(local.store, project_id=None)]
    assert "expertise_validated" in kinds


async def test_expertise_entries_are_edited_and_removed(local: Coordinator, server: Server) -> None:
    await plan_shop(local, NewTask(title="A"))
    _, worker = await register(local, "ann")
    entries = "/api/projects/shop/expertise/database/entries"
    async with server.client() as http:
        paths = answer(await http.get("/api/openapi.json"))["paths"]
        assert {"patch", "delete"} <= set(
            paths["/api/projects/{project}/expertise/{domain}/entries/{entry_id}"]
        )
        answer(await http.post(entries, json={"kind": "gotcha", "content": "SQLite locks the file"}), 201)
        answer(await http.post(entries, json={"kind": "failure", "content": "deadlock in claims"}), 201)
        edited = answer(
            await http.patch(f"{entries}/0", json={"content": "SQLite locks the whole file", "version": 2})
        )
        assert edited["version"] == 3 and edited["entry"]["content"] == "SQLite locks the whole file"
        assert edited["diff"]["updated"][0]["was"] == "SQLite locks the file"
        fixed = answer(await http.patch(f"{entries}/1", json={"fix": "lock rows in one order"}))
        assert fixed["entry"]["fix"] == "lock rows in one order"
        removed = answer(await http.delete(f"{entries}/0", params={"version": 4}))
        assert removed["version"] == 5 and removed["entry"] is None
        history = answer(await http.get("/api/projects/shop/expertise/database/history"))["history"]
        assert [h["change_type"] for h in history[:3]] == ["removed", "edited", "edited"]
        view = answer(await http.get("/api/projects/shop/expertise/database"))
        assert [e["content"] for e in view["entries"]] == ["deadlock in claims"]

        refused(await http.patch(f"{entries}/9", json={"content": "x"}), 404, "not_found", "entry 9")
        refused(await http.delete("/api/projects/shop/expertise/api/entries/0"), 404, "not_found", "'api'")
        refused(await http.patch(f"{entries}/0", json={"content": " "}), 422, "invalid_input", "content")
        refused(await http.delete(f"{entries}/0", params={"version": 1}), 409, "state_conflict", "version 5")
    async with server.client(worker) as as_worker:
        refused(await as_worker.patch(f"{entries}/0", json={"content": "z"}), 403, "permission_denied")
        refused(await as_worker.delete(f"{entries}/0"), 403, "permission_denied")
    assert (await kinds_of(local)).count("expertise_updated") == 5
