"""`python -m launcher.agent_process --runner sim|claude [runner options]`: one agent in a process of its own.

The launcher starts it with the YOKEFLOW_* environment (see launcher/runners/base.py). SIGTERM
or SIGINT asks the agent to stop: it hands back its lease and exits 0. A crash exits non-zero,
and the launcher's supervisor starts the process again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence

from coordinator.errors import YokeflowError
from launcher.runners.base import AgentMain, slot_from_env

IN_PROCESS_RUNNERS = ("sim", "claude")


def load_agent(runner: str, argv: Sequence[str]) -> AgentMain:
    """The AgentMain of runner module `launcher.runners.<runner>`, from its options."""
    module = importlib.import_module(f"launcher.runners.{runner}")
    agent: AgentMain = module.agent_from_args(argv)
    return agent


class StopSignal:
    """SIGTERM/SIGINT handler that asks the agent to stop, from the first moment of the process to its last
    (a signal before the agent runs is remembered; one while it exits changes nothing)."""

    def __init__(self) -> None:
        self.asked = False
        self._wake: Callable[[], object] | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.asked = True
        if self._wake is not None:
            self._wake()

    @contextlib.contextmanager
    def setting(self, stop: asyncio.Event) -> Iterator[None]:
        """While the block runs, a signal sets `stop` (at once if one came already)."""
        loop = asyncio.get_running_loop()
        self._wake = lambda: loop.call_soon_threadsafe(stop.set)
        if self.asked:
            stop.set()
        try:
            yield
        finally:
            self._wake = None


async def run_agent(runner: str, argv: Sequence[str], signals: StopSignal) -> int:
    slot = slot_from_env()
    agent = load_agent(runner, argv)
    stop = asyncio.Event()
    with signals.setting(stop):
        return await agent.run(slot, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.agent_process", description=__doc__)
    parser.add_argument("--runner", choices=IN_PROCESS_RUNNERS, required=True)
    args, rest = parser.parse_known_args(argv)
    signals = StopSignal()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signals)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    for chatty in ("httpx2", "httpcore2", "mcp"):  # one line per request would bury the agent's own lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return asyncio.run(run_agent(args.runner, rest, signals))
    except YokeflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
