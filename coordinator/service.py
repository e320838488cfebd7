"""The coordinator: one object holding the store and the services every door (MCP, REST, CLI) uses."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from coordinator.agents import AgentService, sync_personas
from coordinator.config import Config
from coordinator.context import Wakeup
from coordinator.costs import CostService
from coordinator.errors import YokeflowError
from coordinator.events import NOTIFY_CHANNEL
from coordinator.observe import ObserverService
from coordinator.planning import PlanningService
from coordinator.plans import PlanService
from coordinator.storage import Store, StoreOptions, open_store
from coordinator.storage.base import Clock
from coordinator.work import WorkService

log = logging.getLogger(__name__)


class Coordinator:
    """Planning, plans, work (leases and task states), agents, costs and observation over one store."""

    def __init__(self, store: Store, config: Config | None = None) -> None:
        self.store = store
        self.config = config or Config()
        self.wakeup = Wakeup()
        self.planning = PlanningService(store, self.config, self.wakeup)
        self.work = WorkService(store, self.config, self.wakeup)
        self.agents = AgentService(store, self.config, self.wakeup)
        self.plans = PlanService(store, self.config, self.wakeup)
        self.costs = CostService(store, self.config, self.wakeup)
        self.observe = ObserverService(store, self.config, self.wakeup)

    @classmethod
    async def open(
        cls,
        url: str,
        config: Config | None = None,
        *,
        personas_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> Coordinator:
        """Open (and migrate) the database, load the personas, and return a ready coordinator."""
        config = config or Config()
        db = config.database
        options = StoreOptions(
            sqlite_synchronous=db.sqlite_synchronous,
            sqlite_busy_timeout_ms=db.sqlite_busy_timeout_ms,
            pool_min_size=db.pool_min_size,
            pool_max_size=db.pool_max_size,
            connect_timeout_seconds=db.connect_timeout_seconds,
        )
        store = await open_store(url, options=options, clock=clock or time.time)
        try:
            await sync_personas(store, personas_dir)
            coordinator = cls(store, config)
            await store.listen(NOTIFY_CHANNEL, coordinator.wakeup.notify)
        except BaseException:
            await store.close()
            raise
        return coordinator

    async def sweep_forever(self, interval_seconds: float | None = None) -> None:
        """Sweep every `interval_seconds` (default: the heartbeat interval) until cancelled.

        Servers run this in the background so expiries and lost agents show up in the event
        log promptly; claims never depend on it.
        """
        interval = interval_seconds or float(self.config.leases.heartbeat_interval_seconds)
        while True:
            try:
                await self.work.sweep()
            except YokeflowError as exc:
                log.warning("sweep failed, will retry: %s", exc)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        await self.store.close()
