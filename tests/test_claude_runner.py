"""The claude runner against a real coordinator over HTTP, with the Agent SDK's `transport=` test double as the model."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "claude_agent_sdk",
    reason="claude-agent-sdk is not installed (pip install 'yokeflow-coordinator[claude]')",
)

from claude_agent_sdk import ClaudeAgentOptions

from coordinator.config import Config
from coordinator.errors import ConfigError
from launcher.runners.base import AgentSlot
from launcher.runners.claude import (
    CREDENTIAL_VARS,
    ClaudeAgent,
    ClaudeRunner,
    agent_from_args,
    check,
    choose_model,
    load_persona,
    session_options,
    task_prompt,
)
from tests.claude_double import Sessions, lease_of, mcp_of, result
from tests.conftest import Database
from tests.test_mcp_support import http_client, make_project, ok, running_http_server, worker_token

CLAIM: dict[str, Any] = {
    "status": "claimed",
    "task": {
        "id": 7,
        "title": "Users endpoint",
        "description": "List and show users.",
        "action": "Write api/users.py",
        "predicted_files": ["api/users.py"],
    },
    "lease": {"lease_id": "7-a2-x", "attempt": 2, "heartbeat_interval_seconds": 60.0},
    "context": {
        "dependencies": [
            {
                "task_id": 3,
                "title": "Schema",
                "kind": "hard",
                "status": "done",
                "summary": "tables made",
                "result": None,
                "files_changed": ["schema.sql"],
                "commit": "abc123",
            }
        ],
        "tests": [{"id": 11, "category": "functional", "description": "GET /users answers 200"}],
        "handoff_note": "routes half written",
        "previous_error": "pytest failed",
        "expertise": None,
        "model_recommendation": {"model": "claude-opus-4-1", "reason": "complex"},
    },
}


def test_options_of_a_task_session(tmp_path: Path) -> None:
    persona, prompt = load_persona("implementer")
    options = session_options(
        persona=persona,
        system_prompt=prompt,
        server_url="http://127.0.0.1:9/",
        token="yf_secret",
        cwd=tmp_path / "wt-1",
        model=choose_model(CLAIM, persona.model),
        max_budget_usd=2.5,
        exclude_tools=frozenset({"register_agent", "claim_task", "record_cost"}),
    )
    assert options.cwd == tmp_path / "wt-1"
    assert options.system_prompt == prompt and "claim_task" in prompt
    assert options.model == "claude-opus-4-1"
    assert options.mcp_servers == {
        "yokeflow": {
            "type": "http",
            "url": "http://127.0.0.1:9/mcp/worker",
            "headers": {"Authorization": "Bearer yf_secret"},
        }
    }
    assert options.strict_mcp_config is True and options.setting_sources == []
    assert options.permission_mode == "dontAsk"
    assert options.max_budget_usd == 2.5
    assert options.env == {"CLAUDE_CODE_MAX_RETRIES": "2"}
    tools = options.allowed_tools
    assert tools[: len(persona.tools)] == persona.tools == ["Read", "Edit", "Write", "Bash", "Grep", "Glob"]
    for name in ("heartbeat", "complete_task", "fail_task", "release_task", "update_test_result", "get_task"):
        assert f"mcp__yokeflow__{name}" in tools
    for name in ("claim_task", "record_cost", "register_agent", "create_task", "get_costs"):
        assert f"mcp__yokeflow__{name}" not in tools  # the launcher's own calls, and other profiles'
    # no recommendation: the persona's model
    assert (
        choose_model({**CLAIM, "context": {**CLAIM["context"], "model_recommendation": None}}, "sonnet")
        == "sonnet"
    )
    assert choose_model({**CLAIM, "model": "haiku"}, "sonnet") == "haiku"


def test_the_prompt_carries_the_task_its_context_and_its_lease() -> None:
    prompt = task_prompt(CLAIM)
    for fragment in (
        "# Task 7: Users endpoint",
        "List and show users.",
        "Write api/users.py",
        "Task id: 7",
        "Lease id: 7-a2-x",
        "Heartbeat interval: 60 seconds",
        "task 3 'Schema' (hard, done): tables made [commit abc123] files: schema.sql",
        "test 11 (functional): GET /users answers 200",
        "routes half written",
        "pytest failed",
        "Do not claim another task",
    ):
        assert fragment in prompt, fragment
    assert "Resuming" not in prompt
    assert "## Resuming\nAn earlier session of yours started this task" in task_prompt(
        {**CLAIM, "resumed": True}
    )


def test_the_runner_starts_agents_as_processes_with_its_options() -> None:
    command = ClaudeRunner(cli_path="/opt/claude", claim_wait=5.0).command(_slot("http://x", "t", None))
    assert command[:5] == [sys.executable, "-m", "launcher.agent_process", "--runner", "claude"]
    agent = agent_from_args(command[5:])
    assert agent.cli_path == "/opt/claude" and agent.claim_wait == 5.0


def test_check_gives_one_message_naming_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as missing:
        check(cli_path=tmp_path / "no-claude", environ={"CLAUDE_CONFIG_DIR": str(tmp_path)})
    text = str(missing.value)
    assert f"the Claude Code CLI was not found at {tmp_path / 'no-claude'}" in text
    assert all(name in text for name in CREDENTIAL_VARS), text
    assert "export ANTHROPIC_API_KEY" in text and "claude setup-token" in text
    check(environ={"ANTHROPIC_API_KEY": "sk-test"})  # the CLI bundled with the SDK, and a key: fine
    (tmp_path / ".credentials.json").write_text("{}")
    check(environ={"CLAUDE_CONFIG_DIR": str(tmp_path)})  # logged in with `claude /login`
    monkeypatch.setitem(sys.modules, "claude_agent_sdk", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'yokeflow-coordinator\[claude\]'"):
        check(environ={"ANTHROPIC_API_KEY": "sk-test"})


async def test_cost_and_usage_of_each_session_are_recorded_against_its_task(
    database: Database, tmp_path: Path
) -> None:
    config = Config.model_validate({"cost": {"budget_limit_usd": 5.0}})
    with running_http_server(database.url, config=config) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            first = await ok(operator, "create_task", {"title": "Schema", "predicted_files": ["schema.sql"]})
            second = await ok(operator, "create_task", {"title": "Users", "depends_on": [first["id"]]})
            await ok(operator, "record_cost", {"model": "opus", "cost_usd": 1.0, "operation": "planning"})
            token = await worker_token(operator, "claude-1")

        async def act(prompt: str, options: ClaudeAgentOptions) -> list[dict[str, Any]]:
            task_id, lease_id = lease_of(prompt)
            async with mcp_of(options) as agent:  # what the CLI would do with the options' MCP entry
                held = {"task_id": task_id, "lease_id": lease_id}
                await ok(agent, "heartbeat", {**held, "progress_note": "writing"})
                await ok(agent, "complete_task", {**held, "summary": "written"})
            if task_id == first["id"]:
                return result(cost=0.0123, input_tokens=1200, output_tokens=340)
            return result(
                cost=0.021,
                input_tokens=0,
                output_tokens=0,
                model_usage={
                    "claude-sonnet-4-5": {"inputTokens": 900, "outputTokens": 200, "costUSD": 0.02},
                    "claude-haiku-4-5": {"inputTokens": 300, "outputTokens": 10, "costUSD": 0.001},
                },
            )

        sessions = Sessions(act)
        agent = ClaudeAgent(transport=sessions, claim_wait=1.0)
        worktree = tmp_path / "wt-1"
        assert await agent.run(_slot(base, token, worktree), asyncio.Event()) == 0

        assert [o.cwd for o in sessions.options] == [worktree, worktree]
        # small tasks: the claim recommends the cheapest tier (see coordinator/model_selection.py)
        assert [o.model for o in sessions.options] == ["haiku", "haiku"]
        assert sessions.options[0].max_budget_usd == pytest.approx(4.0)  # 5.0 budget - 1.0 spent
        assert sessions.options[1].max_budget_usd == pytest.approx(4.0 - 0.0123)
        async with http_client(f"{base}/mcp/observer") as observer:
            costs = await ok(observer, "get_costs", {})
            status = await ok(observer, "project_status", {})
        assert status["tasks"]["done"] == 2
        assert costs["total_usd"] == pytest.approx(1.0 + 0.0123 + 0.021)
        by_task = {line["key"]: line for line in costs["by_task"]}
        assert by_task[str(first["id"])]["cost_usd"] == pytest.approx(0.0123)
        assert (by_task[str(first["id"])]["input_tokens"], by_task[str(first["id"])]["output_tokens"]) == (
            1200,
            340,
        )
        assert by_task[str(second["id"])]["cost_usd"] == pytest.approx(0.021)
        assert by_task[str(second["id"])]["input_tokens"] == 1200
        by_model = {line["key"]: line["cost_usd"] for line in costs["by_model"]}
        assert by_model == pytest.approx(
            {"opus": 1.0, "haiku": 0.0123, "claude-sonnet-4-5": 0.02, "claude-haiku-4-5": 0.001}
        )


async def test_a_failed_or_unfinished_session_fails_its_task_with_the_reason(database: Database) -> None:
    with running_http_server(database.url) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            broken = await ok(operator, "create_task", {"title": "Overloaded", "max_attempts": 1})
            idle = await ok(operator, "create_task", {"title": "Forgotten", "max_attempts": 1, "priority": 1})
            token = await worker_token(operator, "claude-1")

        async def act(prompt: str, options: ClaudeAgentOptions) -> list[dict[str, Any]]:
            task_id, _ = lease_of(prompt)
            if task_id == broken["id"]:
                return result(
                    cost=0.004,
                    input_tokens=50,
                    output_tokens=0,
                    text="API Error: 529 overloaded",
                    is_error=True,
                    terminal_reason="api_error",
                )
            return result(cost=0.002, input_tokens=20, output_tokens=5, text="I looked around.")

        agent = ClaudeAgent(transport=Sessions(act), claim_wait=0.5)
        assert await agent.run(_slot(base, token, None), asyncio.Event()) == 0  # only failures left: it stops

        async with http_client(f"{base}/mcp/observer") as observer:
            failed = (await ok(observer, "get_task", {"task_id": broken["id"]}))["task"]
            forgotten = (await ok(observer, "get_task", {"task_id": idle["id"]}))["task"]
            costs = await ok(observer, "get_costs", {})
        assert failed["status"] == "failed"
        assert failed["last_error"] == "the Claude session failed (api_error): API Error: 529 overloaded"
        assert forgotten["status"] == "failed"
        assert forgotten["last_error"] == (
            "the agent's session ended without calling complete_task or fail_task; its last words: I looked around."
        )
        assert costs["total_usd"] == pytest.approx(0.006)  # the failed sessions' cost is kept too


async def test_a_stop_during_a_session_hands_the_task_back(database: Database) -> None:
    with running_http_server(database.url) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            task = await ok(operator, "create_task", {"title": "Long"})
            token = await worker_token(operator, "claude-1")
        stop = asyncio.Event()

        async def act(prompt: str, options: ClaudeAgentOptions) -> list[dict[str, Any]]:
            stop.set()  # Ctrl-C arrives while the model works
            await asyncio.Event().wait()
            raise AssertionError("the session should have been cut short")

        assert await ClaudeAgent(transport=Sessions(act)).run(_slot(base, token, None), stop) == 0
        async with http_client(f"{base}/mcp/observer") as observer:
            released = (await ok(observer, "get_task", {"task_id": task["id"]}))["task"]
        assert released["status"] == "pending" and released["lease_owner"] is None
        assert released["attempts"] == 0 and "was stopped" in released["progress_note"]


def _slot(base: str, token: str, worktree: Path | None) -> AgentSlot:
    return AgentSlot(
        agent_id=1, name="claude-1", persona="implementer", token=token, server_url=base, worktree=worktree
    )


async def test_the_runner_keeps_the_lease_alive_while_the_model_thinks_longer_than_it_lasts(
    database: Database,
) -> None:
    config = Config.model_validate({"leases": {"ttl_seconds": 5, "heartbeat_interval_seconds": 1}})
    with running_http_server(database.url, config=config) as base:
        async with http_client(f"{base}/mcp") as operator:
            await make_project(operator)
            task = await ok(operator, "create_task", {"title": "Slow"})
            token = await worker_token(operator, "claude-1")
        seen: dict[str, Any] = {}

        async def act(prompt: str, options: ClaudeAgentOptions) -> list[dict[str, Any]]:
            task_id, lease_id = lease_of(prompt)
            async with mcp_of(options) as agent:
                started = (await ok(agent, "get_task", {"task_id": task_id}))["task"]["lease_expires_at"]
                await asyncio.sleep(7)  # longer than the lease, without a heartbeat from the model
                seen["live"] = (await ok(agent, "get_task", {"task_id": task_id}))["task"]
                seen["started"] = started
                await ok(agent, "complete_task", {"task_id": task_id, "lease_id": lease_id})
            return result(cost=0.001, input_tokens=10, output_tokens=2)

        agent = ClaudeAgent(transport=Sessions(act), claim_wait=0.5)
        assert await agent.run(_slot(base, token, None), asyncio.Event()) == 0
        async with http_client(f"{base}/mcp/observer") as observer:
            done = await ok(observer, "get_task", {"task_id": task["id"], "events": 50})
    live = seen["live"]
    assert live["status"] == "in_progress" and live["lease_expires_at"] > seen["started"] + 4
    assert done["task"]["status"] == "done" and done["task"]["attempts"] == 1
    kinds = [event["kind"] for event in done["recent_events"]]
    assert kinds.count("lease_heartbeat") >= 3 and "lease_expired" not in kinds
