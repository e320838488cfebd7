"""Observer tools for costs: the forecast of what is left and how each model has done."""

from __future__ import annotations

from coordinator.cost_reports import CostForecast, ModelStats
from tools.arguments import ProjectRef
from tools.auth import session
from tools.registry import ToolSet
from tools.runtime import ToolContext

TOOLS = ToolSet()


@TOOLS.tool("Cost forecast", read_only=True)
async def get_cost_forecast(ctx: ToolContext, project: ProjectRef = None) -> CostForecast:
    """What the remaining tasks should cost, from measured tasks of similar complexity, against the budget."""
    rt, caller = await session(ctx)
    return await rt.coord.costs.forecast(caller, project=project)


@TOOLS.tool("Model statistics", read_only=True)
async def get_model_stats(ctx: ToolContext, project: ProjectRef = None) -> ModelStats:
    """Success rate and cost per model, domain and complexity band, from the project's finished tasks."""
    rt, caller = await session(ctx)
    return await rt.coord.costs.model_stats(caller, project=project)
