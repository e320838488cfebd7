"""Model selection on both backends: complexity tiers, history, the budget and overrides."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.complexity import TaskShape, score_task
from coordinator.config import Config, CostConfig
from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.model_selection import ModelRecommendation, recommend_model
from coordinator.planning import NewTask
from coordinator.records import Task
from coordinator.service import Coordinator
from coordinator.storage.base import encode_json
from tests.conftest import ManualClock
from tests.cost_support import work_task

# Hand-computed scores (weights 0.35 / 0.25 / 0.20 / 0.20):
# low: no reasoning words (typo is routine), code 0.5*1/5 = 0.1, domain general 0.2,
#   context 0.5*18/4000 = 0.00225 → 0.025 + 0.04 + 0.00045 = 0.06545
LOW = NewTask(title="Fix typo in README")
# medium: code 0.5*5/5 + 0.5*6/6 = 1, domain api 0.4, context 0.5*19/4000 → 0.25 + 0.08 + 0.000475
MEDIUM = NewTask(
    title="Add a REST endpoint", domain="api", estimate=5, predicted_files=[f"api/f{i}.py" for i in range(6)]
)
# high: reasoning design, distributed, protocol, migrat, race → 1; code 1; domain database 0.7
HIGH = NewTask(
    title="Design the distributed protocol, migrate the store, handle races",
    domain="database",
    estimate=5,
    predicted_files=[f"db/f{i}.py" for i in range(6)],
)


def _config(**cost: Any) -> Config:
    return Config.model_validate({"cost": cost})


async def _project(coord: Coordinator) -> Caller:
    await coord.planning.create_project(OPERATOR, name="p")
    return agent_caller((await coord.agents.register(OPERATOR, persona="implementer")).agent)


async def _task(coord: Coordinator, spec: NewTask) -> Task:
    (task,) = await coord.planning.create_tasks(OPERATOR, [spec], project="p")
    return task


async def _recommend(coord: Coordinator, task: Task, config: Config) -> ModelRecommendation:
    async with coord.store.transaction(write=False) as tx:
        fresh = Task.model_validate(await tx.fetchrow("SELECT * FROM tasks WHERE id = $1", task.id))
        return await recommend_model(tx, task=fresh, config=config)


def test_complexity_features_and_score_by_hand() -> None:
    cost = CostConfig()
    low = score_task(TaskShape("Fix typo in README", 1.0, 0, 0, None), cost)
    assert low.score == pytest.approx(0.06545, abs=1e-4) and low.band == "low"
    assert low.features["reasoning_depth"] == 0.0 and low.features["domain_specificity"] == 0.2
    medium = score_task(TaskShape("Add a REST endpoint", 5.0, 6, 0, "api"), cost)
    assert medium.score == pytest.approx(0.330475, abs=1e-4) and medium.band == "medium"
    deep = score_task(TaskShape(HIGH.title, 5.0, 6, 2, "database"), cost)
    # context: 0.5*len/4000 + 0.5*2/4
    context = 0.5 * len(HIGH.title) / 4000 + 0.25
    assert deep.score == pytest.approx(0.35 + 0.25 + 0.2 * 0.7 + 0.2 * context, abs=1e-4)
    assert deep.band == "high"
    assert score_task(TaskShape("x", 1.0, 0, 0, None), CostConfig(tier_sonnet_at=0.01)).band == "medium"


async def test_without_history_the_score_picks_the_tier(coord: Coordinator) -> None:
    await _project(coord)
    config = Config()
    for spec, model in ((LOW, "haiku"), (MEDIUM, "sonnet"), (HIGH, "opus")):
        rec = await _recommend(coord, await _task(coord, spec), config)
        assert (rec.model, rec.tier, rec.source) == (model, model, "score")
        assert "no model has 5 finished attempts" in rec.reason
    blocker = await _task(coord, LOW)
    spec = MEDIUM.model_copy(update={"depends_on": [blocker.id]})
    rec = await _recommend(coord, await _task(coord, spec), config)
    assert rec.score == pytest.approx(0.330475 + 0.2 * 0.5 * 1 / 4, abs=1e-4)  # one dependency


async def test_a_cheaper_model_that_succeeds_as_often_wins(coord: Coordinator) -> None:
    worker = await _project(coord)
    for _ in range(5):
        await work_task(coord, worker, await _task(coord, MEDIUM), model="claude-haiku-4-5", cost_usd=0.01)
        await work_task(coord, worker, await _task(coord, MEDIUM), model="sonnet", cost_usd=0.05)
    rec = await _recommend(coord, await _task(coord, MEDIUM), Config())
    assert (rec.model, rec.source) == ("haiku", "history")
    assert "haiku succeeded in 5 of 5 attempts at $0.0100 per task" in rec.reason
    # another domain has no history: the score decides there
    other = await _task(coord, MEDIUM.model_copy(update={"domain": "frontend"}))
    assert (await _recommend(coord, other, Config())).source == "score"


async def test_a_cheaper_model_that_fails_more_often_loses(coord: Coordinator) -> None:
    worker = await _project(coord)
    one_try = MEDIUM.model_copy(update={"max_attempts": 1})
    for outcome in ("done", "done", "done", "failed", "failed"):  # haiku: 3 of 5 = 60%
        await work_task(
            coord, worker, await _task(coord, one_try), model="haiku", cost_usd=0.01, outcome=outcome
        )
    for _ in range(5):  # sonnet: 5 of 5
        await work_task(coord, worker, await _task(coord, one_try), model="sonnet", cost_usd=0.05)
    rec = await _recommend(coord, await _task(coord, MEDIUM), Config())
    assert (rec.model, rec.source) == ("sonnet", "history")
    # a tolerance of 0.4 forgives haiku's 40 points
    rec = await _recommend(coord, await _task(coord, MEDIUM), _config(history_tolerance=0.4))
    assert (rec.model, rec.source) == ("haiku", "history")


async def test_below_the_minimum_sample_history_does_not_count(coord: Coordinator) -> None:
    worker = await _project(coord)
    for _ in range(4):
        await work_task(coord, worker, await _task(coord, MEDIUM), model="haiku", cost_usd=0.01)
    target = await _task(coord, MEDIUM)
    rec = await _recommend(coord, target, Config())
    assert (rec.model, rec.source) == ("sonnet", "score")
    rec = await _recommend(coord, target, _config(history_min_samples=4))
    assert (rec.model, rec.source) == ("haiku", "history")


async def test_model_stats_count_attempts_and_costs(coord: Coordinator, clock: ManualClock) -> None:
    worker = await _project(coord)
    retried = await _task(coord, MEDIUM)
    await work_task(coord, worker, retried, model="haiku", cost_usd=0.02, outcome="retry", clock=clock)
    await work_task(coord, worker, retried, model="haiku", cost_usd=0.02)
    for _ in range(3):
        await work_task(coord, worker, await _task(coord, MEDIUM), model="haiku", cost_usd=0.01)
    await work_task(coord, worker, await _task(coord, LOW), model="sonnet", cost_usd=0.03)
    await _task(coord, MEDIUM)  # pending: not history
    stats = await coord.costs.model_stats(OPERATOR)
    assert stats.min_samples == 5 and stats.tolerance == 0.05
    by_cell = {(r.domain, r.band, r.model): r for r in stats.records}
    haiku = by_cell[("api", "medium", "haiku")]
    assert (haiku.tasks, haiku.attempts, haiku.successes) == (4, 5, 4)
    assert haiku.success_rate == pytest.approx(0.8)
    assert haiku.cost_usd == pytest.approx(0.07) and haiku.cost_per_task == pytest.approx(0.0175)
    assert haiku.counts
    sonnet = by_cell[("general", "low", "sonnet")]
    assert (sonnet.tasks, sonnet.attempts, sonnet.success_rate, sonnet.counts) == (1, 1, 1.0, False)
    assert len(by_cell) == 2


async def test_the_budget_downgrades_as_it_runs_out(coord: Coordinator) -> None:
    await _project(coord)
    high, medium = await _task(coord, HIGH), await _task(coord, MEDIUM)
    budget = _config(budget_limit_usd=10.0, warn_at_fraction=0.8, cheapest_at_fraction=0.95)
    await coord.costs.record(OPERATOR, model="sonnet", cost_usd=7.9)  # 79%: nothing changes
    assert (await _recommend(coord, high, budget)).model == "opus"
    await coord.costs.record(OPERATOR, model="sonnet", cost_usd=0.6)  # 85%: one tier down
    rec = await _recommend(coord, high, budget)
    assert (rec.model, rec.source) == ("sonnet", "budget")
    assert rec.reason == (
        "$8.50 of the $10.00 budget is spent (85%), past cost.warn_at_fraction (0.8), "
        "so opus is downgraded to sonnet."
    )
    assert (await _recommend(coord, medium, budget)).model == "haiku"
    await coord.costs.record(OPERATOR, model="sonnet", cost_usd=1.0)  # 95%: the cheapest
    rec = await _recommend(coord, high, budget)
    assert (rec.model, rec.source) == ("haiku", "budget")
    assert "past cost.cheapest_at_fraction (0.95)" in rec.reason
    low = await _recommend(coord, await _task(coord, LOW), budget)
    assert (low.model, low.source) == ("haiku", "score")  # already the cheapest
    assert (await _recommend(coord, high, Config())).model == "opus"  # no budget, no downgrade


async def test_overrides_win_over_score_history_and_budget(coord: Coordinator) -> None:
    await _project(coord)
    epic = await coord.planning.create_epic(OPERATOR, name="core", priority=0, project="p")
    security = await _task(coord, LOW.model_copy(update={"domain": "security"}))
    docs = await _task(coord, HIGH.model_copy(update={"domain": "documentation"}))
    critical = await _task(coord, LOW.model_copy(update={"epic_id": epic.id, "priority": 3}))
    loose = await _task(coord, LOW.model_copy(update={"priority": 2}))
    config = _config(
        model_overrides={
            "domain:security": "opus",
            "documentation": "haiku",
            "priority:0": "opus",
            "priority:2": "sonnet",
        },
        budget_limit_usd=1.0,
    )
    await coord.costs.record(OPERATOR, model="opus", cost_usd=0.99)  # past 95%
    expected = {
        security.id: ("opus", "cost.model_overrides['domain:security'] sends security tasks to opus."),
        docs.id: ("haiku", "cost.model_overrides['documentation'] sends documentation tasks to haiku."),
        critical.id: ("opus", "cost.model_overrides['priority:0'] sends priority-0 epics to opus."),
        loose.id: ("sonnet", "cost.model_overrides['priority:2'] sends priority-2 tasks to sonnet."),
    }
    for task in (security, docs, critical, loose):
        rec = await _recommend(coord, task, config)
        assert (rec.model, rec.reason) == expected[task.id] and rec.source == "override"
    async with coord.store.transaction() as tx:
        await tx.execute(
            "UPDATE tasks SET metadata = $2 WHERE id = $1",
            security.id,
            encode_json({"model": "claude-sonnet-4-5"}),
        )
    rec = await _recommend(coord, security, config)
    assert (rec.model, rec.tier, rec.source) == ("claude-sonnet-4-5", "sonnet", "override")
    assert rec.reason == "the task's metadata.model names claude-sonnet-4-5."


async def test_optimization_off_means_the_default_model_unless_overridden(coord: Coordinator) -> None:
    await _project(coord)
    high, security = (
        await _task(coord, HIGH),
        await _task(coord, LOW.model_copy(update={"domain": "security"})),
    )
    config = _config(optimization_enabled=False, default_model="haiku", model_overrides={"security": "opus"})
    rec = await _recommend(coord, high, config)
    assert (rec.model, rec.source, rec.band) == ("haiku", "default", "high")
    assert rec.reason == "cost.optimization_enabled is false, so the default model haiku is used."
    assert (await _recommend(coord, security, config)).model_dump(include={"model", "source"}) == {
        "model": "opus",
        "source": "override",
    }
