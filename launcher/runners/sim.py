"""The sim agent: a deterministic stand-in for a language model that drives the server like a real agent.

Loop: claim_task (the server waits for ready work) → take estimate * time_scale seconds,
heartbeating with a progress note → in a worktree: catch up with the target branch if the branch
is behind it (a reviewer follow-up on a conflicted branch), write the task's files and commit →
record_cost → complete_task with the summary, files and commit. It stops when a claim answers
with no retry time (all done, budget spent, only failures left), or when told to stop (then it
releases its lease). Injected faults: failures (`--fail-rate`, drawn per task and attempt from
`--seed`), a hard crash after N claims, heartbeats that stop so the lease expires.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from launcher.mcp_client import AgentClient, ToolCallError
from launcher.runners.base import AgentSlot, agent_process_command, stopped_within
from launcher.runners.sim_git import OutsideWorktree, Workspace

log = logging.getLogger("yokeflow.sim")

CRASH_EXIT_CODE = 75
DEFAULT_MODEL = "sonnet"


@dataclass(frozen=True)
class SimOptions:
    """How the sim agents behave; the same options give the same behaviour."""

    time_scale: float = 0.05
    fail_rate: float = 0.0
    seed: int = 0
    crash_after: int | None = None
    slow_heartbeat: bool = False
    claim_wait: float = 2.0

    def args(self) -> list[str]:
        """These options as `agent_process` arguments."""
        args = [
            f"--time-scale={self.time_scale!r}",
            f"--fail-rate={self.fail_rate!r}",
            f"--seed={self.seed}",
            f"--claim-wait={self.claim_wait!r}",
        ]
        if self.crash_after is not None:
            args.append(f"--crash-after={self.crash_after}")
        if self.slow_heartbeat:
            args.append("--slow-heartbeat")
        return args


def add_sim_options(parser: argparse.ArgumentParser) -> None:
    """The sim agent's options, for `yokeflow launch` and `agent_process`."""
    parser.add_argument(
        "--time-scale",
        type=non_negative,
        default=SimOptions.time_scale,
        help=f"sim: seconds of work per unit of a task's estimate (default {SimOptions.time_scale})",
    )
    parser.add_argument(
        "--fail-rate",
        type=_fraction,
        default=0.0,
        help="sim: chance (0-1) that an attempt fails, drawn per task and attempt from --seed",
    )
    parser.add_argument("--seed", type=int, default=0, help="sim: seed of the injected failures")
    parser.add_argument(
        "--crash-after",
        type=_positive,
        metavar="N",
        help="sim: the first agent's process exits hard holding its Nth lease (once; its restart works)",
    )
    parser.add_argument(
        "--slow-heartbeat",
        action="store_true",
        help="sim: the first agent stops heartbeating, so each of its leases expires and is taken over",
    )
    parser.add_argument(
        "--claim-wait",
        type=non_negative,
        default=SimOptions.claim_wait,
        help=argparse.SUPPRESS,  # how long one claim waits for work; also bounds how long a stop takes
    )


def options_from(args: argparse.Namespace) -> SimOptions:
    return SimOptions(
        time_scale=args.time_scale,
        fail_rate=args.fail_rate,
        seed=args.seed,
        crash_after=args.crash_after,
        slow_heartbeat=args.slow_heartbeat,
        claim_wait=args.claim_wait,
    )


class SimRunner:
    """Runs every agent as `python -m launcher.agent_process --runner sim`; faults go to the first agent only."""

    name = "sim"

    def __init__(self, options: SimOptions) -> None:
        self.options = options

    async def check(self) -> None:
        """The sim needs nothing beyond this package."""

    def command(self, slot: AgentSlot) -> list[str]:
        options = (
            self.options if slot.index == 0 else replace(self.options, crash_after=None, slow_heartbeat=False)
        )
        return agent_process_command(self.name, options.args())


def agent_from_args(argv: Sequence[str]) -> SimAgent:
    """The sim agent of `agent_process --runner sim ARGS`."""
    parser = argparse.ArgumentParser(prog="agent_process --runner sim")
    add_sim_options(parser)
    return SimAgent(options_from(parser.parse_args(list(argv))))


