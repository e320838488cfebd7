"""Supervision of agent processes: start one per slot, restart crashes with backoff, stop them all cleanly.

Each agent is a real OS process in a process group of its own (so a stop reaches whatever it
started, and Ctrl-C in the terminal reaches only the launcher, which then stops the agents).
A process that exits 0 has finished; any other exit is a crash and is restarted after
base * 2^n seconds, at most `max_restarts` times (it gets its task back while its lease lives,
in a project with a repository; else the lease expires and the task is claimed again). A stop sends SIGTERM to every group (agents hand back their leases), waits
`grace_seconds`, then SIGKILLs what is left. When `Supervisor.run` returns, nothing it started
is running. What the agents achieved is read from the store, never from here.
POSIX only (process groups and signals).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from launcher.runners.base import AgentSlot, Runner, agent_env, stopped_within

log = logging.getLogger("yokeflow.supervisor")

GROUP_EXIT_SECONDS = 5.0
"""How long a stop waits for the killed members of an agent's process group to be gone."""
GROUP_POLL_SECONDS = 0.01

OnStart = Callable[[AgentSlot, int], Awaitable[None]]
"""Called with the slot and the real pid each time a process of the slot starts."""


class AgentProcess:
    """One agent's OS process, leading a process group of its own; output goes to a log file."""

    def __init__(self, process: asyncio.subprocess.Process, output: IO[bytes] | None) -> None:
        self._process = process
        self._output = output

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    async def start(
        cls, command: Sequence[str], env: Mapping[str, str], *, cwd: Path | None, log_path: Path | None
    ) -> AgentProcess:
        """Start `command` with `env` added to this process's environment."""
        output = await asyncio.to_thread(_open_log, log_path) if log_path is not None else None
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                env={**os.environ, **env},
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT if output is not None else None,
                start_new_session=True,
            )
        except BaseException:
            if output is not None:
                output.close()
            raise
        return cls(process, output)

    async def finish(self, stop: asyncio.Event, grace_seconds: float) -> int:
        """Wait until the process exits, or stop it when `stop` is set; its exit code.

        Afterwards nothing of its process group is left running, even when this is cancelled.
        """
        exited = asyncio.ensure_future(self._process.wait())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                self._signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(exited), grace_seconds)
                except TimeoutError:
                    log.warning(
                        "agent process %s ignored SIGTERM for %gs; killing it", self.pid, grace_seconds
                    )
            return await self._end(exited)
        except BaseException:
            await self._end(exited)
            raise
        finally:
            stopping.cancel()

    async def _end(self, exited: asyncio.Future[int]) -> int:
        """Kill whatever is left of the group, reap the process, see the group gone and close its log."""
        self._signal(signal.SIGKILL)
        code = await asyncio.shield(exited)
        # A killed process dies when the kernel next runs it, and an orphan is reaped by init: look
        # again until the group is gone (bounded).
        for _ in range(round(GROUP_EXIT_SECONDS / GROUP_POLL_SECONDS)):
            if not self._signal(0):
                break
            await asyncio.sleep(GROUP_POLL_SECONDS)
        if self._output is not None:
            self._output.close()
        return code

    def _signal(self, signum: int) -> bool:
        """Send `signum` to the process group; False when no process of it is left."""
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            return False
        return True


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")  # closed when the process has ended


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 3
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 30.0

    def delay(self, restarts: int) -> float:
        """Seconds to wait before restart number `restarts + 1`."""
        return float(min(self.backoff_max_seconds, self.backoff_base_seconds * 2**restarts))


@dataclass
class SlotRecord:
    """What the supervisor did for one slot: its processes' pids and exit codes."""

    slot: AgentSlot
    pids: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    gave_up: bool = False

    @property
    def restarts(self) -> int:
        return max(0, len(self.pids) - 1)


class Supervisor:
    """Keeps one process per slot running (see the module docstring)."""

    def __init__(
        self,
        runner: Runner,
        slots: Sequence[AgentSlot],
        *,
        policy: RestartPolicy | None = None,
        grace_seconds: float = 10.0,
        log_dir: Path | None = None,
        on_start: OnStart | None = None,
    ) -> None:
        self.runner = runner
        self.records = [SlotRecord(slot) for slot in slots]
        self.policy = policy or RestartPolicy()
        self.grace_seconds = grace_seconds
        self.log_dir = log_dir
        self.on_start = on_start

    @property
    def pids(self) -> list[int]:
        """Every pid started so far, in order."""
        return [pid for record in self.records for pid in record.pids]

    async def run(self, stop: asyncio.Event) -> list[SlotRecord]:
        """Run until every slot has finished or given up, or until `stop` is set; nothing is left running."""
        await run_all(self._keep(record, stop) for record in self.records)
        return self.records

    async def _keep(self, record: SlotRecord, stop: asyncio.Event) -> None:
        while not stop.is_set():
            slot = replace(record.slot, restarts=len(record.pids))
            code = await run_process(
                self.runner,
                slot,
                record,
                stop,
                grace_seconds=self.grace_seconds,
                log_dir=self.log_dir,
                on_start=self.on_start,
            )
            if code == 0 or stop.is_set():
                return
            if record.restarts >= self.policy.max_restarts:
                log.error(
                    "%s crashed (exit %s) %d times; not restarting it", slot.name, code, len(record.pids)
                )
                record.gave_up = True
                return
            delay = self.policy.delay(record.restarts)
            log.warning("%s crashed (exit %s); restarting it in %gs", slot.name, code, delay)
            await stopped_within(stop, delay)


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; when one fails (or this is cancelled) the others are cancelled too
    (which stops their processes) before the error goes on."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_process(
    runner: Runner,
    slot: AgentSlot,
    record: SlotRecord,
    stop: asyncio.Event,
    *,
    grace_seconds: float,
    log_dir: Path | None,
    on_start: OnStart | None,
    extra_env: Mapping[str, str] | None = None,
) -> int:
    """Run one process of `slot` to its end (stopping it when `stop` is set); its exit code, in `record` too."""
    process = await AgentProcess.start(
        runner.command(slot),
        {**agent_env(slot), **(extra_env or {})},
        cwd=slot.worktree,
        log_path=log_dir / f"{slot.name}.log" if log_dir else None,
    )
    record.pids.append(process.pid)
    finished = asyncio.ensure_future(process.finish(stop, grace_seconds))
    try:
        if on_start is not None:
            await on_start(slot, process.pid)
        code = await finished
    except BaseException:
        finished.cancel()
        await asyncio.gather(finished, return_exceptions=True)
        raise
    record.exit_codes.append(code)
    return code
