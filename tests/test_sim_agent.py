"""The sim agent: its work loop over real HTTP MCP (both backends), its faults, and its git work in real repos."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from coordinator.config import ParallelConfig
from coordinator.errors import ConfigError
from launcher.embedded_server import embedded_server
from launcher.mcp_client import OPERATOR_PATH, AgentClient, ToolCallError
from launcher.runners.base import AgentSlot, agent_env, slot_from_env
from launcher.runners.sim import SimAgent, SimOptions, SimRunner, agent_from_args
from launcher.runners.sim_git import OutsideWorktree, Workspace
from launcher.team import register_slots
from tests.conftest import Database
from tests.gitrepo import git, make_repo
from tests.sim_support import (
    DIAMOND_PLAN,
    ONE_TASK_PLAN,
    completed_once_in_order,
    event_log,
    fast_config,
    import_plan,
    tasks_of,
)


async def run_agents(base: str, agents: list[SimAgent], personas: list[str] | None = None) -> list[AgentSlot]:
    """Register one agent per sim agent and run them all (in this process) until they stop."""
    async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
        slots = await register_slots(operator, base, personas or ["implementer"] * len(agents), None)
    stop = asyncio.Event()
    codes = await asyncio.gather(*(agent.run(slot, stop) for agent, slot in zip(agents, slots, strict=True)))
    assert codes == [0] * len(agents)
    return slots


async def test_sim_agents_work_a_plan_with_heartbeats_and_costs(database: Database) -> None:
    config = fast_config()
    task_ids = await import_plan(database.url, config, DIAMOND_PLAN)
    options = SimOptions(time_scale=1.2, claim_wait=1.0)  # each task takes 1.2 s: one heartbeat each
    async with embedded_server(database.url, config) as base:
        slots = await run_agents(base, [SimAgent(options), SimAgent(options)])
        async with AgentClient(base, None, profile_path="/mcp/observer") as observer:
            costs = await observer.call("get_costs")
    events, edges = await event_log(database.url)
    completed_once_in_order(events, edges, task_ids.values())
    notes = {e["task_id"]: e["payload"]["note"] for e in events if e["kind"] == "lease_heartbeat"}
    assert set(notes) == set(task_ids.values())
    assert all(re.fullmatch(rf"\d+% of task {task}", note) for task, note in notes.items()), notes
    assert len(costs["by_task"]) == len(task_ids) and all(
        line["operations"] == 1 for line in costs["by_task"]
    )
    # the sim records its cost under the model each claim recommended (haiku for these small tasks)
    assert {line["key"] for line in costs["by_model"]} == {"haiku"} and costs["total_usd"] > 0
    assert {e["agent_id"] for e in events if e["kind"] == "task_completed"} <= {s.agent_id for s in slots}


async def test_injected_failures_follow_the_seed(database: Database) -> None:
    config = fast_config(max_attempts=5)
    await import_plan(database.url, config, DIAMOND_PLAN)
    options = SimOptions(time_scale=0.0, fail_rate=0.5, seed=3, claim_wait=1.0)
    agent = SimAgent(options)
    async with embedded_server(database.url, config) as base:
        await run_agents(base, [agent])
    events, _ = await event_log(database.url)
    failed = {
        (e["task_id"], e["payload"]["attempt"])
        for e in events
        if e["kind"] in ("task_retry_scheduled", "task_failed")
        and e["payload"]["error"].startswith("sim: injected")
    }
    attempts = [(e["task_id"], e["payload"]["attempt"]) for e in events if e["kind"] == "task_claimed"]
    assert failed, "seed 3 fails some attempts of this plan"
    for task_id, attempt in attempts:
        assert agent.fails({"id": task_id, "attempts": attempt}) == ((task_id, attempt) in failed)
    draws = {SimAgent(SimOptions(fail_rate=0.5, seed=s)).fails({"id": 1, "attempts": 1}) for s in range(20)}
    assert draws == {True, False}, "other seeds fail other attempts"


async def claimed_for(base: str, slot: AgentSlot, folder: Path) -> AgentSlot:
    """`slot` holding a fresh claim, handed over in a claim file (as the launcher does for one-task sessions)."""
    async with AgentClient(base, slot.token) as agent:
        claim = await agent.call("claim_task")
    assert claim["status"] == "claimed"
    claim_file = folder / f"claim-{slot.agent_id}.json"
    claim_file.write_text(json.dumps(claim))
    return replace(slot, claim_file=claim_file)


async def test_an_agent_that_stops_heartbeating_loses_its_task_to_another(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    task_ids = await import_plan(database.url, config, ONE_TASK_PLAN)
    async with embedded_server(database.url, config) as base:
        async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
            slow_slot, steady_slot = await register_slots(
                operator, base, ["implementer", "implementer"], None
            )
        holding = await claimed_for(base, slow_slot, tmp_path)
        stop = asyncio.Event()
        slow = SimAgent(SimOptions(slow_heartbeat=True)).run(holding, stop)
        steady = SimAgent(SimOptions(time_scale=0.0, claim_wait=1.0)).run(steady_slot, stop)
        assert await asyncio.gather(slow, steady) == [0, 0]
    events, edges = await event_log(database.url)
    completed_once_in_order(events, edges, task_ids.values())
    by_slow = {e["kind"] for e in events if e["agent_id"] == slow_slot.agent_id and e["task_id"]}
    assert "task_claimed" in by_slow and not by_slow & {"lease_heartbeat", "task_completed"}, by_slow
    takeover = next(
        e for e in events if e["kind"] == "task_claimed" and e["agent_id"] == steady_slot.agent_id
    )
    assert takeover["payload"]["took_over_from_agent"] == slow_slot.agent_id


async def test_an_agent_asked_to_stop_releases_its_task(database: Database, tmp_path: Path) -> None:
    config = fast_config()
    await import_plan(database.url, config, ONE_TASK_PLAN)
    async with embedded_server(database.url, config) as base:
        async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
            (slot,) = await register_slots(operator, base, ["implementer"], None)
        stop = asyncio.Event()
        stop.set()  # asked to stop as it starts on its task
        assert (
            await SimAgent(SimOptions(time_scale=600.0)).run(await claimed_for(base, slot, tmp_path), stop)
            == 0
        )
        async with AgentClient(base, None, profile_path="/mcp/observer") as observer:
            status = await observer.call("project_status")
    assert status["tasks"]["pending"] == 1 and status["running_tasks"] == 0
    events, _ = await event_log(database.url)
    released = next(e for e in events if e["kind"] == "task_released")
    assert released["agent_id"] == slot.agent_id and released["payload"]["note"].startswith(
        "implementer-1 was stopped"
    )


async def test_a_tool_error_names_the_tool_the_problem_and_the_fix(database: Database) -> None:
    config = fast_config()
    await import_plan(database.url, config, ONE_TASK_PLAN)
    async with embedded_server(database.url, config) as base:
        async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
            (slot,) = await register_slots(operator, base, ["implementer"], None)
        async with AgentClient(base, slot.token) as agent:
            claim = await agent.call("claim_task")
            with pytest.raises(ToolCallError) as lost:
                await agent.call("heartbeat", task_id=claim["task"]["id"], lease_id="not-the-lease")
            with pytest.raises(ToolCallError) as denied:
                await agent.call("register_agent", persona="implementer")
    assert lost.value.error_code == "lease_lost" and lost.value.tool == "heartbeat"
    assert (
        str(lost.value).startswith("heartbeat: lease lost")
        and lost.value.fix
        and "claim_task" in lost.value.fix
    )
    assert denied.value.error_code == "permission_denied"


# ------------------------------------------------------------------------------ process plumbing


def test_the_slot_travels_through_the_environment(tmp_path: Path) -> None:
    slot = AgentSlot(
        agent_id=7,
        name="reviewer-2",
        persona="reviewer",
        token="yf_secret",
        server_url="http://127.0.0.1:9999",
        worktree=tmp_path / "wt",
        project="shop",
        index=3,
        restarts=1,
    )
    env = agent_env(slot)
    assert env["YOKEFLOW_MCP_URL"] == "http://127.0.0.1:9999/mcp/worker" and env["PORT"] == "4030"
    assert slot_from_env(env) == slot
    with pytest.raises(
        ConfigError, match="YOKEFLOW_URL, YOKEFLOW_TOKEN, YOKEFLOW_AGENT_ID, YOKEFLOW_PERSONA not set"
    ):
        slot_from_env({})
    with pytest.raises(ConfigError, match="YOKEFLOW_AGENT_ID='seven' is not a whole number"):
        slot_from_env({**env, "YOKEFLOW_AGENT_ID": "seven"})


def test_faults_go_to_the_first_agent_only_and_survive_the_command_line() -> None:
    options = SimOptions(
        time_scale=0.25, fail_rate=0.1, seed=9, crash_after=2, slow_heartbeat=True, claim_wait=1.5
    )
    runner = SimRunner(options)
    first, second = (AgentSlot(i + 1, f"a{i}", "implementer", "t", "http://x", index=i) for i in range(2))
    assert agent_from_args(runner.command(first)[5:]).options == options
    others = agent_from_args(runner.command(second)[5:]).options
    assert others == SimOptions(time_scale=0.25, fail_rate=0.1, seed=9, claim_wait=1.5)
    with pytest.raises(SystemExit):
        agent_from_args(["--fail-rate", "2"])


# ------------------------------------------------------------------------------------ git work


def task(task_id: int, title: str, files: list[str] | None = None) -> dict[str, Any]:
    return {"id": task_id, "title": title, "predicted_files": files or []}


async def test_the_sim_writes_and_commits_each_tasks_files(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    work = Workspace(repo, "implementer-1")
    assert await work.write_task(task(4, "Users endpoint", ["api/users.py", "api/routes.py"])) == [
        "api/users.py",
        "api/routes.py",
    ]
    first = await work.commit("task 4: Users endpoint")
    assert await work.write_task(task(5, "Orders endpoint", ["api/routes.py"])) == ["api/routes.py"]
    assert await work.write_task(task(6, "No files named")) == ["tasks/task-6.md"]
    second = await work.commit("tasks 5 and 6")
    assert (repo / "api" / "routes.py").read_text() == "task 4: Users endpoint\ntask 5: Orders endpoint\n"
    assert (repo / "tasks" / "task-6.md").read_text() == "task 6: No files named\n"
    assert git(repo, "rev-parse", "HEAD") == second and git(repo, "rev-parse", "HEAD~1") == first
    assert (
        git(repo, "log", "-1", "--format=%an <%ae>")
        == "implementer-1 <implementer-1@agents.yokeflow.invalid>"
    )
    assert git(repo, "status", "--porcelain") == ""
    with pytest.raises(OutsideWorktree, match=r"'\.\./escape\.txt' of task 7 lies outside the worktree"):
        await work.write_task(task(7, "Escape", ["../escape.txt"]))


async def test_catching_up_merges_the_target_and_resolves_conflicts_as_a_union(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    work = Workspace(repo, "reviewer-1")
    git(repo, "switch", "-q", "-c", "task-1")
    await work.write_task(task(1, "Left side", ["shared.txt", "left.txt"]))
    await work.commit("task 1")
    assert await work.catch_up("main") is False, "main is in the branch already"
    git(repo, "switch", "-q", "main")
    await work.write_task(task(2, "Right side", ["shared.txt"]))
    await work.commit("task 2 on main")
    git(repo, "switch", "-q", "task-1")

    assert await work.catch_up("main") is True
    assert (repo / "shared.txt").read_text() == "task 2: Right side\ntask 1: Left side\n"
    assert (repo / "left.txt").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert len(git(repo, "log", "-1", "--format=%P").split()) == 2, "a merge commit"
    assert git(repo, "merge-base", "--is-ancestor", "main", "HEAD") == ""
    assert git(repo, "merge-tree", "--write-tree", "main", "HEAD"), "the branch now merges into main cleanly"


CLASHING_PLAN = """
project: clash
epics:
  - key: work
    name: Work
    tasks:
      - {key: left, title: Left, predicted_files: [shared.txt]}
      - {key: right, title: Right, predicted_files: [shared.txt]}
