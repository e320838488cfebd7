"""The cost ledger: tokens and dollars per task, agent and model, the budget warning, and its reports."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from coordinator.context import Caller, ServiceBase, require_role
from coordinator.cost_reports import (
    CostBreakdown,
    CostForecast,
    ModelStats,
    cost_breakdown,
    cost_forecast,
    model_stats,
)
from coordinator.errors import InvalidInput
from coordinator.events import append_event
from coordinator.pricing import price_of
from coordinator.queries import get_task
from coordinator.records import Project
from coordinator.storage.base import Tx

_LEDGER_LOCK = 0x59F2


class CostEntry(BaseModel):
    id: int | None = Field(description="The ledger line; None when cost tracking is off (cost.enabled).")
    recorded: bool = Field(default=True, description="False when cost tracking is off: nothing was kept.")
    task_id: int | None
    agent_id: int | None
    model: str
    operation: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None = Field(
        description="US dollars; None only when tracking is off and the model has no price."
    )


class CostLine(BaseModel):
    key: str
    operations: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class CostSummary(BaseModel):
    tracking: bool = Field(
        description="Whether costs are recorded (cost.enabled); when off, nothing adds up."
    )
    total_usd: float
    budget_limit_usd: float | None
    budget_used_fraction: float | None = Field(description="spent / budget, when there is a budget")
    by_model: list[CostLine]
    by_agent: list[CostLine]
    by_task: list[CostLine]


class CostService(ServiceBase):
    async def record(
        self,
        caller: Caller,
        *,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        cost_usd: float | None = None,
        task_id: int | None = None,
        operation: str = "task",
        project: int | str | None = None,
    ) -> CostEntry:
        """Add one line to the ledger; the cost is computed from the pricing table when not given."""
        require_role(caller, ("operator", "planner", "worker"), "record costs")
        for field, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cache_read_tokens", cache_read_tokens),
            ("cache_write_tokens", cache_write_tokens),
        ):
            if value < 0:
                raise InvalidInput(field, f"{value} is negative", fix="give a token count of 0 or more")
        if not model.strip():
            raise InvalidInput("model", "is empty", fix="name the model that did the work, e.g. sonnet")
        if cost_usd is not None and (not math.isfinite(cost_usd) or cost_usd < 0):
            raise InvalidInput("cost_usd", f"{cost_usd!r} is not a cost", fix="give 0 or more US dollars")
        price = price_of(model, self.config.cost.pricing)
        if cost_usd is None and price is not None:
            cost_usd = price.cost_usd(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        agent_id = caller.agent.id if caller.agent else None
        if not self.config.cost.enabled:  # checked like any record, kept nowhere
            async with self.store.transaction(write=False) as tx:
                await self._target(tx, caller, project, task_id)
            return CostEntry(
                id=None,
                recorded=False,
                task_id=task_id,
                agent_id=agent_id,
                model=model,
                operation=operation,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cache_read_tokens=cache_read_tokens,
                cache_write_tokens=cache_write_tokens,
                cost_usd=cost_usd,
            )
        if cost_usd is None:
            raise InvalidInput(
                "model",
                f"{model!r} has no price in cost.pricing",
                fix=f"pass cost_usd, or add cost.pricing.{model} (known: {', '.join(sorted(self.config.cost.pricing))})",
            )
        async with self.store.transaction() as tx:
            now = self.now()
            target = await self._target(tx, caller, project, task_id)
            if (
                tx.backend == "postgresql"
            ):  # records of one project take turns, so each threshold is crossed once
                await tx.execute("SELECT pg_advisory_xact_lock($1, $2)", _LEDGER_LOCK, target.id)
            spent_before = await spent_usd(tx, target.id)
            row = await tx.fetchrow(
                "INSERT INTO agent_costs (project_id, task_id, agent_id, model, operation, input_tokens, output_tokens, "
                "cache_read_tokens, cache_write_tokens, cost_usd, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
                target.id,
                task_id,
                agent_id,
                model,
                operation,
                input_tokens,
                output_tokens,
                cache_read_tokens,
                cache_write_tokens,
                cost_usd,
                now,
            )
            append_event(
                tx,
                now=now,
                kind="cost_recorded",
                actor=caller.name,
                project_id=target.id,
                task_id=task_id,
                agent_id=agent_id,
                payload={
                    "model": model,
                    "cost_usd": cost_usd,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                },
            )
            self._budget_events(tx, target.id, caller.name, now, spent_before, spent_before + cost_usd)
        return CostEntry.model_validate(row)

    async def _target(
        self, tx: Tx, caller: Caller, project: int | str | None, task_id: int | None
    ) -> Project:
        """The project a record is for; an unknown project, or a task not in it, is refused."""
        target = await self.resolve_project(tx, caller, project)
        if task_id is not None:
            await get_task(tx, task_id, project_id=target.id)
        return target

    def _budget_events(
        self, tx: Tx, project_id: int, actor: str, now: float, before: float, after: float
    ) -> None:
        """One event when spending crosses the warning fraction, one when it reaches the budget."""
        limit = self.config.cost.budget_limit_usd
        if limit is None:
            return
        for fraction, kind in (
            (self.config.cost.warn_at_fraction, "budget_warning"),
            (1.0, "budget_exhausted"),
        ):
            if before < fraction * limit <= after:
                append_event(
                    tx,
                    now=now,
                    kind=kind,
                    actor=actor,
                    project_id=project_id,
                    payload={"spent_usd": after, "budget_limit_usd": limit, "fraction": after / limit},
                )

    async def summary(self, caller: Caller, *, project: int | str | None = None) -> CostSummary:
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            total = await spent_usd(tx, target.id)
            lines = {
                name: await _lines(tx, target.id, column)
                for name, column in (("by_model", "model"), ("by_agent", "agent_id"), ("by_task", "task_id"))
            }
        limit = self.config.cost.budget_limit_usd
        return CostSummary(
            tracking=self.config.cost.enabled,
            total_usd=total,
            budget_limit_usd=limit,
            budget_used_fraction=None if limit is None else total / limit,
            **lines,
        )

    async def breakdown(self, caller: Caller, *, project: int | str | None = None) -> CostBreakdown:
        """Spend by model, persona, epic and task type (the task's domain)."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            return await cost_breakdown(tx, target.id, self.config.cost)

    async def forecast(self, caller: Caller, *, project: int | str | None = None) -> CostForecast:
        """What the remaining tasks should cost, from measured tasks of similar complexity, against the budget."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            return await cost_forecast(tx, target.id, self.config.cost)

    async def model_stats(self, caller: Caller, *, project: int | str | None = None) -> ModelStats:
        """Success rate and cost per model, domain and complexity band, from finished tasks."""
        async with self.store.transaction(write=False) as tx:
            target = await self.resolve_project(tx, caller, project)
            return await model_stats(tx, target.id, self.config.cost)


async def spent_usd(tx: Tx, project_id: int) -> float:
    """What the project has spent so far."""
    return float(
        await tx.fetchval(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM agent_costs WHERE project_id = $1", project_id
        )
    )


async def _lines(tx: Tx, project_id: int, column: str) -> list[CostLine]:
    rows = await tx.fetch(
        f"SELECT {column} AS key, COUNT(*) AS operations, SUM(input_tokens) AS input_tokens, "
        f"SUM(output_tokens) AS output_tokens, SUM(cost_usd) AS cost_usd FROM agent_costs "
        f"WHERE project_id = $1 GROUP BY {column} ORDER BY SUM(cost_usd) DESC",
        project_id,
    )
    return [
        CostLine(
            key=str(r["key"]) if r["key"] is not None else "none",
            operations=int(r["operations"]),
            input_tokens=int(r["input_tokens"] or 0),
            output_tokens=int(r["output_tokens"] or 0),
            cost_usd=float(r["cost_usd"] or 0),
        )
        for r in rows
    ]
