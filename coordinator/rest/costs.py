"""Costs: spending against the budget, broken down, forecast, and per model."""

from __future__ import annotations

from coordinator.cost_reports import CostBreakdown, CostForecast, ModelStats
from coordinator.costs import CostSummary
from coordinator.rest.api import Call, RouteTable
from coordinator.rest.params import ProjectPath

COSTS = RouteTable("costs")


@COSTS.get("/api/projects/{project}/costs")
async def cost_summary(call: Call, path: ProjectPath) -> CostSummary:
    """Spending so far against the budget, by model, agent and task."""
    return await call.coord.costs.summary(call.caller, project=path.project)


@COSTS.get("/api/projects/{project}/costs/breakdown")
async def cost_breakdown(call: Call, path: ProjectPath) -> CostBreakdown:
    """Spending by model, persona, epic and task type (the task's domain)."""
    return await call.coord.costs.breakdown(call.caller, project=path.project)


@COSTS.get("/api/projects/{project}/costs/forecast")
async def cost_forecast(call: Call, path: ProjectPath) -> CostForecast:
    """What the remaining tasks should cost, from measured tasks of similar size, against the budget."""
    return await call.coord.costs.forecast(call.caller, project=path.project)


@COSTS.get("/api/projects/{project}/costs/models")
async def model_stats(call: Call, path: ProjectPath) -> ModelStats:
    """Success rate and cost per model, domain and complexity band, from finished tasks."""
    return await call.coord.costs.model_stats(call.caller, project=path.project)