class SimAgent:
    """One sim agent process: claims and works tasks until nothing is left or it is stopped."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.claims = 0

    async def run(self, slot: AgentSlot, stop: asyncio.Event) -> int:
        async with AgentClient(slot.server_url, slot.token) as client:
            if slot.claim_file is not None:  # a one-task session: the launcher claimed for us
                claim = json.loads(await asyncio.to_thread(slot.claim_file.read_text, encoding="utf-8"))
                await self._work(client, slot, claim, stop)
                return 0
            while not stop.is_set():
                claim = await client.call("claim_task", wait_seconds=self.options.claim_wait)
                if claim["status"] == "claimed":
                    await self._work(client, slot, claim, stop)
                elif claim["retry_after_seconds"] is None:
                    log.info("%s stops: %s", slot.name, claim["message"])
                    return 0
        log.info("%s stops: it was asked to", slot.name)
        return 0

    async def _work(
        self, client: AgentClient, slot: AgentSlot, claim: dict[str, Any], stop: asyncio.Event
    ) -> None:
        """Work one claimed task to its end; a lost lease ends it quietly (someone else has the task)."""
        self.claims += 1
        task, lease = claim["task"], claim["lease"]
        if slot.restarts == 0 and self.options.crash_after == self.claims:
            log.warning("%s crashes holding task %s (--crash-after)", slot.name, task["id"])
            os._exit(CRASH_EXIT_CODE)
        held = {"task_id": task["id"], "lease_id": lease["lease_id"]}
        try:
            worktree = claim.get("worktree") or slot.worktree
            workspace = Workspace(Path(worktree), slot.name) if worktree else None
            if workspace is not None and claim.get("target_branch"):
                await workspace.catch_up(claim["target_branch"])
            if not await self._pretend_to_work(client, task, lease, stop):
                await client.call("release_task", **held, note=f"{slot.name} was stopped; nothing committed")
                return
            if self.fails(task):
                error = f"sim: injected failure (--fail-rate {self.options.fail_rate:g}, --seed {self.options.seed})"
                await client.call("fail_task", **held, error=error, retryable=True)
                return
            files: list[str] = []
            commit = None
            if workspace is not None:
                try:
                    files = await workspace.write_task(task)
                except OutsideWorktree as exc:
                    await client.call("fail_task", **held, error=str(exc), retryable=False)
                    return
                commit = await workspace.commit(f"task {task['id']}: {task['title']}\n\nby {slot.name} (sim)")
            await self._record_cost(client, task, claim)
            await client.call(
                "complete_task", **held, summary=f"sim: {task['title']}", files_changed=files, commit=commit
            )
        except ToolCallError as exc:
            if exc.error_code != "lease_lost":
                raise
            log.info("%s lost task %s: %s", slot.name, task["id"], exc)

    async def _pretend_to_work(
        self, client: AgentClient, task: dict[str, Any], lease: dict[str, Any], stop: asyncio.Event
    ) -> bool:
        """Take the task's time, heartbeating with a progress note; False when stopped first."""
        total = float(task["estimate"]) * self.options.time_scale
        interval = float(lease["heartbeat_interval_seconds"])
        if self.options.slow_heartbeat:
            total = max(total, float(lease["ttl_seconds"]) + interval)  # long enough for the lease to expire
        spent = 0.0
        while spent < total:
            step = min(interval, total - spent)
            if await stopped_within(stop, step):
                return False
            spent += step
            if spent < total and not self.options.slow_heartbeat:
                note = f"{round(100 * spent / total)}% of task {task['id']}"
                await client.call(
                    "heartbeat", task_id=task["id"], lease_id=lease["lease_id"], progress_note=note
                )
        return True

    def fails(self, task: dict[str, Any]) -> bool:
        """Whether this attempt of the task fails (--fail-rate), drawn from the seed, the task and the attempt."""
        draw = random.Random(f"{self.options.seed}:{task['id']}:{task['attempts']}").random()
        return draw < self.options.fail_rate

    async def _record_cost(self, client: AgentClient, task: dict[str, Any], claim: dict[str, Any]) -> None:
        """A plausible cost: tokens grow with the estimate; the recommended model, else sonnet."""
        estimate = float(task["estimate"])
        recommendation = (claim.get("context") or {}).get("model_recommendation") or {}
        await client.call(
            "record_cost",
            model=recommendation.get("model") or DEFAULT_MODEL,
            input_tokens=round(3_000 + 4_000 * estimate),
            output_tokens=round(500 + 1_200 * estimate),
            cache_read_tokens=round(8_000 * estimate),
            task_id=task["id"],
        )


def non_negative(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of seconds, 0 or more")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number, 1 or more")
    return int(text)
