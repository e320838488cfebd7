"""A team of agents at work: register them, run them as processes until the project is finished, report.

Progress and the closing report are read from the store through the observer tools only; the
launcher's own records are about its processes (pids, exit codes, restarts).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.errors import ConfigError
from launcher.mcp_client import OPERATOR_PATH, AgentClient
from launcher.runners.base import AgentSlot, Runner
from launcher.sessions import run_sessions
from launcher.supervisor import OnStart, RestartPolicy, SlotRecord, Supervisor

OPEN_STATES = ("pending", "in_progress", "merging", "conflict", "rejected")
POLL_SECONDS = 0.5

Watch = Callable[[AgentClient, dict[str, Any]], Awaitable[None]]
"""Called with the operator's client and the latest project_status at each poll (for live progress)."""


@dataclass(frozen=True)
class LaunchSettings:
    """What a launch runs: which runner, one persona per agent, and how they are supervised."""

    runner: Runner
    personas: list[str]
    coordination: bool = True
    project: str | None = None
    log_dir: Path | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    grace_seconds: float = 10.0


@dataclass(frozen=True)
class LaunchReport:
    """How a launch ended, as the store tells it (plus the processes the launcher ran)."""

    status: dict[str, Any]
    costs: dict[str, Any]
    records: list[SlotRecord]
    slots: list[AgentSlot]
    elapsed_seconds: float
    stopped: bool
    coordination: bool

    @property
    def finished(self) -> bool:
        return project_finished(self.status)

    @property
    def ok(self) -> bool:
        tasks = self.status["tasks"]
        return self.finished and not tasks.get("failed") and not any(r.gave_up for r in self.records)


def project_finished(status: dict[str, Any]) -> bool:
    """No task is open any more (every one is done, failed or cancelled)."""
    return sum(status["tasks"].get(state, 0) for state in OPEN_STATES) == 0


async def register_slots(
    operator: AgentClient, server_url: str, personas: list[str], project: str | None
) -> list[AgentSlot]:
    """Register one agent per persona entry (named persona-1, persona-2, …) and return their slots."""
    slots: list[AgentSlot] = []
    numbers: Counter[str] = Counter()
    for index, persona in enumerate(personas):
        numbers[persona] += 1
        registered = await operator.call(
            "register_agent", persona=persona, name=f"{persona}-{numbers[persona]}", project=project
        )
        agent = registered["agent"]
        slots.append(
            AgentSlot(
                agent_id=agent["id"],
                name=agent["name"],
                persona=persona,
                token=registered["token"],
                server_url=server_url,
                worktree=Path(agent["worktree"]) if agent.get("worktree") else None,
                project=project,
                index=index,
            )
        )
    return slots


async def check_personas(operator: AgentClient, personas: list[str], project: str | None) -> None:
    """Refuse to start when open tasks ask for a persona none of the agents has (they would wait forever)."""
    unserved: dict[str, list[int]] = {}
    offset: int | None = 0
    while offset is not None:
        page = await operator.call(
            "list_tasks", only_pending=True, limit=1000, offset=offset, project=project
        )
        for task in page["tasks"]:
            if task["persona"] and task["persona"] not in personas and task["status"] == "pending":
                unserved.setdefault(task["persona"], []).append(task["id"])
        offset = page["next_offset"]
    if unserved:
        listing = "; ".join(
            f"{name}: tasks {', '.join(map(str, ids))}" for name, ids in sorted(unserved.items())
        )
        raise ConfigError(
            f"open tasks ask for personas none of the agents has, so they would never be done ({listing})",
            fix="add them to --personas, e.g. --personas "
            + ",".join(
                f"{name}={n}" for name, n in {**Counter(personas), **dict.fromkeys(unserved, 1)}.items()
            ),
        )


