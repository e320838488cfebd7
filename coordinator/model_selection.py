"""Which model a task should run on, and why: overrides, then complexity, history and the budget.

In order, the first that applies decides:

1. the task's own `metadata.model`;
2. `cost.model_overrides` for the task's domain (`domain:NAME`, or a bare `NAME`);
3. `cost.model_overrides` for its epic's priority (`priority:N`; a task without an epic: its own);
4. with `cost.optimization_enabled: false`, `cost.default_model`;
5. otherwise the tier of the task's complexity band (see `coordinator.complexity`), replaced by
   the cheapest model whose success rate in the same domain and band is within
   `cost.history_tolerance` of the best (among models with `cost.history_min_samples` attempts),
   then moved down as the budget runs out: one tier once `cost.warn_at_fraction` of it is spent,
   to the cheapest tier once `cost.cheapest_at_fraction` is.

Overrides and the default are decisions a person made: the budget does not change them (the hard
stop at 100% still applies to every claim).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from coordinator.complexity import (
    DEFAULT_DOMAIN,
    TIERS,
    Band,
    Complexity,
    TaskShape,
    Tier,
    score_task,
    task_text,
    tier_of_band,
)
from coordinator.config import Config, CostConfig
from coordinator.model_history import ModelRecord, model_history
from coordinator.pricing import priced_name
from coordinator.records import Task
from coordinator.storage.base import Tx

Source = Literal["override", "history", "score", "budget", "default"]
_FACTS = (
    "SELECT (SELECT COUNT(*) FROM task_dependencies WHERE task_id = $1) AS dependencies, "
    "(SELECT priority FROM epics WHERE id = $2) AS epic_priority"
)
_SPENT = ", (SELECT COALESCE(SUM(cost_usd), 0) FROM agent_costs WHERE project_id = $3) AS spent"
_EPSILON = 1e-9
_RANK: dict[str, int] = {tier: rank for rank, tier in enumerate(TIERS)}


@dataclass(frozen=True)
class TaskFacts:
    """What a recommendation needs to know beyond the task's row (the claim reads it in its statement)."""

    dependencies: int
    epic_priority: int | None
    spent_usd: float | None = None
    """The project's spending; None when it has no budget."""
    has_cost_history: bool = True
    """False when the project has recorded no cost, so that no model has a history to read."""


async def task_facts(tx: Tx, task: Task, cost: CostConfig) -> TaskFacts:
    budgeted = cost.budget_limit_usd is not None
    args: list[int | None] = [task.id, task.epic_id]
    if budgeted:
        args.append(task.project_id)
    row = await tx.fetchrow(_FACTS + (_SPENT if budgeted else ""), *args)
    assert row is not None
    return TaskFacts(
        dependencies=int(row["dependencies"]),
        epic_priority=None if row["epic_priority"] is None else int(row["epic_priority"]),
        spent_usd=float(row["spent"]) if budgeted else None,
    )


class ModelRecommendation(BaseModel):
    model: str
    tier: Tier | None = Field(description="haiku, sonnet or opus; null for a model outside the tiers.")
    score: float = Field(description="The task's complexity score, 0 to 1.")
    band: Band = Field(description="The task's complexity band.")
    source: Source = Field(description="What decided: override, history, score, budget or default.")
    reason: str


async def recommend_model(
    tx: Tx, *, task: Task, config: Config, facts: TaskFacts | None = None
) -> ModelRecommendation:
    """The model for `task` and why, for its claim context.

    Runs inside the caller's transaction: one query for the `facts` unless they are given, plus
    one for the history when neither an override nor the default decides.
    """
    cost = config.cost
    if facts is None:
        facts = await task_facts(tx, task, cost)
    shape = TaskShape(
        text=task_text(task.title, task.description, task.action),
        estimate=task.estimate,
        predicted_files=len(task.predicted_files),
        dependencies=facts.dependencies,
        domain=task.domain,
    )
    complexity = score_task(shape, cost)

    def answer(model: str, source: Source, reason: str) -> ModelRecommendation:
        return ModelRecommendation(
            model=model,
            tier=_tier(model, cost),
            score=complexity.score,
            band=complexity.band,
            source=source,
            reason=reason,
        )

    override = _override(task, facts.epic_priority, cost)
    if override is not None:
        return answer(override[0], "override", override[1])
    if not cost.optimization_enabled:
        return answer(
            cost.default_model,
            "default",
            f"cost.optimization_enabled is false, so the default model {cost.default_model} is used.",
        )
    domain = task.domain or DEFAULT_DOMAIN
    model, source, reason = _by_score(complexity, domain, cost)
    history = await model_history(tx, task.project_id, cost, domain=domain) if facts.has_cost_history else []
    picked = _from_history([r for r in history if r.band == complexity.band], cost)
    if picked is not None:
        model, source, reason = picked.model, "history", _history_reason(picked, history, cost)
    if facts.spent_usd is not None:
        downgrade = _budget_downgrade(model, facts.spent_usd, cost)
        if downgrade is not None:
            model, source, reason = downgrade[0], "budget", downgrade[1]
    return answer(model, source, reason)


