"""Reports over the cost ledger: spend by model, persona, epic and task type; the remaining cost.

The task type is the task's domain (`general` for a task without one). Ledger lines without a
task, agent or epic are grouped under `none`.

The forecast prices each remaining task (not done or cancelled) by its complexity band (see
`coordinator.complexity`), with the first of these that has data:

1. `band`: the mean cost of the project's done tasks in the same band, once the band has
   `cost.history_min_samples` of them;
2. `project_mean`: the mean cost of all the project's done tasks;
3. `per_estimate_unit`: the cost recorded against any task so far per unit of those tasks'
   estimates, times the remaining task's estimate;
4. `none`: nothing has been recorded against a task yet; there is no forecast.

A task's cost is every ledger line recorded against it, all attempts included; a done task
without any line is not a measurement. A task already in progress counts in full (what it has
spent so far is part of the spend, so the projection leans high, not low).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from coordinator.complexity import BANDS, DEFAULT_DOMAIN, Band, band_of, score_of
from coordinator.config import CostConfig
from coordinator.model_history import ModelRecord, model_history, shape_of_row
from coordinator.storage.base import Row, Tx

Method = Literal["band", "project_mean", "per_estimate_unit", "none"]
_CLOSED = ("done", "cancelled")
_DIMENSIONS: dict[str, tuple[str, str, str]] = {
    # name: (key expression, label expression, joins)
    "by_model": ("c.model", "NULL", ""),
    "by_persona": ("a.persona", "NULL", "LEFT JOIN agents a ON a.id = c.agent_id"),
    "by_epic": (
        "e.id",
        "e.name",
        "LEFT JOIN tasks t ON t.id = c.task_id LEFT JOIN epics e ON e.id = t.epic_id",
    ),
    "by_type": (
        f"CASE WHEN t.id IS NULL THEN NULL ELSE COALESCE(t.domain, '{DEFAULT_DOMAIN}') END",
        "NULL",
        "LEFT JOIN tasks t ON t.id = c.task_id",
    ),
}
_TASKS = (
    "SELECT t.id, t.status, t.title, t.description, t.action, t.estimate, t.predicted_files, t.domain, "
    "(SELECT COUNT(*) FROM task_dependencies d WHERE d.task_id = t.id) AS dependencies, "
    "(SELECT SUM(c.cost_usd) FROM agent_costs c WHERE c.task_id = t.id) AS cost "
    "FROM tasks t WHERE t.project_id = $1 ORDER BY t.id"
)
_SPENT = "SELECT COALESCE(SUM(cost_usd), 0) FROM agent_costs WHERE project_id = $1"


class CostShare(BaseModel):
    key: str = Field(description="Model, persona, epic id or task type; none for lines without one.")
    label: str | None = Field(description="The epic's name (epic lines only).")
    operations: int
    tasks: int = Field(description="Distinct tasks among the lines.")
    input_tokens: int
    output_tokens: int
    cost_usd: float
    share: float = Field(description="cost_usd / total_usd (0 when nothing is spent).")


class CostBreakdown(BaseModel):
    total_usd: float
    budget_limit_usd: float | None
    budget_used_fraction: float | None
    by_model: list[CostShare]
    by_persona: list[CostShare]
    by_epic: list[CostShare]
    by_type: list[CostShare] = Field(description="By task type: the task's domain.")


class ForecastBand(BaseModel):
    band: Band
    remaining_tasks: int
    remaining_estimate: float
    method: Method
    sample_tasks: int = Field(description="How many measured tasks the figure comes from.")
    unit_cost_usd: float | None = Field(
        description="Cost per task (band, project_mean) or per estimate unit (per_estimate_unit)."
    )
    forecast_usd: float | None


class CostForecast(BaseModel):
    spent_usd: float
    remaining_tasks: int
    measured_done_tasks: int = Field(description="Done tasks with ledger lines: the measurements.")
    forecast_usd: float | None = Field(description="What the remaining tasks should cost; null: no data.")
    projected_total_usd: float | None = Field(description="spent_usd + forecast_usd")
    budget_limit_usd: float | None
    projected_budget_fraction: float | None
    over_budget: bool | None = Field(description="Whether the projection passes the budget.")
    bands: list[ForecastBand]


class ModelStats(BaseModel):
    min_samples: int = Field(description="cost.history_min_samples: attempts before a record counts.")
    tolerance: float = Field(description="cost.history_tolerance")
    records: list[ModelRecord]


async def cost_breakdown(tx: Tx, project_id: int, cost: CostConfig) -> CostBreakdown:
    total = float(await tx.fetchval(_SPENT, project_id))
    lines = {name: await _shares(tx, project_id, total, *spec) for name, spec in _DIMENSIONS.items()}
    limit = cost.budget_limit_usd
    return CostBreakdown(
        total_usd=total,
        budget_limit_usd=limit,
        budget_used_fraction=None if limit is None else total / limit,
        **lines,
    )


async def _shares(tx: Tx, project_id: int, total: float, key: str, label: str, joins: str) -> list[CostShare]:
    group = key if label == "NULL" else f"{key}, {label}"
    rows = await tx.fetch(
        f"SELECT {key} AS key, {label} AS label, COUNT(*) AS operations, COUNT(DISTINCT c.task_id) AS tasks, "
        "SUM(c.input_tokens) AS input_tokens, SUM(c.output_tokens) AS output_tokens, SUM(c.cost_usd) AS cost "
        f"FROM agent_costs c {joins} WHERE c.project_id = $1 GROUP BY {group}",
        project_id,
    )
    shares = [
        CostShare(
            key="none" if r["key"] is None else str(r["key"]),
            label=r["label"],
            operations=int(r["operations"]),
            tasks=int(r["tasks"]),
            input_tokens=int(r["input_tokens"] or 0),
            output_tokens=int(r["output_tokens"] or 0),
            cost_usd=float(r["cost"] or 0),
            share=float(r["cost"] or 0) / total if total > 0 else 0.0,
        )
        for r in rows
    ]
    return sorted(shares, key=lambda s: (-s.cost_usd, -s.operations, s.key))


async def cost_forecast(tx: Tx, project_id: int, cost: CostConfig) -> CostForecast:
    spent = float(await tx.fetchval(_SPENT, project_id))
    rows = await tx.fetch(_TASKS, project_id)
    banded = [(band_of(score_of(shape_of_row(r)), cost), r) for r in rows]
    measured = [
        (band, float(r["cost"])) for band, r in banded if r["status"] == "done" and r["cost"] is not None
    ]
    costed = [r for r in rows if r["cost"] is not None]
    remaining = [(band, r) for band, r in banded if r["status"] not in _CLOSED]
    bands = [
        _forecast_band(band, [r for b, r in remaining if b == band], measured, costed, cost) for band in BANDS
    ]
    known = [b.forecast_usd for b in bands if b.remaining_tasks]
    forecast = None if None in known else sum(x for x in known if x is not None)
    projected = None if forecast is None else spent + forecast
    limit = cost.budget_limit_usd
    return CostForecast(
        spent_usd=spent,
        remaining_tasks=len(remaining),
        measured_done_tasks=len(measured),
        forecast_usd=forecast,
        projected_total_usd=projected,
        budget_limit_usd=limit,
        projected_budget_fraction=None if limit is None or projected is None else projected / limit,
        over_budget=None if limit is None or projected is None else projected > limit,
        bands=bands,
    )


def _forecast_band(
    band: Band,
    remaining: list[Row],
    measured: list[tuple[Band, float]],
    costed: list[Row],
    cost: CostConfig,
) -> ForecastBand:
    """One band's remaining tasks priced by the first method that has data."""
    count = len(remaining)
    estimate = sum(float(r["estimate"]) for r in remaining)
    in_band = [c for b, c in measured if b == band]
    method: Method
    if len(in_band) >= cost.history_min_samples:
        method, sample, unit, forecast = "band", len(in_band), _mean(in_band), count * _mean(in_band)
    elif measured:
        everything = [c for _, c in measured]
        method, sample, unit = "project_mean", len(everything), _mean(everything)
        forecast = count * unit
    elif costed:
        method, sample = "per_estimate_unit", len(costed)
        unit = sum(float(r["cost"]) for r in costed) / sum(float(r["estimate"]) for r in costed)
        forecast = estimate * unit
    else:
        return ForecastBand(
            band=band,
            remaining_tasks=count,
            remaining_estimate=estimate,
            method="none",
            sample_tasks=0,
            unit_cost_usd=None,
            forecast_usd=None,
        )
    return ForecastBand(
        band=band,
        remaining_tasks=count,
        remaining_estimate=estimate,
        method=method,
        sample_tasks=sample,
        unit_cost_usd=unit,
        forecast_usd=forecast,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


async def model_stats(tx: Tx, project_id: int, cost: CostConfig) -> ModelStats:
    return ModelStats(
        min_samples=cost.history_min_samples,
        tolerance=cost.history_tolerance,
        records=await model_history(tx, project_id, cost),
    )
