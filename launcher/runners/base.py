"""What every runner shares: the agent slot, the environment of an agent's process, the Runner protocol.

Every agent runs as its own OS process (so its pid, crash and restart are real). A runner says
which command starts that process; the supervisor starts it with `agent_env(slot)` added to the
environment:

    YOKEFLOW_URL         the server's base URL, e.g. http://127.0.0.1:8765
    YOKEFLOW_MCP_URL     the worker MCP endpoint, YOKEFLOW_URL + /mcp/worker
    YOKEFLOW_TOKEN       the agent's bearer token (send `Authorization: Bearer <token>`)
    YOKEFLOW_AGENT_ID    the agent's id;  YOKEFLOW_AGENT_NAME its name;  YOKEFLOW_PERSONA its persona
    YOKEFLOW_WORKTREE    the agent's git worktree (empty when the project has no repository)
    YOKEFLOW_PROJECT     the project (empty: the server's default)
    YOKEFLOW_AGENT_INDEX the agent's number in this launch, from 0
    YOKEFLOW_RESTARTS    how often this agent's process was restarted before this one
    PORT                 4000 + 10 * YOKEFLOW_AGENT_INDEX: the first of ten ports the agent may use
                         for dev servers without colliding with the other agents
    YOKEFLOW_CLAIM_FILE, YOKEFLOW_TASK_ID, YOKEFLOW_LEASE_ID
                         only for one-task sessions (`yokeflow launch` without --coordination-mode):
                         the claim_task result as JSON, and the task and lease to work on

The sim and claude runners run `python -m launcher.agent_process --runner NAME …`, which reads
the slot back with `slot_from_env` and runs the runner module's `AgentMain`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from coordinator.errors import ConfigError

PORT_BASE = 4000
PORTS_PER_AGENT = 10


@dataclass(frozen=True)
class AgentSlot:
    """One registered agent and how to reach the server as it (one process at a time)."""

    agent_id: int
    name: str
    persona: str
    token: str
    server_url: str
    worktree: Path | None = None
    project: str | None = None
    index: int = 0
    restarts: int = 0
    claim_file: Path | None = None

    @property
    def port(self) -> int:
        return PORT_BASE + PORTS_PER_AGENT * self.index


class Runner(Protocol):
    """Starts agents of one kind; the launcher checks it once, then asks it for each agent's command."""

    name: str

    async def check(self) -> None:
        """Raise one clear error now if no agent could start (a missing CLI, API key or package)."""

    def command(self, slot: AgentSlot) -> list[str]:
        """The command line of `slot`'s process (its environment adds `agent_env(slot)`)."""


class AgentMain(Protocol):
    """The agent a `python -m launcher.agent_process --runner NAME` process runs."""

    async def run(self, slot: AgentSlot, stop: asyncio.Event) -> int:
        """Work until done or until `stop` is set (then hand back any lease); the exit code."""


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True as soon as `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def agent_process_command(runner: str, args: Sequence[str] = ()) -> list[str]:
    """The command that runs `runner`'s AgentMain in a process of its own."""
    return [sys.executable, "-m", "launcher.agent_process", "--runner", runner, *args]


def agent_env(slot: AgentSlot) -> dict[str, str]:
    """The environment variables an agent's process gets (see the module docstring)."""
    env = {
        "YOKEFLOW_URL": slot.server_url,
        "YOKEFLOW_MCP_URL": slot.server_url.rstrip("/") + "/mcp/worker",
        "YOKEFLOW_TOKEN": slot.token,
        "YOKEFLOW_AGENT_ID": str(slot.agent_id),
        "YOKEFLOW_AGENT_NAME": slot.name,
        "YOKEFLOW_PERSONA": slot.persona,
        "YOKEFLOW_WORKTREE": str(slot.worktree or ""),
        "YOKEFLOW_PROJECT": slot.project or "",
        "YOKEFLOW_AGENT_INDEX": str(slot.index),
        "YOKEFLOW_RESTARTS": str(slot.restarts),
        "PORT": str(slot.port),
    }
    if slot.claim_file is not None:
        env["YOKEFLOW_CLAIM_FILE"] = str(slot.claim_file)
    return env


def slot_from_env(env: Mapping[str, str] = os.environ) -> AgentSlot:
    """The slot `agent_env` described; a clear error when a variable is missing or wrong."""
    missing = [
        name
        for name in ("YOKEFLOW_URL", "YOKEFLOW_TOKEN", "YOKEFLOW_AGENT_ID", "YOKEFLOW_PERSONA")
        if not env.get(name)
    ]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set: this process must be started by `yokeflow launch`",
            fix="run agents through `yokeflow launch`, or set the YOKEFLOW_* variables yourself",
        )
    numbers = {}
    for name in ("YOKEFLOW_AGENT_ID", "YOKEFLOW_AGENT_INDEX", "YOKEFLOW_RESTARTS"):
        text = env.get(name) or "0"
        if not text.isdigit():
            raise ConfigError(f"{name}={text!r} is not a whole number", fix=f"set {name} to a number")
        numbers[name] = int(text)
    return AgentSlot(
        agent_id=numbers["YOKEFLOW_AGENT_ID"],
        name=env.get("YOKEFLOW_AGENT_NAME") or env["YOKEFLOW_PERSONA"],
        persona=env["YOKEFLOW_PERSONA"],
        token=env["YOKEFLOW_TOKEN"],
        server_url=env["YOKEFLOW_URL"],
        worktree=Path(env["YOKEFLOW_WORKTREE"]) if env.get("YOKEFLOW_WORKTREE") else None,
        project=env.get("YOKEFLOW_PROJECT") or None,
        index=numbers["YOKEFLOW_AGENT_INDEX"],
        restarts=numbers["YOKEFLOW_RESTARTS"],
        claim_file=Path(env["YOKEFLOW_CLAIM_FILE"]) if env.get("YOKEFLOW_CLAIM_FILE") else None,
    )
