"""What every service shares: the store, the config, who is calling, and the wake-up signal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from coordinator.config import Config
from coordinator.errors import InvalidInput, PermissionDenied
from coordinator.queries import get_project, only_project
from coordinator.records import Agent, Project
from coordinator.storage.base import Store, Tx

Role = Literal["operator", "planner", "worker", "observer"]


@dataclass(frozen=True)
class Caller:
    """Who is asking: an agent known by its token, or the local operator (CLI, stdio client)."""

    name: str
    role: Role
    agent: Agent | None = None

    @property
    def project_id(self) -> int | None:
        return self.agent.project_id if self.agent else None


OPERATOR = Caller(name="operator", role="operator")


def agent_caller(agent: Agent) -> Caller:
    return Caller(name=f"agent:{agent.id}:{agent.name}", role=agent.role, agent=agent)


class Wakeup:
    """Wakes long-polling claims in this process when something may have become ready."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        """Wait for the next notify, at most `seconds`; True if woken."""
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            return False
        return True


class ServiceBase:
    """Base of the coordinator's services."""

    def __init__(self, store: Store, config: Config, wakeup: Wakeup) -> None:
        self.store = store
        self.config = config
        self.wakeup = wakeup

    def now(self) -> float:
        return self.store.clock()

    async def resolve_project(self, tx: Tx, caller: Caller, project: int | str | None) -> Project:
        """The project a call is about: the agent's own, the one named, or the default one."""
        if caller.agent is not None:
            if project is not None and str(project) not in (str(caller.agent.project_id), ""):
                named = await get_project(tx, project)
                if named.id != caller.agent.project_id:
                    raise PermissionDenied(
                        f"your token belongs to project {caller.agent.project_id}, not {project!r}",
                        fix="omit the project argument, or use a token of that project",
                    )
            return await get_project(tx, caller.agent.project_id)
        if project is not None:
            return await get_project(tx, project)
        if self.config.server.project:
            return await get_project(tx, self.config.server.project)
        found = await only_project(tx)
        if found is None:
            raise InvalidInput(
                "project",
                "no project was named and there is not exactly one project",
                fix="pass project=<name or id>, or start the server with --project NAME",
            )
        return found


def require_role(caller: Caller, allowed: tuple[Role, ...], action: str) -> None:
    if caller.role in allowed:
        return
    agent_roles = [r for r in allowed if r != "operator"]
    article = "an" if caller.role[0] in "aeiou" else "a"
    raise PermissionDenied(
        f"{article} {caller.role} may not {action}",
        fix=f"use a token of an agent with role {' or '.join(agent_roles)}"
        if agent_roles
        else "do this as the local operator: the yokeflow CLI, or a stdio client started without a token",
    )
