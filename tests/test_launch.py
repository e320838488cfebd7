"""`yokeflow launch`: sim agents as real processes through real HTTP MCP, supervised, on both backends."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from coordinator.errors import ConfigError, InvalidInput
from launcher.cli import main as cli_main
from launcher.demo import run_demo
from launcher.embedded_server import embedded_server
from launcher.mcp_client import AgentClient
from launcher.personas import parse_personas, slot_personas
from launcher.runners.base import AgentSlot
from launcher.runners.command import CommandRunner
from launcher.runners.sim import CRASH_EXIT_CODE, SimOptions, SimRunner
from launcher.supervisor import RestartPolicy, Supervisor
from launcher.team import LaunchSettings, launch, summary_lines
from tests.conftest import Database
from tests.gitrepo import git, make_repo
from tests.sim_support import (
    DIAMOND_PLAN,
    ONE_TASK_PLAN,
    SHOP_PERSONAS,
    SHOP_TASKS,
    assert_gone,
    completed_once_in_order,
    event_log,
    fast_config,
    import_plan,
    import_shop,
    tasks_of,
)

KNOWN = ["implementer", "planner", "reviewer", "tester"]


def sim_settings(tmp_path: Path, *, personas: list[str] = SHOP_PERSONAS, **options: Any) -> LaunchSettings:
    restarts = options.pop("max_restarts", 3)
    coordination = options.pop("coordination", True)
    return LaunchSettings(
        runner=SimRunner(SimOptions(**{"time_scale": 0.01, "claim_wait": 1.0, **options})),
        personas=personas,
        coordination=coordination,
        log_dir=tmp_path / "logs",
        policy=RestartPolicy(max_restarts=restarts, backoff_base_seconds=0.2),
        grace_seconds=10.0,
    )


def command_settings(
    tmp_path: Path, command: list[str], personas: list[str], *, coordination: bool
) -> LaunchSettings:
    return LaunchSettings(
        runner=CommandRunner(command),
        personas=personas,
        coordination=coordination,
        log_dir=tmp_path / "logs",
        grace_seconds=5.0,
    )


async def test_three_sim_agents_do_every_task_once_in_dependency_order(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    task_ids = await import_shop(database.url, config)
    async with embedded_server(database.url, config) as base:
        report = await launch(base, sim_settings(tmp_path), asyncio.Event())

    assert report.finished and report.ok and not report.stopped
    assert report.status["tasks"]["done"] == SHOP_TASKS
    assert report.costs["total_usd"] > 0 and len(report.costs["by_task"]) == SHOP_TASKS
    assert [len(r.pids) for r in report.records] == [1, 1, 1]
    assert_gone(pid for r in report.records for pid in r.pids)
    events, edges = await event_log(database.url)
    completed_once_in_order(events, edges, task_ids.values())
    assert {e["agent_id"] for e in events if e["kind"] == "task_completed"} <= {
        s.agent_id for s in report.slots
    }
    assert summary_lines(report)[0].startswith(f"project shop: {SHOP_TASKS} of {SHOP_TASKS} tasks done in ")


async def test_sim_agents_commit_in_worktrees_and_the_queue_merges_every_task_into_main(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    repo = make_repo(tmp_path / "repo")
    task_ids = await import_shop(database.url, config)
    settings = sim_settings(tmp_path, personas=[*SHOP_PERSONAS, "reviewer"])
    async with embedded_server(database.url, config, repo=repo) as base:
        report = await launch(base, settings, asyncio.Event())

    assert report.ok and report.status["tasks"]["done"] == SHOP_TASKS
    worktrees = [slot.worktree for slot in report.slots]
    assert (
        all(w is not None and w.parent == repo / ".worktrees" for w in worktrees) and len(set(worktrees)) == 4
    )
    events, edges = await event_log(database.url)
    completed_once_in_order(events, edges, task_ids.values(), done="task_merged")
    for task in (await tasks_of(database.url)).values():
        for path in task.predicted_files or [f"tasks/task-{task.id}.md"]:
            assert f"task {task.id}: {task.title}\n" in git(repo, "show", f"main:{path}") + "\n", (
                task.id,
                path,
            )
    assert_gone(pid for r in report.records for pid in r.pids)


async def test_a_crashed_agents_task_is_taken_over_after_its_lease_expires(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    task_ids = await import_shop(database.url, config)
    # Work long enough (about 3 s on the critical path) that the first agent is up before it is all done.
    settings = sim_settings(tmp_path, crash_after=1, max_restarts=0, time_scale=0.3)
    async with embedded_server(database.url, config) as base:
        report = await launch(base, settings, asyncio.Event())

    crashed = report.records[0]
    assert crashed.exit_codes == [CRASH_EXIT_CODE] and crashed.gave_up and not report.ok
    assert report.status["tasks"]["done"] == SHOP_TASKS
    assert_gone(pid for r in report.records for pid in r.pids)
    events, edges = await event_log(database.url)
    completed_once_in_order(events, edges, task_ids.values())
    lost = next(e for e in events if e["kind"] == "task_claimed" and e["agent_id"] == crashed.slot.agent_id)
    takeover = next(
        e
        for e in events
        if e["kind"] == "task_claimed"
        and e["task_id"] == lost["task_id"]
        and e["payload"].get("took_over_from_agent") == crashed.slot.agent_id
    )
    done = next(e for e in events if e["kind"] == "task_completed" and e["task_id"] == lost["task_id"])
    assert takeover["agent_id"] != crashed.slot.agent_id and done["agent_id"] == takeover["agent_id"]
    assert any("crashed" in line and "not restarted" in line for line in summary_lines(report))


async def test_stopping_a_launch_hands_back_the_leases_and_leaves_no_process(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    await import_shop(database.url, config)
    stop = asyncio.Event()
    seen: list[int] = []

    async def stop_once_working(_: AgentClient, status: dict[str, Any]) -> None:
        seen.append(status["running_tasks"])
        if status["running_tasks"] >= 2:
            stop.set()

    async with embedded_server(database.url, config) as base:
        # Each task takes minutes, so the stop finds the agents mid-task.
        report = await launch(base, sim_settings(tmp_path, time_scale=60.0), stop, watch=stop_once_working)

    assert report.stopped and not report.finished and max(seen) >= 2
    assert report.status["running_tasks"] == 0 and report.status["tasks"]["in_progress"] == 0
    assert all(r.exit_codes == [0] for r in report.records), "each agent exited cleanly on SIGTERM"
    assert_gone(pid for r in report.records for pid in r.pids)
    events, _ = await event_log(database.url)
    claimed = {e["task_id"] for e in events if e["kind"] == "task_claimed"}
    released = {e["task_id"] for e in events if e["kind"] == "task_released"}
    assert len(claimed) >= 2 and released == claimed
    assert not [e for e in events if e["kind"] in ("task_completed", "lease_expired")]


async def test_without_coordination_mode_the_launcher_claims_and_starts_one_session_per_task(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    task_ids = await import_plan(database.url, config, DIAMOND_PLAN)
    settings = sim_settings(tmp_path, personas=["implementer", "implementer"], coordination=False)
    async with embedded_server(database.url, config) as base:
        report = await launch(base, settings, asyncio.Event())

    assert report.ok and report.status["tasks"]["done"] == len(task_ids)
    pids = [pid for r in report.records for pid in r.pids]
    assert len(set(pids)) == len(pids) == len(task_ids), "one process per task"
    assert all(code == 0 for r in report.records for code in r.exit_codes)
    assert_gone(pids)
    events, edges = await event_log(database.url)
    completed_once_in_order(events, edges, task_ids.values())


async def test_a_launch_whose_agents_did_nothing_is_not_reported_as_done(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    task_ids = await import_plan(database.url, config, DIAMOND_PLAN)
    # each agent starts, exits 0 at once and never claims
    settings = command_settings(tmp_path, ["true"], ["implementer", "implementer"], coordination=True)
    async with embedded_server(database.url, config) as base:
        report = await launch(base, settings, asyncio.Event())

    assert [r.exit_codes for r in report.records] == [[0], [0]]
    assert not report.finished and not report.ok
    assert summary_lines(report)[0].startswith(f"project diamond: 0 of {len(task_ids)} tasks done (")


async def test_a_session_that_keeps_crashing_uses_up_its_attempts_and_the_launch_ends(
    database: Database, tmp_path: Path
) -> None:
    config = fast_config()
    repo = make_repo(tmp_path / "repo")
    (task_id,) = (await import_plan(database.url, config, ONE_TASK_PLAN)).values()
    # every session crashes before touching its task
    settings = command_settings(tmp_path, ["sh", "-c", "exit 3"], ["implementer"], coordination=False)
    async with embedded_server(database.url, config, repo=repo) as base:
        report = await asyncio.wait_for(launch(base, settings, asyncio.Event()), 120)

    assert report.finished and not report.ok and report.status["tasks"]["failed"] == 1
    assert report.records[0].exit_codes == [3, 3, 3]  # one session per attempt (max_attempts 3)
    events, _ = await event_log(database.url)
    ours = [e for e in events if e["task_id"] == task_id]
    assert [
        e["kind"]
        for e in ours
        if e["kind"] in ("task_created", "task_claimed", "task_retry_scheduled", "task_failed")
    ] == [
        "task_created",
        *["task_claimed", "task_retry_scheduled"] * 2,
        "task_claimed",
        "task_failed",
    ]
    failed = next(e for e in ours if e["kind"] == "task_failed")
    assert "exited with code 3" in failed["payload"]["error"]


async def test_a_launch_refuses_tasks_no_agent_could_take(database: Database, tmp_path: Path) -> None:
    config = fast_config()
    await import_shop(database.url, config)
    async with embedded_server(database.url, config) as base:
        with pytest.raises(ConfigError, match=r"tester: tasks \d+") as refused:
            await launch(base, sim_settings(tmp_path, personas=["implementer"]), asyncio.Event())
        assert "--personas implementer=1,tester=1" in str(refused.value)
        async with AgentClient(base, None, profile_path="/mcp/observer") as observer:
            assert (await observer.call("list_agents"))["agents"] == [], "nothing was registered"


def test_personas_are_parsed_strictly() -> None:
    assert parse_personas("implementer=3, reviewer=1", KNOWN) == {"implementer": 3, "reviewer": 1}
    assert parse_personas("tester=0,implementer=2", KNOWN) == {"tester": 0, "implementer": 2}
    for text, problem in (
        ("implementer=x", "'x' is not a whole number"),
        ("implementer=-1", "'-1' is not a whole number"),
        ("implementer", "'implementer' is not NAME=COUNT"),
        ("implementer=1,", "'' is not NAME=COUNT"),
        ("wizard=2", "unknown persona 'wizard'"),
        ("implementer=1,implementer=2", "'implementer' is listed twice"),
        ("implementer=0,reviewer=0", "asks for no agents at all"),
    ):
        with pytest.raises(InvalidInput, match="--personas") as error:
            parse_personas(text, KNOWN)
        assert problem in str(error.value), (text, str(error.value))
    assert slot_personas({"implementer": 5, "reviewer": 1}, 4) == [
        "implementer",
        "reviewer",
        "implementer",
        "implementer",
    ]
    assert slot_personas({"implementer": 1, "reviewer": 1}, 8) == ["implementer", "reviewer"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--personas", "implementer=x"], "--personas: 'implementer=x': 'x' is not a whole number"),
        (["--personas", "wizard=1"], "unknown persona 'wizard'"),
        (["--personas", "implementer=0"], "asks for no agents at all"),
        (["--runner", "command"], "the command runner needs a command to run"),
        (["--runner", "command", "--", "./no-such-agent"], "cannot run"),
        (["--runner", "sim", "--", "./agent.sh"], "is only for --runner command"),
        (["--max-concurrency", "0"], "--max-concurrency: 0 is less than 1"),
    ],
)
def test_launch_command_line_mistakes_are_reported_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert (
        cli_main(["--root", str(tmp_path), "--database", url, "launch", "--coordination-mode", *arguments])
        == 1
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "c.db").exists(), "nothing was started"


async def test_ctrl_c_stops_the_launch_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    await import_shop(url, fast_config())
    (tmp_path / ".yokeflow.yaml").write_text("leases:\n  ttl_seconds: 5\n  heartbeat_interval_seconds: 1\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "launcher.cli", "--root", str(tmp_path), "--database", url, "launch"),
        *(
            "--coordination-mode",
            "--runner",
            "sim",
            "--personas",
            "implementer=2,tester=1",
            "--time-scale",
            "60",
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    seen = b""
    try:
        while (
            not (working := re.search(rb" (\d+) running", line := await process.stdout.readline()))
            or working[1] == b"0"
        ):
            assert line, "launch ended before any agent was working"
            seen += line
        process.send_signal(signal.SIGINT)
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130, err.decode()
    assert "stopping the agents" in err.decode() and "stopped before the end" in out.decode()
    assert re.search(rb"^dashboard: http://127\.0\.0\.1:\d+/ ", seen + out, re.M), "the dashboard's address"
    events, _ = await event_log(url)
    claimed = {e["task_id"] for e in events if e["kind"] == "task_claimed"}
    assert claimed and claimed == {e["task_id"] for e in events if e["kind"] == "task_released"}
    logs = {p.name: p.read_text() for p in (tmp_path / ".yokeflow" / "logs").iterdir()}
    assert sorted(logs) == ["implementer-1.log", "implementer-2.log", "tester-1.log"]
    assert all("stops: it was asked to" in text for text in logs.values()), logs


# ------------------------------------------------------------------------ supervision of any command


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def command_slots(tmp_path: Path, count: int) -> list[AgentSlot]:
    (tmp_path / "wt").mkdir(exist_ok=True)
    return [
        AgentSlot(
            i + 1,
            f"agent-{i + 1}",
            "implementer",
            f"yf_token{i}",
            "http://127.0.0.1:1",
            tmp_path / "wt",
            "shop",
            i,
        )
        for i in range(count)
    ]


async def test_a_command_agent_gets_its_identity_in_its_environment_and_worktree(tmp_path: Path) -> None:
    agent = script(
        tmp_path,
        "agent.sh",
        # (the test run's own YOKEFLOW_TEST_* settings pass through, as any variable of the caller's does)
        'env | grep -E "^(YOKEFLOW_|PORT=)" | grep -v "^YOKEFLOW_TEST_" | sort > "$1/$YOKEFLOW_AGENT_NAME.env"\n'
        'pwd >> "$1/$YOKEFLOW_AGENT_NAME.env"\n',
    )
    started: list[tuple[str, int]] = []

    async def record(slot: AgentSlot, pid: int) -> None:
        started.append((slot.name, pid))

    runner = CommandRunner([str(agent), str(tmp_path)])
    await runner.check()
    supervisor = Supervisor(runner, command_slots(tmp_path, 2), on_start=record)
    records = await supervisor.run(asyncio.Event())

    assert [r.exit_codes for r in records] == [[0], [0]] and not any(r.gave_up for r in records)
    assert sorted(started) == sorted(zip(["agent-1", "agent-2"], supervisor.pids, strict=True))
    first = dict(line.split("=", 1) for line in (tmp_path / "agent-1.env").read_text().splitlines()[:-1])
    assert first["PORT"] == "4000"  # ten ports apart: agents' dev servers never collide
    lines = (tmp_path / "agent-2.env").read_text().splitlines()
    assert lines[-1] == str(tmp_path / "wt"), "the agent starts in its worktree"
    env = dict(line.split("=", 1) for line in lines[:-1])
    assert env == {
        "PORT": "4010",
        "YOKEFLOW_AGENT_ID": "2",
        "YOKEFLOW_AGENT_INDEX": "1",
        "YOKEFLOW_AGENT_NAME": "agent-2",
        "YOKEFLOW_MCP_URL": "http://127.0.0.1:1/mcp/worker",
        "YOKEFLOW_PERSONA": "implementer",
        "YOKEFLOW_PROJECT": "shop",
        "YOKEFLOW_RESTARTS": "0",
        "YOKEFLOW_TOKEN": "yf_token1",
        "YOKEFLOW_URL": "http://127.0.0.1:1",
        "YOKEFLOW_WORKTREE": str(tmp_path / "wt"),
    }
    assert_gone(supervisor.pids)


async def test_a_crashing_agent_is_restarted_with_backoff_a_bounded_number_of_times(tmp_path: Path) -> None:
    agent = script(tmp_path, "crash.sh", 'echo "$$" >> "$1/runs-$YOKEFLOW_RESTARTS"\nexit 3\n')
    policy = RestartPolicy(max_restarts=2, backoff_base_seconds=0.05)
    supervisor = Supervisor(
        CommandRunner([str(agent), str(tmp_path)]), command_slots(tmp_path, 1), policy=policy
    )
    (record,) = await supervisor.run(asyncio.Event())

    assert record.exit_codes == [3, 3, 3] and record.gave_up and record.restarts == 2
    assert len(set(record.pids)) == 3, "each restart is a new process"
    assert [int((tmp_path / f"runs-{n}").read_text()) for n in range(3)] == record.pids
    assert [policy.delay(n) for n in range(3)] == [0.05, 0.1, 0.2]
    assert RestartPolicy(backoff_base_seconds=1, backoff_max_seconds=30).delay(10) == 30
    assert_gone(record.pids)


async def test_an_agent_that_ignores_sigterm_is_killed_with_what_it_started(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    os.mkfifo(ready)
    agent = script(tmp_path, "stubborn.sh", "trap '' TERM\nsleep 600 &\necho $! > \"$1\"\nwait\n")
    supervisor = Supervisor(
        CommandRunner([str(agent), str(ready)]), command_slots(tmp_path, 1), grace_seconds=0.5
    )
    stop = asyncio.Event()
    running = asyncio.ensure_future(supervisor.run(stop))
    child = int(await asyncio.to_thread(ready.read_text))  # the agent and its child are up
    stop.set()
    (record,) = await running

    assert record.exit_codes == [-signal.SIGKILL] and not record.gave_up
    assert_gone([*record.pids, child])


async def test_the_store_knows_each_agents_pid_and_that_it_stopped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    config = fast_config()
    await import_plan(url, config, DIAMOND_PLAN)
    async with embedded_server(url, config) as base:
        report = await launch(base, sim_settings(tmp_path, personas=["implementer"]), asyncio.Event())
        async with AgentClient(base, None, profile_path="/mcp/observer") as observer:
            (agent,) = (await observer.call("list_agents"))["agents"]
    assert agent["pid"] == report.records[0].pids[-1] and agent["status"] == "stopped"


def running_children() -> list[int]:
    """This process's children that are still running (Linux: read from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone while we looked
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


async def test_the_demo_builds_its_sample_app_and_leaves_nothing_behind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run_demo(time_scale=0.02, live=False) == 0
    out = capsys.readouterr().out
    started = re.search(r"plan in (\S+)/app\n", out)
    assert started, out
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/ ", out, re.M)
    assert "] 24/24 done, 0 running" in out
    assert "tasks:    24 of 24 done\n" in out and "merges:   24 into main, " in out
    assert re.search(r"^makespan: [\d.]+ s with 4 agents .* serial 0\.7 s, lower bound 0\.4 s", out, re.M), (
        out
    )
    assert not await asyncio.to_thread(Path(started[1]).exists), "the temporary folder is removed"
    assert running_children() == []
