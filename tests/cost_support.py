"""Work a task through the real claim path with a cost line, for the cost and model-selection tests."""

from __future__ import annotations

from typing import Literal

from coordinator.context import Caller
from coordinator.records import Task
from coordinator.service import Coordinator
from coordinator.work import Claimed
from tests.conftest import ManualClock

Outcome = Literal["done", "failed", "retry"]


async def work_task(
    coord: Coordinator,
    worker: Caller,
    task: Task,
    *,
    model: str,
    cost_usd: float,
    outcome: Outcome = "done",
    clock: ManualClock | None = None,
) -> None:
    """Claim `task`, record `cost_usd` on `model` against it, then complete it, fail it for good,
    or fail it for a retry (then `clock` moves past the backoff)."""
    claimed = await coord.work.claim(worker, task_id=task.id)
    assert isinstance(claimed, Claimed), claimed
    await coord.costs.record(worker, model=model, cost_usd=cost_usd, task_id=task.id)
    lease = claimed.lease.lease_id
    if outcome == "done":
        await coord.work.complete(worker, task_id=task.id, lease_id=lease)
        return
    await coord.work.fail(
        worker, task_id=task.id, lease_id=lease, error="it broke", retryable=outcome == "retry"
    )
    if outcome == "retry":
        assert clock is not None, "a retry needs the clock to move past its backoff"
        clock.advance(3600)
