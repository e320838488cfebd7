"""The command runner: any executable (another agent CLI, a script) as the agent, told who it is by env vars."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence

from coordinator.errors import ConfigError
from launcher.runners.base import AgentSlot


class CommandRunner:
    """Starts `argv` as each agent's process, with the YOKEFLOW_* variables of launcher/runners/base.py."""

    name = "command"

    def __init__(self, argv: Sequence[str]) -> None:
        # A relative path is taken from here: the agents themselves start in their worktrees.
        self.argv = [os.path.abspath(argv[0]) if os.sep in argv[0] else argv[0], *argv[1:]] if argv else []

    async def check(self) -> None:
        if not self.argv:
            raise ConfigError(
                "the command runner needs a command to run",
                fix="put it after `--`, e.g. yokeflow launch --runner command -- ./my-agent.sh --fast",
            )
        program = self.argv[0]
        if not await asyncio.to_thread(_executable, program):
            raise ConfigError(
                f"cannot run {program!r}: it is not an executable file"
                + ("" if os.sep in program else " on PATH"),
                fix="give the path of an executable (chmod +x it), or a program on PATH",
            )

    def command(self, slot: AgentSlot) -> list[str]:
        return list(self.argv)


def _executable(program: str) -> bool:
    """Whether `program` (a path, or a name looked up on PATH) is a file this user may run."""
    found = program if os.sep in program else shutil.which(program)
    return found is not None and os.path.isfile(found) and os.access(found, os.X_OK)