@dataclass(frozen=True)
class AgentBook:
    """Writes what the launcher knows of its agents into the store (update_agent, where the server
    offers it): the pid of each process it starts, and `stopped` once they are all gone."""

    operator: AgentClient

    @classmethod
    async def offered(cls, operator: AgentClient) -> AgentBook | None:
        return cls(operator) if await operator.offers("update_agent") else None

    async def started(self, slot: AgentSlot, pid: int) -> None:
        await self.operator.call("update_agent", agent_id=slot.agent_id, pid=pid)

    async def stopped(self, slots: list[AgentSlot]) -> None:
        for slot in slots:
            await self.operator.call("update_agent", agent_id=slot.agent_id, status="stopped")


async def launch(
    server_url: str, settings: LaunchSettings, stop: asyncio.Event, *, watch: Watch | None = None
) -> LaunchReport:
    """Run the agents until the project is finished, they have all ended, or `stop` is set."""
    started = time.monotonic()
    project = settings.project
    async with AgentClient(server_url, None, profile_path=OPERATOR_PATH) as operator:
        await check_personas(operator, settings.personas, project)
        slots = await register_slots(operator, server_url, settings.personas, project)
        book = await AgentBook.offered(operator)
        on_start = book.started if book is not None else None
        agents = asyncio.ensure_future(_run_agents(settings, slots, stop, on_start))
        stopped_by_caller = False
        try:
            while not agents.done():
                status = await operator.call("project_status", project=project)
                if watch is not None:
                    await watch(operator, status)
                if project_finished(status):  # agents stop by themselves when told all is done
                    await asyncio.wait({agents}, timeout=settings.grace_seconds)
                    break
                await asyncio.wait({agents}, timeout=POLL_SECONDS)
            stopped_by_caller = stop.is_set()
        finally:
            stop.set()  # agents still running are asked to hand back their leases and exit
            records = await agents
        if book is not None:
            await book.stopped(slots)
        status = await operator.call("project_status", project=project)
        costs = await operator.call("get_costs", project=project)
        if watch is not None:
            await watch(operator, status)
    return LaunchReport(
        status=status,
        costs=costs,
        records=records,
        slots=slots,
        elapsed_seconds=time.monotonic() - started,
        stopped=stopped_by_caller,
        coordination=settings.coordination,
    )


async def _run_agents(
    settings: LaunchSettings, slots: list[AgentSlot], stop: asyncio.Event, on_start: OnStart | None
) -> list[SlotRecord]:
    """Each agent supervised for the whole launch, or one session per task without coordination mode."""
    if settings.coordination:
        supervisor = Supervisor(
            settings.runner,
            slots,
            policy=settings.policy,
            grace_seconds=settings.grace_seconds,
            log_dir=settings.log_dir,
            on_start=on_start,
        )
        return await supervisor.run(stop)
    return await run_sessions(
        settings.runner,
        slots,
        stop,
        grace_seconds=settings.grace_seconds,
        log_dir=settings.log_dir,
        on_start=on_start,
    )


def summary_lines(report: LaunchReport) -> list[str]:
    """A few lines on how the launch ended, from the store."""
    status, tasks = report.status, report.status["tasks"]
    others = ", ".join(f"{n} {state}" for state, n in tasks.items() if n and state != "done")
    lines = [
        f"project {status['project']['name']}: {tasks.get('done', 0)} of {status['total_tasks']} tasks done"
        + (f" ({others})" if others else "")
        + f" in {report.elapsed_seconds:.1f} s"
        + ("; stopped before the end" if report.stopped else ""),
        f"cost: ${report.costs['total_usd']:.2f}",
    ]
    for record in report.records if report.coordination else []:
        if record.gave_up:
            lines.append(
                f"{record.slot.name} crashed {len(record.pids)} times (last exit {record.exit_codes[-1]}); "
                "it was not restarted again; see its log"
            )
        elif record.restarts:
            lines.append(f"{record.slot.name} was restarted {record.restarts} times after crashes")
    return lines
