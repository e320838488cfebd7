"""A worker process for the reliability tests: real agents on a real database, in their own OS process.

Two modes, each talking to the test over JSON lines on stdout (and one line on stdin):

    python tests/workers/claim_worker.py work --url URL --project NAME --workers 8
        opens the coordinator (migrating a fresh database if it is the first), prints
        {"event": "ready"}, waits for one line on stdin (the start signal, so every process
        races from the same moment), registers `--workers` agents and runs them as concurrent
        asyncio tasks, each looping claim -> heartbeat -> complete until it hears `all_done`;
        prints {"event": "done", "completed": {agent_id: [task ids]}} and exits 0.

    python tests/workers/claim_worker.py hold --url URL --project NAME --ttl 5 --note TEXT
        registers one agent, claims one task with a `--ttl` second lease, heartbeats once with
        `--note`, prints {"event": "holding", "task_id", "lease_id", "agent_id"} and sleeps until
        it is killed.

`work_until_done` is also imported by the in-process tests, so both run the same loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from coordinator.config import Config
from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.service import Coordinator
from coordinator.work import Claimed, NoWork


async def work_until_done(coord: Coordinator, caller: Caller, *, wait_seconds: float = 0.5) -> list[int]:
    """Claim, heartbeat once, complete, until the project is all done; return the task ids completed.

    Any other outcome (a lease lost, a project blocked by failures) is a failure of the test run.
    """
    completed: list[int] = []
    while True:
        outcome = await coord.work.claim(caller, wait_seconds=wait_seconds)
        if isinstance(outcome, NoWork):
            if outcome.reason == "all_done":
                return completed
            if outcome.reason == "waiting":
                continue
            raise RuntimeError(
                f"{caller.name}: unexpected answer to claim: {outcome.reason}: {outcome.message}"
            )
        assert isinstance(outcome, Claimed)
        task_id, lease_id = outcome.task.id, outcome.lease.lease_id
        await coord.work.heartbeat(
            caller, task_id=task_id, lease_id=lease_id, progress_note=f"{caller.name} on it"
        )
        await coord.work.complete(
            caller, task_id=task_id, lease_id=lease_id, summary=f"done by {caller.name}"
        )
        completed.append(task_id)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def wait_for_start_signal() -> None:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("stdin closed before the start signal")


async def open_coordinator(url: str, pool_max_size: int) -> Coordinator:
    config = Config.model_validate({"database": {"pool_min_size": 1, "pool_max_size": pool_max_size}})
    return await Coordinator.open(url, config)


async def work(args: argparse.Namespace) -> None:
    coord = await open_coordinator(args.url, args.pool_max_size)
    try:
        emit({"event": "ready"})
        await wait_for_start_signal()
        callers = []
        for index in range(args.workers):
            registered = await coord.agents.register(
                OPERATOR, persona="implementer", project=args.project, name=f"{args.name}-{index}"
            )
            callers.append(agent_caller(registered.agent))
        results = await asyncio.gather(
            *(work_until_done(coord, caller, wait_seconds=args.wait) for caller in callers)
        )
        emit(
            {
                "event": "done",
                "completed": {
                    str(c.agent.id): ids for c, ids in zip(callers, results, strict=True) if c.agent
                },
            }
        )
    finally:
        await coord.close()


async def hold(args: argparse.Namespace) -> None:
    coord = await open_coordinator(args.url, args.pool_max_size)
    registered = await coord.agents.register(
        OPERATOR, persona="implementer", project=args.project, name=args.name
    )
    caller = agent_caller(registered.agent)
    outcome = await coord.work.claim(caller, ttl_seconds=args.ttl)
    if not isinstance(outcome, Claimed):
        raise SystemExit(f"nothing to claim: {outcome}")
    await coord.work.heartbeat(
        caller,
        task_id=outcome.task.id,
        lease_id=outcome.lease.lease_id,
        progress_note=args.note,
        ttl_seconds=args.ttl,
    )
    emit(
        {
            "event": "holding",
            "task_id": outcome.task.id,
            "lease_id": outcome.lease.lease_id,
            "agent_id": registered.agent.id,
        }
    )
    await asyncio.Event().wait()  # "working" until SIGKILL


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("work", "hold"):
        p = sub.add_parser(mode)
        p.add_argument("--url", required=True)
        p.add_argument("--project", required=True)
        p.add_argument("--name", default=mode)
        p.add_argument("--pool-max-size", type=int, default=4)
    sub.choices["work"].add_argument("--workers", type=int, default=4)
    sub.choices["work"].add_argument("--wait", type=float, default=0.5)
    sub.choices["hold"].add_argument("--ttl", type=float, default=5.0)
    sub.choices["hold"].add_argument("--note", default="")
    args = parser.parse_args()
    asyncio.run(work(args) if args.mode == "work" else hold(args))


if __name__ == "__main__":
    main()
