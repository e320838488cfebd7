"""Live progress in the terminal, read from the store: a progress bar and what each agent is working on.

On a terminal the block is redrawn in place; otherwise (a pipe, a CI log) one plain line is
printed whenever the counts change.
"""

from __future__ import annotations

import time
from typing import Any, TextIO

from launcher.mcp_client import AgentClient

BAR_WIDTH = 30
_UP_AND_CLEAR = "\x1b[F\x1b[2K"


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class ProgressView:
    """A `launch` watch: call it with the operator's client and each project_status."""

    def __init__(self, stream: TextIO, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self._started = time.monotonic()
        self._drawn = 0
        self._last: tuple[int, int, int] | None = None

    async def __call__(self, operator: AgentClient, status: dict[str, Any]) -> None:
        tasks = status["tasks"]
        counts = (tasks.get("done", 0), status["running_tasks"], tasks.get("merging", 0))
        if not self.live:
            if counts != self._last:
                self.stream.write(self.headline(status) + "\n")
                self.stream.flush()
            self._last = counts
            return
        working = await operator.call("list_tasks", status="in_progress", limit=1000)
        titles = {task["id"]: task["title"] for task in working["tasks"]}
        lines = [self.headline(status), *self.agent_lines(status["active_agents"], titles)]
        self.stream.write(_UP_AND_CLEAR * self._drawn + "".join(line + "\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)

    def headline(self, status: dict[str, Any]) -> str:
        tasks, total = status["tasks"], status["total_tasks"]
        done = tasks.get("done", 0)
        elapsed = int(time.monotonic() - self._started)
        extra = "".join(
            f", {tasks[state]} {state}" for state in ("merging", "conflict", "failed") if tasks.get(state)
        )
        return (
            f"{progress_bar(done, total)} {done}/{total} done, {status['running_tasks']} running{extra}"
            f", {elapsed // 60}:{elapsed % 60:02d}"
        )

    @staticmethod
    def agent_lines(agents: list[dict[str, Any]], titles: dict[int, str]) -> list[str]:
        width = max((len(agent["name"]) for agent in agents), default=0)
        lines = []
        for agent in agents:
            held = agent["leased_task_ids"]
            doing = (
                ", ".join(f"#{i} {titles.get(i, '')}".rstrip() for i in held) if held else "waiting for work"
            )
            lines.append(f"  {agent['name']:<{width}}  {doing}")
        return lines
