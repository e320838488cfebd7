"""One agent session per task (`yokeflow launch` without --coordination-mode, the older YokeFlow way).

The launcher claims each task itself, with the agent's token, and starts one process for it
with YOKEFLOW_CLAIM_FILE (the claim as JSON), YOKEFLOW_TASK_ID and YOKEFLOW_LEASE_ID added; the
process completes or fails the task and exits. While it runs the launcher heartbeats the lease
too (a session may take a while to start). A session that ends with its task still leased (it
crashed, or exited without completing it) has the launcher fail the task, retryably, with the
exit code: that counts as an attempt, and the task is retried after its backoff; a stop hands
the task back instead. Each agent works its tasks one after another.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from launcher.leases import fail_if_held, keep_lease, release_if_held
from launcher.mcp_client import AgentClient
from launcher.runners.base import AgentSlot, Runner
from launcher.supervisor import OnStart, SlotRecord, run_all, run_process

log = logging.getLogger("yokeflow.sessions")

CLAIM_WAIT_SECONDS = 2.0


async def run_sessions(
    runner: Runner,
    slots: Sequence[AgentSlot],
    stop: asyncio.Event,
    *,
    grace_seconds: float = 10.0,
    log_dir: Path | None = None,
    on_start: OnStart | None = None,
) -> list[SlotRecord]:
    """Claim and hand out tasks, one session each, until nothing is left or `stop` is set."""
    records = [SlotRecord(slot) for slot in slots]

    async def serve(record: SlotRecord, claim_dir: Path) -> None:
        slot = record.slot
        async with AgentClient(slot.server_url, slot.token) as agent:
            while not stop.is_set():
                claim = await agent.call("claim_task", wait_seconds=CLAIM_WAIT_SECONDS)
                if claim["status"] != "claimed":
                    if claim["retry_after_seconds"] is None:
                        return
                    continue
                task, lease = claim["task"], claim["lease"]
                if stop.is_set():
                    await agent.call(
                        "release_task",
                        task_id=task["id"],
                        lease_id=lease["lease_id"],
                        note="launcher stopped",
                    )
                    return
                claim_file = claim_dir / f"{slot.name}-task-{task['id']}-attempt-{lease['attempt']}.json"
                await asyncio.to_thread(_write, claim_file, json.dumps(claim, indent=2))
                worktree = claim.get("worktree")
                session = replace(
                    slot, claim_file=claim_file, worktree=Path(worktree) if worktree else slot.worktree
                )
                keeper = asyncio.ensure_future(keep_lease(agent, task["id"], lease))
                try:
                    code = await run_process(
                        runner,
                        session,
                        record,
                        stop,
                        grace_seconds=grace_seconds,
                        log_dir=log_dir,
                        on_start=on_start,
                        extra_env={
                            "YOKEFLOW_TASK_ID": str(task["id"]),
                            "YOKEFLOW_LEASE_ID": lease["lease_id"],
                        },
                    )
                finally:
                    keeper.cancel()
                    await asyncio.gather(keeper, return_exceptions=True)
                if code != 0:
                    log.warning("the session of %s on task %s exited with %s", slot.name, task["id"], code)
                if stop.is_set():
                    await release_if_held(agent, task["id"], lease["lease_id"], "launcher stopped")
                else:  # counted as an attempt, retried after its backoff, and the next one knows why
                    await fail_if_held(agent, task["id"], lease["lease_id"], _unfinished(code))

    with tempfile.TemporaryDirectory(prefix="yokeflow-claims-") as folder:
        await run_all(serve(record, Path(folder)) for record in records)
    return records


def _unfinished(code: int) -> str:
    """The error of a session that left its task leased."""
    return f"the agent's session exited with code {code} without completing, failing or releasing the task"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
