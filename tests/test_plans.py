"""Importing plans, the stored execution plan and its patches, on both backends."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.config import Config
from coordinator.context import OPERATOR, agent_caller
from coordinator.errors import CycleError, InvalidInput, NotFound, YokeflowError
from coordinator.events import read_events
from coordinator.execution_plan import PlanPatch
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from coordinator.work import Claimed
from tests.conftest import Database

SHOP = (Path(__file__).parent / "data" / "shop_plan.yaml").read_text()


async def _counts(coord: Coordinator) -> dict[str, int]:
    async with coord.store.transaction(write=False) as tx:
        return {
            table: int(await tx.fetchval(f"SELECT COUNT(*) FROM {table}"))
            for table in (
                "projects",
                "epics",
                "tasks",
                "task_dependencies",
                "epic_dependencies",
                "task_tests",
                "events",
            )
        }


async def test_import_creates_everything_and_plans_it(coord: Coordinator) -> None:
    imported = await coord.plans.import_plan(OPERATOR, SHOP)
    ids = imported.task_ids
    assert imported.project.name == "shop" and len(imported.epic_ids) == 4 and len(ids) == 12
    counts = await _counts(coord)
    assert (
        counts["task_dependencies"] == 10 and counts["epic_dependencies"] == 1 and counts["task_tests"] == 1
    )
    plan = imported.plan
    batch = {t.id: t.batch for t in plan.tasks}
    schema, users, orders = ids["epics[0].tasks[0]"], ids["epics[1].tasks[0]"], ids["epics[1].tasks[1]"]
    # the API epic waits for the whole database epic; users and orders share api/routes.py
    assert batch[users] > batch[schema] and batch[orders] > batch[schema]
    assert batch[users] != batch[orders]
    assert any(c.kind == "same_file" and set(c.tasks) == {users, orders} for c in plan.conflicts)
    assert "api/users.py" in plan.task(users).predicted_files
    stored = await coord.plans.get(OPERATOR)
    assert stored.model_dump() == plan.model_dump()
    async with coord.store.transaction(write=False) as tx:
        rows = await tx.fetch("SELECT id, batch_number FROM tasks")
        assert {r["id"]: r["batch_number"] for r in rows} == batch
        assert await tx.fetchval("SELECT COUNT(*) FROM parallel_batches") == len(plan.batches)
        kinds = [e.kind for e in await read_events(coord.store, project_id=imported.project.id, limit=1000)]
    assert kinds.count("task_created") == 12 and kinds[-1] == "plan_built"
    suggested = [(s.before.path, s.after.path) for s in imported.suggested_dependencies]
    assert suggested == [("epics[3].tasks[1]", "epics[3].tasks[3]")]  # "once the CI pipeline is done"
    assert plan.makespan.lower_bound <= plan.makespan.estimate <= plan.makespan.serial


async def test_parallel_strategy_decides_how_the_plan_groups_worktrees(database: Database) -> None:
    config = Config.model_validate({"parallel": {"strategy": "by_task"}})
    coord = await Coordinator.open(database.url, config)
    try:
        imported = await coord.plans.import_plan(OPERATOR, SHOP)
        plan = await coord.plans.build(OPERATOR)
        assert imported.plan.strategy == plan.strategy == "by_task"
        assert all(name.split("-")[1] == "task" for name in plan.worktrees)
        first_batch = plan.batches[0].tasks
        assert len({plan.task(t).worktree for t in first_batch}) == min(len(first_batch), 4)
    finally:
        await coord.close()


async def test_claims_follow_the_imported_plan(coord: Coordinator) -> None:
    imported = await coord.plans.import_plan(OPERATOR, SHOP)
    registered = [
        await coord.agents.register(OPERATOR, persona="implementer", name=f"w{i}") for i in range(4)
    ]
    workers = [agent_caller(r.agent) for r in registered]
    first = [await coord.work.claim(w) for w in workers]
    leased = {c.task.id for c in first if isinstance(c, Claimed)}
    ids = imported.task_ids
    # the schema heads the longest chain, so it is claimed first; nothing of the API epic yet
    assert ids["epics[0].tasks[0]"] in leased
    assert not leased & {ids["epics[1].tasks[0]"], ids["epics[1].tasks[1]"], ids["epics[1].tasks[2]"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("epics: [ {name: a, tasks: [ {title: x ] }", "line"),
        ('{"epics": [}', "line"),
        ("epics:\n  - name: a\n    tasks:\n      - {title: x, estimate: -1}\n", "epics[0].tasks[0].estimate"),
        ("epics:\n  - name: a\n    tasks:\n      - {title: x, depends_on: [nowhere]}\n", "nowhere"),
        (
            "epics:\n  - name: a\n    tasks:\n      - {key: p, title: p, depends_on: [q]}\n"
            "      - {key: q, title: q, depends_on: [p]}\n",
            "->",
        ),
        ("epics:\n  - name: a\n    tasks:\n      - {title: x, depends_on: [999999]}\n", "999999"),
        ("epics:\n  - name: a\n    tasks:\n      - {title: x, persona: wizard}\n", "wizard"),
    ],
)
async def test_a_bad_plan_names_the_problem_and_imports_nothing(
    coord: Coordinator, text: str, expected: str
) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    before = await _counts(coord)
    with pytest.raises(YokeflowError) as caught:
        await coord.plans.import_plan(OPERATOR, text, project="p")
    assert expected in str(caught.value)
    assert await _counts(coord) == before


async def test_patches_are_validated_recorded_and_kept(coord: Coordinator) -> None:
    imported = await coord.plans.import_plan(OPERATOR, SHOP)
    ids = imported.task_ids
    docker, docs_task = ids["epics[3].tasks[0]"], ids["epics[3].tasks[3]"]
    patched = await coord.plans.patch(
        OPERATOR, PlanPatch(sequential=[(docs_task, docker)], worktrees={docker: "infra"})
    )
    assert patched.task(docker).batch > patched.task(docs_task).batch
    assert patched.task(docker).worktree == "infra"
    async with coord.store.transaction(write=False) as tx:
        assert (
            await tx.fetchval(
                "SELECT kind FROM task_dependencies WHERE task_id = $1 AND depends_on_task_id = $2",
                docker,
                docs_task,
            )
            == "hard"
        )
    rebuilt = await coord.plans.build(OPERATOR)
    assert rebuilt.task(docker).worktree == "infra"  # adjustments survive a rebuild
    before = await _counts(coord)
    with pytest.raises(CycleError):
        await coord.plans.patch(OPERATOR, PlanPatch(sequential=[(docker, docs_task)]))
    with pytest.raises(NotFound):
        await coord.plans.patch(OPERATOR, PlanPatch(worktrees={424242: "x"}))
    with pytest.raises(InvalidInput):
        await coord.plans.patch(OPERATOR, PlanPatch(worktrees={docker: "../escape"}))
    assert await _counts(coord) == before


async def test_graph_views_and_validation(coord: Coordinator) -> None:
    await coord.plans.import_plan(OPERATOR, SHOP)
    mermaid = await coord.plans.graph_view(OPERATOR, format="mermaid")
    assert isinstance(mermaid, str) and mermaid.startswith(("flowchart", "graph"))
    ascii_view = await coord.plans.graph_view(OPERATOR, format="ascii")
    assert isinstance(ascii_view, str) and "Create the schema" in ascii_view
    as_json = await coord.plans.graph_view(OPERATOR, format="json")
    assert isinstance(as_json, dict) and as_json["critical_path"]
    path = await coord.plans.critical_path(OPERATOR)
    assert path.length >= 6  # schema(2) -> users(3) -> auth -> login -> e2e ... by estimates
    assert (await coord.plans.validate(OPERATOR)).ok
    assert len(await coord.plans.batches(OPERATOR)) >= 4


async def test_get_without_a_plan_says_how_to_build_one(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    with pytest.raises(NotFound) as caught:
        await coord.plans.get(OPERATOR)
    assert "build_execution_plan" in str(caught.value)


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """(n, edges) with edges (before, after) going from a lower to a higher index: always acyclic."""
    n = draw(st.integers(min_value=2, max_value=12))
    pairs = [(i, j) for j in range(n) for i in range(j)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=20))
    return n, edges


def _reachable_pairs(n: int, edges: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """(x, y) such that y depends on x through one or more edges."""
    successors: dict[int, set[int]] = {i: set() for i in range(n)}
    for before, after in edges:
        successors[before].add(after)
    pairs: set[tuple[int, int]] = set()
    for start in range(n):
        stack, seen = list(successors[start]), set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(successors[node])
        pairs |= {(start, node) for node in seen}
    return pairs


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dag=random_dags(), data=st.data())
async def test_stored_graphs_keep_their_properties(
    coord: Coordinator, dag: tuple[int, list[tuple[int, int]]], data: st.DataObject
) -> None:
    """On the real store: batches respect every edge, and an edge closing a cycle is refused without a trace."""
    n, edges = dag
    project = await coord.planning.create_project(OPERATOR, name=f"p{secrets.token_hex(4)}")
    tasks = await coord.planning.create_tasks(
        OPERATOR, [NewTask(title=f"t{i}") for i in range(n)], project=project.id
    )
    ids = [t.id for t in tasks]
    for before, after in edges:
        await coord.planning.add_dependency(OPERATOR, task_id=ids[after], depends_on=ids[before])
    batches = await coord.plans.batches(OPERATOR, project=project.id)
    level = {task: number for number, batch in enumerate(batches) for task in batch}
    assert all(level[ids[before]] < level[ids[after]] for before, after in edges)
    reachable = _reachable_pairs(n, edges)
    if reachable:
        before, after = data.draw(st.sampled_from(sorted(reachable)))
        async with coord.store.transaction(write=False) as tx:
            count = await tx.fetchval("SELECT COUNT(*) FROM task_dependencies")
        with pytest.raises(CycleError) as caught:
            await coord.planning.add_dependency(OPERATOR, task_id=ids[before], depends_on=ids[after])
        assert caught.value.cycle[0] == caught.value.cycle[-1]
        async with coord.store.transaction(write=False) as tx:
            assert await tx.fetchval("SELECT COUNT(*) FROM task_dependencies") == count


async def test_batches_are_announced_when_their_first_task_starts_and_their_last_one_ends(
    coord: Coordinator,
) -> None:
    imported = await coord.plans.import_plan(OPERATOR, SHOP)
    batch_of = {t.id: t.batch for t in imported.plan.tasks}
    first_batch = [task_id for task_id, batch in batch_of.items() if batch == min(batch_of.values())]
    registered = await coord.agents.register(OPERATOR, persona="implementer", project="shop")
    worker = agent_caller(registered.agent)
    for task_id in first_batch:
        outcome = await coord.work.claim(worker, task_id=task_id)
        assert isinstance(outcome, Claimed), outcome
        await coord.work.complete(worker, task_id=task_id, lease_id=outcome.lease.lease_id)
    events = await read_events(coord.store, project_id=imported.project.id, limit=1000)
    batch_events = [(e.kind, e.payload["batch"], e.task_id) for e in events if e.kind.startswith("batch_")]
    assert batch_events == [
        ("batch_started", min(batch_of.values()), first_batch[0]),
        ("batch_completed", min(batch_of.values()), first_batch[-1]),
    ]
