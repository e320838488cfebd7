"""Helpers for the launcher and sim-agent tests: a fast config, the shop plan, what the event log says.

(No tests here; the module only keeps shared helpers beside the tests that use them.)
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from coordinator.config import Config
from coordinator.context import OPERATOR
from coordinator.records import Event, Task
from coordinator.service import Coordinator

SHOP_PLAN = Path(__file__).parent / "data" / "shop_plan.yaml"
SHOP_TASKS = 12
# Three agents that can do every task of the shop plan (one task asks for a tester).
SHOP_PERSONAS = ["implementer", "implementer", "tester"]


def fast_config(**leases: Any) -> Config:
    """Short leases (5 s, the least allowed), 1 s heartbeats and quick retries, so recovery is quick."""
    values = {
        "ttl_seconds": 5,
        "heartbeat_interval_seconds": 1,
        "backoff_base_seconds": 0.1,
        "backoff_jitter": 0.0,
        **leases,
    }
    return Config.model_validate({"leases": values})


# A diamond of four tasks: a, then b and c, then d.
DIAMOND_PLAN = """
project: diamond
epics:
  - key: work
    name: Work
    tasks:
      - {key: a, title: First, estimate: 1}
      - {key: b, title: Left, depends_on: [a], estimate: 1}
      - {key: c, title: Right, depends_on: [a], estimate: 1}
      - {key: d, title: Last, depends_on: [b, c], estimate: 1}
"""


ONE_TASK_PLAN = """
project: single
epics:
  - key: work
    name: Work
    tasks:
      - {key: only, title: The only task, estimate: 1}
"""


async def import_plan(url: str, config: Config, text: str) -> dict[str, int]:
    """Import a plan file's text; its task ids by plan path."""
    coord = await Coordinator.open(url, config)
    try:
        imported = await coord.plans.import_plan(OPERATOR, text)
    finally:
        await coord.close()
    return imported.task_ids


async def import_shop(url: str, config: Config) -> dict[str, int]:
    """Import tests/data/shop_plan.yaml; its task ids by plan path."""
    return await import_plan(url, config, SHOP_PLAN.read_text(encoding="utf-8"))


async def event_log(url: str) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Every event (oldest first) and every dependency edge (task, depends on)."""
    coord = await Coordinator.open(url)
    try:
        async with coord.store.transaction(write=False) as tx:
            events = [
                Event.model_validate(r).model_dump()
                for r in await tx.fetch("SELECT * FROM events ORDER BY id")
            ]
            edges = [
                (r["task_id"], r["depends_on_task_id"])
                for r in await tx.fetch("SELECT task_id, depends_on_task_id FROM task_dependencies")
            ]
        assert await coord.store.integrity_problems() == []
    finally:
        await coord.close()
    return events, edges


async def tasks_of(url: str) -> dict[int, Task]:
    """Every task in the database, by id."""
    coord = await Coordinator.open(url)
    try:
        async with coord.store.transaction(write=False) as tx:
            return {r["id"]: Task.model_validate(r) for r in await tx.fetch("SELECT * FROM tasks")}
    finally:
        await coord.close()


def completed_once_in_order(
    events: list[dict[str, Any]],
    edges: list[tuple[int, int]],
    task_ids: Iterable[int],
    *,
    done: str = "task_completed",
) -> None:
    """Each task done exactly once (event kind `done`: task_completed, or task_merged with a repository),
    and never claimed before all it depends on were done."""
    completed = Counter(e["task_id"] for e in events if e["kind"] == done)
    assert completed == Counter(set(task_ids)), f"{done} per task: {dict(completed)}"
    completed_at = {e["task_id"]: e["id"] for e in events if e["kind"] == done}
    first_claim: dict[int, int] = {}
    for event in events:
        if event["kind"] == "task_claimed":
            first_claim.setdefault(event["task_id"], event["id"])
    for task, dependency in edges:
        assert completed_at[dependency] < first_claim[task], f"task {task} began before {dependency} was done"


def assert_gone(pids: Iterable[int]) -> None:
    """None of these processes is running any more."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    assert not alive, f"processes still running: {alive}"
