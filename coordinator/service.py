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
from coordinator.expertise import DAY, ExpertiseService
from coordinator.expertise_docs import EXPERTS_DIR
from coordinator.expertise_files import sync_all
from coordinator.merge_outcomes import MergeOutcomeService
from coordinator.merge_queue import MergeQueue
from coordinator.observe import ObserverService
from coordinator.planning import PlanningService
from coordinator.plans import PlanService
from coordinator.steering import SteeringService
from coordinator.storage import Store, StoreOptions, open_store
from coordinator.storage.base import Clock
from coordinator.work import WorkService
from coordinator.workspaces import Workspaces, recover_workspace

log = logging.getLogger(__name__)


class Coordinator:
    """Planning, plans, work (leases and task states), agents, costs, observation and steering over one store."""

    def __init__(self, store: Store, config: Config | None = None, *, repo: Path | None = None) -> None:
        self.store = store
        self.config = config or Config()
        self.wakeup = Wakeup()
        self.workspaces = Workspaces(store, self.config, repo)
        self.planning = PlanningService(store, self.config, self.wakeup)
        merges_queued = Wakeup()
        self.work = WorkService(store, self.config, self.wakeup, self.workspaces, merges_queued)
        self.merge_outcomes = MergeOutcomeService(store, self.config, self.wakeup, merges_queued)
        self.merges = MergeQueue(store, self.config, self.workspaces, self.merge_outcomes)
        self.agents = AgentService(store, self.config, self.wakeup, self.workspaces)
        self.plans = PlanService(store, self.config, self.wakeup)
        self.costs = CostService(store, self.config, self.wakeup)
        self.observe = ObserverService(store, self.config, self.wakeup)
        self.steering = SteeringService(store, self.config, self.wakeup)
        self.expertise = ExpertiseService(store, self.config, self.wakeup, self.workspaces)

    @classmethod
    async def open(
        cls,
        url: str,
        config: Config | None = None,
        *,
        personas_dir: Path | None = None,
        clock: Clock | None = None,
        repo: Path | None = None,
    ) -> Coordinator:
        """Open (and migrate) the database, load the personas, and return a ready coordinator.

        `repo` is the git repository of projects that name none: their agents get worktrees and
        their finished branches go through the merge queue.
        """
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
            coordinator = cls(store, config, repo=repo)
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

    async def improve_expertise_forever(self, check_seconds: float = 3600.0) -> None:
        """Consolidate expertise as `learning.self_improve_interval` says, until cancelled.

        "session": once, at start, every domain not validated since this server started;
        "daily": at start and then hourly, every domain last validated a day ago or more;
        "never" (or learning off): nothing.
        """
        learning = self.config.learning
        if not learning.enabled or learning.self_improve_interval == "never":
            return
        session = learning.self_improve_interval == "session"
        started = self.store.clock()
        while True:
            before = started if session else self.store.clock() - DAY
            try:
                for project_id, report in await self.expertise.improve_due(validated_before=before):
                    log.info(
                        "expertise %s of project %d improved: %d entries pruned",
                        report.domain,
                        project_id,
                        len(report.validation.removed),
                    )
            except YokeflowError as exc:  # the database (a domain's own trouble is skipped inside)
                log.warning("expertise upkeep failed, will retry: %s", exc)
            if session:
                return
            await asyncio.sleep(check_seconds)

    async def recover_repositories(self) -> list[str]:
        """Reconcile every project's worktrees with git at start; what was repaired, in words."""
        said: list[str] = []
        for ws in await self.workspaces.all():
            said += await recover_workspace(self.store, ws)
        return said + await self.import_expertise_edits()

    async def import_expertise_edits(self) -> list[str]:
        """Take in hand edits of `.claude/commands/experts/*/expertise.yaml`, for repositories that have them."""
        said: list[str] = []
        async with self.store.transaction(write=False) as tx:
            project_ids = [r["id"] for r in await tx.fetch("SELECT id FROM projects ORDER BY id")]
        for project_id in project_ids:
            ws = await self.workspaces.of_project(project_id)
            if ws is None or not await asyncio.to_thread((ws.root / EXPERTS_DIR).is_dir):
                continue
            for report in await sync_all(self.store, ws.root, project_id, config=self.config):
                if report.problem:
                    said.append(f"expertise {report.domain}: {report.problem}")
                elif report.imported_version is not None:
                    said.append(
                        f"expertise {report.domain}: imported hand edits as version {report.imported_version}"
                    )
        return said

    async def merge_forever(self) -> None:
        """Recover the repositories, then run the merge queue until cancelled."""
        try:
            for line in await self.recover_repositories():
                log.info("recovery: %s", line)
        except YokeflowError as exc:
            log.warning("repository recovery failed: %s", exc)
        await self.merges.run_forever()

    async def close(self) -> None:
        await self.store.close()
