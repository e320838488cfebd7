"""Cost reports on both backends: the breakdown, the forecast and the budget, against hand-computed figures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from mcp import Client

from coordinator.config import Config
from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.cost_reports import CostShare
from coordinator.events import read_events
from coordinator.planning import NewTask
from coordinator.records import Task
from coordinator.service import Coordinator
from coordinator.work import Claimed, NoWork
from tests.conftest import Database, ManualClock
from tests.cost_support import work_task
from tests.test_mcp_support import ok, refused
from tests.test_model_selection import HIGH, LOW, MEDIUM
from tools.costs_tools import TOOLS as COST_TOOLS
from tools.runtime import Runtime
from tools.server import CoordinatorServer


def _lines(shares: list[CostShare]) -> list[tuple[str, str | None, int, int, float]]:
    return [(s.key, s.label, s.operations, s.tasks, round(s.cost_usd, 6)) for s in shares]


async def _worker(coord: Coordinator, persona: str) -> Caller:
    return agent_caller((await coord.agents.register(OPERATOR, persona=persona, project="p")).agent)


async def test_breakdown_by_model_persona_epic_and_type(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    epic = await coord.planning.create_epic(OPERATOR, name="Backend", project="p")
    t1, t2, t3 = await coord.planning.create_tasks(
        OPERATOR,
        [
            NewTask(title="a", epic_id=epic.id, domain="api"),
            NewTask(title="b", epic_id=epic.id, domain="database"),
            NewTask(title="c"),
        ],
        project="p",
    )
    implementer, reviewer = await _worker(coord, "implementer"), await _worker(coord, "reviewer")
    await coord.costs.record(implementer, model="sonnet", cost_usd=0.30, task_id=t1.id)
    await coord.costs.record(implementer, model="opus", cost_usd=1.00, task_id=t2.id)
    await coord.costs.record(reviewer, model="haiku", cost_usd=0.05, task_id=t1.id)
    await coord.costs.record(reviewer, model="sonnet", cost_usd=0.20, task_id=t3.id)
    await coord.costs.record(OPERATOR, model="sonnet", cost_usd=0.45, operation="planning")
    report = await coord.costs.breakdown(OPERATOR)
    assert report.total_usd == pytest.approx(2.00)
    assert report.budget_limit_usd is None and report.budget_used_fraction is None
    assert _lines(report.by_model) == [
        ("opus", None, 1, 1, 1.00),
        ("sonnet", None, 3, 2, 0.95),
        ("haiku", None, 1, 1, 0.05),
    ]
    assert _lines(report.by_persona) == [
        ("implementer", None, 2, 2, 1.30),
        ("none", None, 1, 0, 0.45),
        ("reviewer", None, 2, 2, 0.25),
    ]
    assert _lines(report.by_epic) == [(str(epic.id), "Backend", 3, 2, 1.35), ("none", None, 2, 1, 0.65)]
    assert _lines(report.by_type) == [
        ("database", None, 1, 1, 1.00),
        ("none", None, 1, 0, 0.45),
        ("api", None, 2, 1, 0.35),
        ("general", None, 1, 1, 0.20),
    ]
    assert report.by_model[0].share == pytest.approx(0.5)
    assert sum(s.share for s in report.by_type) == pytest.approx(1.0)


@pytest.fixture
async def budgeted(database: Database, clock: ManualClock) -> AsyncIterator[Coordinator]:
    config = Config.model_validate(
        {"cost": {"budget_limit_usd": 5.0, "warn_at_fraction": 0.75, "history_min_samples": 2}}
    )
    coord = await Coordinator.open(database.url, config, clock=clock)
    try:
        await coord.planning.create_project(OPERATOR, name="p")
        yield coord
    finally:
        await coord.close()


async def _tasks(coord: Coordinator, *specs: NewTask) -> list[Task]:
    return await coord.planning.create_tasks(OPERATOR, list(specs), project="p")


async def test_forecast_by_band_then_project_mean(budgeted: Coordinator) -> None:
    coord = budgeted
    worker = await _worker(coord, "implementer")
    once = {"max_attempts": 1}
    l1, l2, _, _, l5, l6 = await _tasks(coord, *[LOW.model_copy(update=once)] * 6)  # l3, l4 stay pending
    m1, _, _ = await _tasks(coord, *[MEDIUM] * 3)
    await _tasks(coord, HIGH)
    (dropped,) = await _tasks(coord, MEDIUM)
    await work_task(coord, worker, l1, model="haiku", cost_usd=0.10)
    await work_task(coord, worker, l2, model="haiku", cost_usd=0.30)
    await work_task(coord, worker, m1, model="sonnet", cost_usd=0.90)
    await work_task(
        coord, worker, l5, model="haiku", cost_usd=0.05, outcome="failed"
    )  # remaining, not measured
    claimed = await coord.work.claim(worker, task_id=l6.id)
    assert isinstance(claimed, Claimed)
    await coord.work.complete(worker, task_id=l6.id, lease_id=claimed.lease.lease_id)  # done without cost
    await coord.work.cancel(OPERATOR, task_id=dropped.id)
    await coord.costs.record(OPERATOR, model="sonnet", cost_usd=0.15, operation="planning")

    forecast = await coord.costs.forecast(OPERATOR)
    # measured done tasks: l1 0.10, l2 0.30 (low), m1 0.90 (medium); project mean 1.30 / 3
    mean = 1.30 / 3
    bands = {b.band: b for b in forecast.bands}
    low, medium, high = bands["low"], bands["medium"], bands["high"]
    assert (low.method, low.sample_tasks, low.remaining_tasks) == ("band", 2, 3)  # l3, l4, l5
    assert low.unit_cost_usd == pytest.approx(0.20) and low.forecast_usd == pytest.approx(0.60)
    assert (medium.method, medium.sample_tasks, medium.remaining_tasks) == ("project_mean", 3, 2)  # m2, m3
    assert medium.unit_cost_usd == pytest.approx(mean) and medium.forecast_usd == pytest.approx(2 * mean)
    assert (high.method, high.remaining_tasks) == ("project_mean", 1)
    assert high.forecast_usd == pytest.approx(mean)
    assert forecast.spent_usd == pytest.approx(1.50)  # 0.10 + 0.30 + 0.90 + 0.05 + 0.15
    assert (forecast.remaining_tasks, forecast.measured_done_tasks) == (6, 3)
    assert forecast.forecast_usd == pytest.approx(0.60 + 3 * mean)  # 1.90
    assert forecast.projected_total_usd == pytest.approx(3.40)
    assert forecast.budget_limit_usd == 5.0
    assert forecast.projected_budget_fraction == pytest.approx(0.68) and forecast.over_budget is False


async def test_forecast_per_estimate_unit_then_none(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    a, _, _ = await _tasks(coord, NewTask(title="a", estimate=3), NewTask(title="b", estimate=2), HIGH)
    empty = await coord.costs.forecast(OPERATOR)
    assert empty.forecast_usd is None and empty.projected_total_usd is None and empty.over_budget is None
    assert {band.method for band in empty.bands} == {"none"} and empty.remaining_tasks == 3
    worker = await _worker(coord, "implementer")
    claimed = await coord.work.claim(worker, task_id=a.id)
    assert isinstance(claimed, Claimed)
    await coord.costs.record(
        worker, model="sonnet", cost_usd=0.60, task_id=a.id
    )  # a in progress: 0.20 per unit
    forecast = await coord.costs.forecast(OPERATOR)
    assert {band.method for band in forecast.bands} == {"per_estimate_unit"}
    assert {band.sample_tasks for band in forecast.bands} == {1}
    assert forecast.forecast_usd == pytest.approx((3 + 2 + 5) * 0.20)  # a counts in full
    assert forecast.projected_total_usd == pytest.approx(0.60 + 2.0)
    assert forecast.budget_limit_usd is None and forecast.over_budget is None


async def test_budget_warns_at_the_fraction_then_claims_stop(budgeted: Coordinator) -> None:
    coord = budgeted
    await _tasks(coord, LOW, LOW)
    worker = await _worker(coord, "implementer")
    await coord.costs.record(worker, model="sonnet", cost_usd=2.50)  # 50%
    await coord.costs.record(worker, model="sonnet", cost_usd=1.25)  # 75%: exactly warn_at_fraction
    events = [
        e for e in await read_events(coord.store, project_id=None, limit=1000) if e.kind.startswith("budget")
    ]
    assert [(e.kind, e.payload) for e in events] == [
        ("budget_warning", {"spent_usd": 3.75, "budget_limit_usd": 5.0, "fraction": 0.75})
    ]
    claimed = await coord.work.claim(worker)
    assert isinstance(claimed, Claimed)
    await coord.costs.record(worker, model="sonnet", cost_usd=1.25, task_id=claimed.task.id)  # 100%
    events = [
        e for e in await read_events(coord.store, project_id=None, limit=1000) if e.kind.startswith("budget")
    ]
    assert [e.kind for e in events] == ["budget_warning", "budget_exhausted"]
    assert events[1].payload == {"spent_usd": 5.0, "budget_limit_usd": 5.0, "fraction": 1.0}
    outcome = await coord.work.claim(worker)
    assert isinstance(outcome, NoWork) and outcome.reason == "budget_exhausted"
    forecast = await coord.costs.forecast(OPERATOR)
    # no task is done: 1.25 per estimate unit (the claimed task's), two tasks of estimate 1 left
    assert forecast.spent_usd == 5.0 and forecast.over_budget is True
    assert forecast.projected_total_usd == pytest.approx(5.0 + 2 * 1.25)
    assert (await coord.costs.breakdown(OPERATOR)).budget_used_fraction == pytest.approx(1.0)


async def test_the_cost_tools_answer_over_mcp(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    (task,) = await _tasks(coord, MEDIUM)
    await work_task(coord, await _worker(coord, "implementer"), task, model="sonnet", cost_usd=0.40)
    await _tasks(coord, MEDIUM)

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[Runtime]:
        yield Runtime(coord)

    server = CoordinatorServer("costs", lifespan=lifespan, tools=[spec.tool for spec in COST_TOOLS])
    async with Client(server) as client:
        forecast = await ok(client, "get_cost_forecast", {"project": "p"})
        assert forecast["forecast_usd"] == pytest.approx(0.40) and forecast["remaining_tasks"] == 1
        stats = await ok(client, "get_model_stats", {})
        (record,) = stats["records"]
        assert (record["model"], record["band"], record["domain"], record["counts"]) == (
            "sonnet",
            "medium",
            "api",
            False,
        )
        await refused(client, "get_model_stats", {"project": "nope"}, "project 'nope' does not exist")
