"""The cost ledger and the budget, on both backends, against hand-computed figures."""

from __future__ import annotations

import pytest

from coordinator.config import Config
from coordinator.context import OPERATOR, agent_caller
from coordinator.errors import InvalidInput, NotFound
from coordinator.events import read_events
from coordinator.planning import NewTask
from coordinator.service import Coordinator
from coordinator.work import Claimed, NoWork
from tests.conftest import Database, ManualClock


async def test_costs_are_priced_and_aggregated(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    (task,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="x")], project="p")
    worker = agent_caller((await coord.agents.register(OPERATOR, persona="implementer")).agent)
    # sonnet: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million tokens
    entry = await coord.costs.record(
        worker,
        model="claude-sonnet-4-5",
        input_tokens=1000,
        output_tokens=500,
        cache_read_tokens=2000,
        cache_write_tokens=400,
        task_id=task.id,
    )
    assert entry.cost_usd == pytest.approx(0.003 + 0.0075 + 0.0006 + 0.0015)
    await coord.costs.record(worker, model="haiku", input_tokens=10_000, output_tokens=1000)  # 0.01 + 0.005
    await coord.costs.record(OPERATOR, model="gpt-x", cost_usd=0.5, operation="planning")
    summary = await coord.costs.summary(OPERATOR)
    assert summary.total_usd == pytest.approx(0.0126 + 0.015 + 0.5)
    assert [line.key for line in summary.by_model] == ["gpt-x", "haiku", "claude-sonnet-4-5"]
    assert {line.key: line.operations for line in summary.by_agent} == {str(worker.agent.id): 2, "none": 1}  # type: ignore[union-attr]
    assert summary.budget_limit_usd is None and summary.budget_used_fraction is None


async def test_bad_cost_records_are_refused(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    for kwargs, field in (
        ({"model": "mystery-model", "input_tokens": 5}, "model"),
        ({"model": "sonnet", "input_tokens": -1}, "input_tokens"),
        ({"model": "sonnet", "cost_usd": float("nan")}, "cost_usd"),
        ({"model": " "}, "model"),
    ):
        with pytest.raises(InvalidInput) as caught:
            await coord.costs.record(OPERATOR, **kwargs)
        assert field in str(caught.value)
    with pytest.raises(NotFound):
        await coord.costs.record(OPERATOR, model="sonnet", task_id=999)
    assert (await coord.costs.summary(OPERATOR)).total_usd == 0


async def test_with_cost_tracking_off_records_are_checked_and_not_kept(
    database: Database, clock: ManualClock
) -> None:
    config = Config.model_validate({"cost": {"enabled": False}})
    coord = await Coordinator.open(database.url, config, clock=clock)
    try:
        await coord.planning.create_project(OPERATOR, name="p")
        (task,) = await coord.planning.create_tasks(OPERATOR, [NewTask(title="x")], project="p")
        worker = agent_caller((await coord.agents.register(OPERATOR, persona="implementer")).agent)
        entry = await coord.costs.record(worker, model="sonnet", input_tokens=1000, task_id=task.id)
        assert (entry.recorded, entry.id, entry.input_tokens) == (False, None, 1000)
        assert entry.cost_usd == pytest.approx(0.003)
        local = await coord.costs.record(worker, model="local-llm", output_tokens=5)  # no price: fine
        assert local.cost_usd is None and not local.recorded
        with pytest.raises(NotFound):
            await coord.costs.record(worker, model="sonnet", task_id=999)
        with pytest.raises(InvalidInput, match="input_tokens"):
            await coord.costs.record(worker, model="sonnet", input_tokens=-1)
        summary = await coord.costs.summary(OPERATOR)
        assert not summary.tracking and summary.total_usd == 0 and summary.by_model == []
        kinds = {e.kind for e in await read_events(coord.store, project_id=task.project_id)}
        assert "cost_recorded" not in kinds
        assert isinstance(await coord.work.claim(worker), Claimed)
    finally:
        await coord.close()


async def test_budget_warns_once_then_stops_claims(database: Database, clock: ManualClock) -> None:
    config = Config.model_validate({"cost": {"budget_limit_usd": 1.0, "warn_at_fraction": 0.8}})
    coord = await Coordinator.open(database.url, config, clock=clock)
    try:
        await coord.planning.create_project(OPERATOR, name="p")
        await coord.planning.create_tasks(OPERATOR, [NewTask(title=f"t{i}") for i in range(3)], project="p")
        worker = agent_caller((await coord.agents.register(OPERATOR, persona="implementer")).agent)
        for _ in range(5):
            await coord.costs.record(worker, model="sonnet", cost_usd=0.3)  # 0.3, 0.6, 0.9, 1.2, 1.5
        kinds = [e.kind for e in await read_events(coord.store, project_id=None, limit=1000)]
        assert kinds.count("budget_warning") == 1 and kinds.count("budget_exhausted") == 1
        assert kinds.index("budget_warning") < kinds.index("budget_exhausted")
        outcome = await coord.work.claim(worker)
        assert isinstance(outcome, NoWork) and outcome.reason == "budget_exhausted"
        assert (await coord.costs.summary(OPERATOR)).budget_used_fraction == pytest.approx(1.5)
    finally:
        await coord.close()


async def test_no_budget_means_claims_go_on(coord: Coordinator) -> None:
    await coord.planning.create_project(OPERATOR, name="p")
    await coord.planning.create_tasks(OPERATOR, [NewTask(title="x")], project="p")
    worker = agent_caller((await coord.agents.register(OPERATOR, persona="implementer")).agent)
    await coord.costs.record(worker, model="opus", input_tokens=10_000_000)
    assert isinstance(await coord.work.claim(worker), Claimed)