def _tier(model: str, cost: CostConfig) -> Tier | None:
    name = priced_name(model, cost.pricing)
    return next((tier for tier in TIERS if tier == name), None)


def _override(task: Task, epic_priority: int | None, cost: CostConfig) -> tuple[str, str] | None:
    """The model a person chose for this task, and where they chose it."""
    wanted = task.metadata.get("model")
    if isinstance(wanted, str) and wanted.strip():
        return wanted.strip(), f"the task's metadata.model names {wanted.strip()}."
    by_domain: dict[str, tuple[str, str]] = {}
    by_priority: dict[int, tuple[str, str]] = {}
    for key, model in cost.model_overrides.items():
        kind, colon, value = key.partition(":")
        if colon and kind == "priority":
            by_priority[int(value)] = (key, model)
        elif colon and kind == "domain":
            by_domain[value.strip()] = (key, model)
        else:
            by_domain.setdefault(key, (key, model))  # a bare name is a domain; domain:NAME wins
    domain = task.domain or DEFAULT_DOMAIN
    if domain in by_domain:
        key, model = by_domain[domain]
        return model, f"cost.model_overrides[{key!r}] sends {domain} tasks to {model}."
    priority = task.priority if epic_priority is None else epic_priority
    if priority in by_priority:
        key, model = by_priority[priority]
        whose = "tasks" if epic_priority is None else "epics"
        return model, f"cost.model_overrides[{key!r}] sends priority-{priority} {whose} to {model}."
    return None


def _by_score(complexity: Complexity, domain: str, cost: CostConfig) -> tuple[str, Source, str]:
    tier = tier_of_band(complexity.band)
    return (
        tier,
        "score",
        f"complexity {complexity.score:.2f} puts the task in the {complexity.band} band, which runs on "
        f"{tier}; no model has {cost.history_min_samples} finished attempts on {domain} tasks in that band yet.",
    )


def _from_history(records: list[ModelRecord], cost: CostConfig) -> ModelRecord | None:
    """Of the tier models with enough attempts, the cheapest that succeeds about as often as the best."""
    counted = [r for r in records if r.counts and r.model in _RANK]
    if not counted:
        return None
    best = max(r.success_rate for r in counted)
    good = [r for r in counted if r.success_rate >= best - cost.history_tolerance - _EPSILON]
    return min(good, key=lambda r: (r.cost_per_task, _RANK[r.model]))


def _history_reason(picked: ModelRecord, history: list[ModelRecord], cost: CostConfig) -> str:
    others = [
        f"{r.model} {r.success_rate:.0%} at ${r.cost_per_task:.4f}"
        for r in history
        if r.band == picked.band and r.counts and r.model in _RANK and r.model != picked.model
    ]
    compared = f" (against {', '.join(others)})" if others else ""
    return (
        f"history of {picked.domain} tasks in the {picked.band} band: {picked.model} succeeded in "
        f"{picked.successes} of {picked.attempts} attempts at ${picked.cost_per_task:.4f} per task{compared}, "
        f"the cheapest model within {cost.history_tolerance:g} of the best success rate."
    )


def _budget_downgrade(model: str, spent: float, cost: CostConfig) -> tuple[str, str] | None:
    """A cheaper tier as the budget runs out, with the reason; None when nothing changes."""
    limit = cost.budget_limit_usd
    if limit is None or model not in _RANK:
        return None
    fraction, index = spent / limit, _RANK[model]
    if fraction >= cost.cheapest_at_fraction:
        target, passed = 0, f"cost.cheapest_at_fraction ({cost.cheapest_at_fraction:g})"
    elif fraction >= cost.warn_at_fraction:
        target, passed = max(index - 1, 0), f"cost.warn_at_fraction ({cost.warn_at_fraction:g})"
    else:
        return None
    if target == index:
        return None
    return TIERS[target], (
        f"${spent:.2f} of the ${limit:.2f} budget is spent ({fraction:.0%}), past {passed}, "
        f"so {model} is downgraded to {TIERS[target]}."
    )
