"""How each model has done: success rate and cost per model, domain and complexity band.

A finished task (done or failed) counts for the model that did most of its work: the pricing
entry with the largest share of the task's cost-ledger rows (claude-sonnet-4-5 counts as
sonnet). Its attempts are its `attempts`: a done task is one success and `attempts - 1` failed
attempts; a failed task is `attempts` failed attempts. A model's record in a (domain, band) cell
counts only once it has `cost.history_min_samples` attempts there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from coordinator.complexity import DEFAULT_DOMAIN, Band, TaskShape, band_of, score_of, task_text
from coordinator.config import CostConfig
from coordinator.pricing import priced_name
from coordinator.storage.base import Row, Tx, decode_json

_FINISHED = "status IN ('done', 'failed')"
_TASK_COLUMNS = (
    "t.id, t.status, t.attempts, t.title, t.description, t.action, t.estimate, t.predicted_files, t.domain, "
    "(SELECT COUNT(*) FROM task_dependencies d WHERE d.task_id = t.id) AS dependencies"
)
_ALL_FINISHED = (
    f"SELECT {_TASK_COLUMNS}, c.model, SUM(c.cost_usd) AS cost FROM tasks t "
    f"JOIN agent_costs c ON c.task_id = t.id WHERE t.project_id = $1 AND t.{_FINISHED} GROUP BY t.id, c.model"
)
_RECENT_IN_DOMAIN = (
    "WITH recent AS (SELECT c.task_id AS id FROM agent_costs c JOIN tasks t ON t.id = c.task_id "
    f"WHERE c.project_id = $1 AND t.{_FINISHED} AND COALESCE(t.domain, '{DEFAULT_DOMAIN}') = $2 "
    "GROUP BY c.task_id ORDER BY MAX(c.id) DESC LIMIT $3) "
    f"SELECT {_TASK_COLUMNS}, c.model, SUM(c.cost_usd) AS cost FROM recent r JOIN tasks t ON t.id = r.id "
    "JOIN agent_costs c ON c.task_id = t.id GROUP BY t.id, c.model"
)
HISTORY_WINDOW = 100
"""The claim path reads at most this many finished tasks of a domain: those that recorded a cost last."""


class ModelRecord(BaseModel):
    domain: str
    band: Band
    model: str = Field(description="The pricing entry (sonnet for claude-sonnet-4-5).")
    tasks: int = Field(description="Finished tasks this model did most of the work on.")
    attempts: int
    successes: int
    success_rate: float = Field(description="successes / attempts")
    cost_usd: float = Field(description="Everything those tasks cost, all models included.")
    cost_per_task: float
    counts: bool = Field(description="Whether attempts reach cost.history_min_samples.")


@dataclass
class _Finished:
    row: Row
    cost_by_model: dict[str, float] = field(default_factory=dict)


def shape_of_row(row: Row) -> TaskShape:
    """The scored shape of a task row (with a `dependencies` count column)."""
    return TaskShape(
        text=task_text(row["title"], row["description"], row["action"]),
        estimate=float(row["estimate"]),
        predicted_files=len(decode_json(row["predicted_files"]) or []),
        dependencies=int(row["dependencies"]),
        domain=row["domain"],
    )


async def model_history(
    tx: Tx, project_id: int, cost: CostConfig, *, domain: str | None = None
) -> list[ModelRecord]:
    """The records of a project's finished tasks: every domain, or the latest `HISTORY_WINDOW` of one."""
    rows = (
        await tx.fetch(_ALL_FINISHED, project_id)
        if domain is None
        else await tx.fetch(_RECENT_IN_DOMAIN, project_id, domain, HISTORY_WINDOW)
    )
    tasks: dict[int, _Finished] = {}
    for row in rows:
        finished = tasks.setdefault(int(row["id"]), _Finished(row))
        model = priced_name(row["model"], cost.pricing) or row["model"]
        finished.cost_by_model[model] = finished.cost_by_model.get(model, 0.0) + float(row["cost"] or 0)
    cells: dict[tuple[str, Band, str], list[_Finished]] = defaultdict(list)
    for finished in tasks.values():
        model = max(finished.cost_by_model, key=lambda m: (finished.cost_by_model[m], m))
        band = band_of(score_of(shape_of_row(finished.row)), cost)
        cells[(finished.row["domain"] or DEFAULT_DOMAIN, band, model)].append(finished)
    return [_record(key, members, cost) for key, members in sorted(cells.items())]


def _record(key: tuple[str, Band, str], members: list[_Finished], cost: CostConfig) -> ModelRecord:
    domain, band, model = key
    attempts = sum(max(int(f.row["attempts"]), 1) for f in members)
    successes = sum(1 for f in members if f.row["status"] == "done")
    spent = sum(sum(f.cost_by_model.values()) for f in members)
    return ModelRecord(
        domain=domain,
        band=band,
        model=model,
        tasks=len(members),
        attempts=attempts,
        successes=successes,
        success_rate=successes / attempts,
        cost_usd=spent,
        cost_per_task=spent / len(members),
        counts=attempts >= cost.history_min_samples,
    )