"""


async def test_a_reviewer_sim_resolves_a_merge_conflict_on_the_same_branch(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config().model_copy(update={"parallel": ParallelConfig(avoid_file_conflicts=False)})
    repo = make_repo(tmp_path / "repo")
    task_ids = await import_plan(database.url, config, CLASHING_PLAN)
    async with embedded_server(database.url, config, repo=repo) as base:
        async with AgentClient(base, None, profile_path=OPERATOR_PATH) as operator:
            left, right, reviewer = await register_slots(
                operator, base, ["implementer", "implementer", "reviewer"], None
            )
        # Both branches start from the same main, and both add shared.txt: the second merge conflicts.
        both = [await claimed_for(base, slot, tmp_path) for slot in (left, right)]
        stop = asyncio.Event()
        assert await asyncio.gather(*(SimAgent(SimOptions(time_scale=0.0)).run(s, stop) for s in both)) == [
            0,
            0,
        ]
        assert await SimAgent(SimOptions(time_scale=0.0, claim_wait=1.0)).run(reviewer, stop) == 0
        async with AgentClient(base, None, profile_path="/mcp/observer") as observer:
            status = await observer.call("project_status")
    assert status["tasks"]["done"] == status["total_tasks"] == 3
    events, _ = await event_log(database.url)
    conflicted = [e["task_id"] for e in events if e["kind"] == "task_merge_conflict"]
    assert len(conflicted) == 1 and conflicted[0] in task_ids.values()
    follow_up = next(t for t in (await tasks_of(database.url)).values() if t.metadata.get("follow_up_of"))
    assert follow_up.persona == "reviewer" and follow_up.metadata["follow_up_of"] == conflicted[0]
    assert {e["task_id"] for e in events if e["kind"] == "task_merged"} == {*task_ids.values(), follow_up.id}
    left_id, right_id = sorted(task_ids.values())
    assert sorted(git(repo, "show", "main:shared.txt").splitlines()) == [
        f"task {left_id}: Left",
        f"task {right_id}: Right",
    ]
