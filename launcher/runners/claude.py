"""The claude runner: each agent slot claims a task over MCP and works it in one Claude Agent SDK session.

The SDK is the optional extra `claude` and is imported only when this runner is used. The launcher,
not the agent, claims the task, records the session's cost from its `ResultMessage` and fails the
task when the session ends still holding the lease, so neither cost nor the reason is ever lost.
Tests pass `transport=` (a factory of the SDK's `Transport`) to stand in for the model.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from coordinator.agents import PersonaFile, parse_persona
from coordinator.errors import ConfigError
from coordinator.resources import resource_dir
from launcher.leases import fail_if_held, keep_lease, release_if_held
from launcher.mcp_client import OBSERVER_PATH, AgentClient, ToolCallError
from launcher.runners.base import AgentSlot, agent_process_command
from tools.server import HTTP_PATHS, Profile, profile_tools

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, Transport

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'yokeflow-coordinator[claude]'"
SERVER_NAME = "yokeflow"
"""The name of the coordinator's MCP server in the agent's config: its tools are `mcp__yokeflow__<tool>`."""
MAX_RETRIES = "2"
"""CLAUDE_CODE_MAX_RETRIES for agents: an unreachable API fails in seconds, not minutes."""
CREDENTIAL_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
)
LAUNCHER_TOOLS = frozenset({"register_agent", "claim_task", "record_cost"})
"""Worker tools the launcher calls itself, so a session neither takes a second task nor counts its cost twice."""
CLAIM_WAIT = 30.0
"""Seconds one claim waits for ready work; also bounds how long a stop takes between tasks."""
CRASH_EXIT_CODE = 70
"""The exit code of an agent whose Claude CLI crashed: the supervisor restarts it with backoff."""

TransportFactory = Callable[["ClaudeAgentOptions"], "Transport"]


# ------------------------------------------------------------------------------- availability


def load_sdk() -> ModuleType:
    """The claude_agent_sdk module, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module("claude_agent_sdk")
    except ImportError:
        raise ConfigError(
            "the claude runner needs the Claude Agent SDK, which is not installed", fix=INSTALL_HINT
        ) from None


def find_cli(sdk: ModuleType, cli_path: str | Path | None = None) -> str | None:
    """The Claude Code CLI the SDK would start: `cli_path`, the binary bundled in the SDK wheel, or `claude` on PATH."""
    if cli_path is not None:
        path = Path(cli_path)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    assert sdk.__file__ is not None
    bundled = Path(sdk.__file__).parent / "_bundled" / ("claude.exe" if os.name == "nt" else "claude")
    return str(bundled) if bundled.is_file() else shutil.which("claude")


def credential_source(environ: Mapping[str, str]) -> str | None:
    """Where the CLI would find a credential: the first of CREDENTIAL_VARS set, or the login file."""
    for name in CREDENTIAL_VARS:
        if environ.get(name, "").strip():
            return name
    config_dir = Path(environ.get("CLAUDE_CONFIG_DIR") or Path.home() / ".claude")
    login = config_dir / ".credentials.json"
    return str(login) if login.is_file() else None


def check(*, cli_path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Raise one ConfigError naming everything that stops Claude agents from starting (SDK, CLI, credential)."""
    sdk = load_sdk()
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    fixes: list[str] = []
    if find_cli(sdk, cli_path) is None:
        problems.append(
            f"the Claude Code CLI was not found at {cli_path}"
            if cli_path is not None
            else "the Claude Code CLI was not found (neither bundled with claude-agent-sdk nor `claude` on PATH)"
        )
        fixes.append(f"reinstall with `{INSTALL_HINT}` (its wheel bundles the CLI) or put `claude` on PATH")
    if credential_source(environ) is None:
        problems.append(
            f"no credential for Claude: none of {', '.join(CREDENTIAL_VARS)} is set and there is no login "
            "file (~/.claude/.credentials.json)"
        )
        fixes.append(
            "export ANTHROPIC_API_KEY=<key>, or run `claude setup-token` and export CLAUDE_CODE_OAUTH_TOKEN"
        )
    if problems:
        raise ConfigError("cannot start Claude agents: " + "; ".join(problems), fix="; ".join(fixes))


# ------------------------------------------------------------------------------------ options


def load_persona(name: str, folder: Path | None = None) -> tuple[PersonaFile, str]:
    """A persona's front matter and prompt body from `<folder>/<name>.md` (default: the shipped personas)."""
    path = (folder or resource_dir("personas")) / f"{name}.md"
    if not path.is_file():
        raise ConfigError(
            f"persona {name!r} has no file {path}", fix=f"add {path.name} or use one of the personas there"
        )
    return parse_persona(path)


def mcp_url(server_url: str, profile: Profile) -> str:
    """The URL of a profile's MCP endpoint on the coordinator at `server_url`."""
    path = next(path for path, named in HTTP_PATHS.items() if named == profile)
    return server_url.rstrip("/") + path


def allowed_tools(persona: PersonaFile, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The persona's own tools, then `mcp__yokeflow__<tool>` for each tool of its profile not in `exclude`."""
    mcp_tools = [
        f"mcp__{SERVER_NAME}__{spec.name}"
        for spec in profile_tools(persona.profile)
        if spec.name not in exclude
    ]
    return [*persona.tools, *mcp_tools]


def session_options(
    *,
    persona: PersonaFile,
    system_prompt: str,
    server_url: str,
    token: str,
    cwd: Path | None,
    model: str | None,
    max_budget_usd: float | None,
    exclude_tools: frozenset[str] = frozenset(),
    cli_path: str | Path | None = None,
) -> ClaudeAgentOptions:
    """The options of one agent session: the coordinator as its only MCP server, tools limited to the profile."""
    sdk = load_sdk()
    options: ClaudeAgentOptions = sdk.ClaudeAgentOptions(
        cwd=cwd,
        system_prompt=system_prompt,
        model=model,
        mcp_servers={
            SERVER_NAME: {
                "type": "http",
                "url": mcp_url(server_url, persona.profile),
                "headers": {"Authorization": f"Bearer {token}"},
            }
        },
        strict_mcp_config=True,
        setting_sources=[],
        allowed_tools=allowed_tools(persona, exclude_tools),
        permission_mode="dontAsk",
        max_budget_usd=max_budget_usd,
        env={"CLAUDE_CODE_MAX_RETRIES": MAX_RETRIES},
        cli_path=cli_path,
        stderr=lambda line: log.debug("claude: %s", line),
    )
    return options


def choose_model(claim: Mapping[str, Any], fallback: str | None) -> str | None:
    """The model the claim recommends (`model`, `recommended_model`, or context.model_recommendation.model), else `fallback`."""
    recommendation = (claim.get("context") or {}).get("model_recommendation") or {}
    for value in (claim.get("model"), claim.get("recommended_model"), recommendation.get("model")):
        if isinstance(value, str) and value.strip():
            return value
    return fallback


def task_prompt(claim: Mapping[str, Any]) -> str:
    """The first message of a task's session: the task, its context and the lease to finish it with."""
    task, lease, context = claim["task"], claim["lease"], claim.get("context") or {}
    parts = [
        f"# Task {task['id']}: {task['title']}",
        "The launcher has claimed this task for you; work on it only. Do not claim another task: "
        "stop after complete_task or fail_task.",
        f"Task id: {task['id']}\nLease id: {lease['lease_id']}\nAttempt: {lease['attempt']}\n"
        f"Heartbeat interval: {lease['heartbeat_interval_seconds']:g} seconds (call heartbeat at least this often)",
    ]
    if claim.get("resumed"):
        parts.append(
            "## Resuming\nAn earlier session of yours started this task and ended before finishing "
            "it. Your worktree is as it left it, uncommitted changes included: look at `git status` "
            "and `git log` there and carry on from where it stopped."
        )
    for heading, text in (("Description", task.get("description")), ("Action", task.get("action"))):
        if text:
            parts.append(f"## {heading}\n{text}")
    if task.get("predicted_files"):
        parts.append(
            "## Files it will probably touch\n" + "\n".join(f"- {f}" for f in task["predicted_files"])
        )
    if context.get("dependencies"):
        lines = []
        for dep in context["dependencies"]:
            line = f"- task {dep['task_id']} {dep['title']!r} ({dep['kind']}, {dep['status']})"
            if dep.get("summary"):
                line += f": {dep['summary']}"
            if dep.get("commit"):
                line += f" [commit {dep['commit']}]"
            if dep.get("files_changed"):
                line += f" files: {', '.join(dep['files_changed'])}"
            lines.append(line)
        parts.append("## Results of its dependencies\n" + "\n".join(lines))
    if context.get("tests"):
        tests = [f"- test {t['id']} ({t['category']}): {t['description']}" for t in context["tests"]]
        parts.append("## Tests (record each with update_test_result)\n" + "\n".join(tests))
    for heading, key in (
        ("Hand-off note from an earlier attempt", "handoff_note"),
        ("Error of the previous attempt", "previous_error"),
        ("Expertise", "expertise"),
    ):
        if context.get(key):
            parts.append(f"## {heading}\n{context[key]}")
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------------ sessions


@dataclass
class SessionOutcome:
    """How a session ended: its last ResultMessage (for cost), why it failed, and the SDK error if the CLI crashed."""

    result: ResultMessage | None = None
    error: str | None = None
    crash: Exception | None = None


async def run_session(
    prompt: str, options: ClaudeAgentOptions, transport: TransportFactory | None = None
) -> SessionOutcome:
    """Run one session to its end; an error result or a crash of the CLI is reported, not raised."""
    sdk = load_sdk()
    outcome = SessionOutcome()
    try:
        async for message in sdk.query(
            prompt=prompt, options=options, transport=transport(options) if transport else None
        ):
            if isinstance(message, sdk.ResultMessage):
                outcome.result = message
    except sdk.ResultError as exc:
        detail = exc.result or "; ".join(exc.errors) or str(exc)
        outcome.error = f"the Claude session failed ({exc.terminal_reason or exc.subtype}): {detail}"
    except sdk.ClaudeSDKError as exc:
        outcome.error, outcome.crash = f"the Claude CLI failed: {exc}", exc
    else:
        last = outcome.result
        if last is not None and last.is_error:
            detail = last.result or "; ".join(last.errors or [])
            outcome.error = f"the Claude session failed ({last.terminal_reason or last.subtype}): {detail}"
    return outcome


def cost_lines(result: ResultMessage, model: str | None) -> list[dict[str, Any]]:
    """record_cost arguments for a result: one line per model it used, else one line for the whole session."""
    if result.model_usage and all("costUSD" in usage for usage in result.model_usage.values()):
        return [
            {
                "model": name,
                "input_tokens": usage.get("inputTokens", 0),
                "output_tokens": usage.get("outputTokens", 0),
                "cache_read_tokens": usage.get("cacheReadInputTokens", 0),
                "cache_write_tokens": usage.get("cacheCreationInputTokens", 0),
                "cost_usd": usage["costUSD"],
            }
            for name, usage in result.model_usage.items()
        ]
    usage = result.usage or {}
    return [
        {
            "model": model or "claude",
            "input_tokens": usage.get("input_tokens", 0),
            "output_tokens": usage.get("output_tokens", 0),
            "cache_read_tokens": usage.get("cache_read_input_tokens", 0),
            "cache_write_tokens": usage.get("cache_creation_input_tokens", 0),
            "cost_usd": result.total_cost_usd or 0.0,
        }
    ]


async def record_session_cost(
    client: AgentClient, result: ResultMessage, *, model: str | None, task_id: int | None, operation: str
) -> None:
    """Add the session's cost to the ledger (a refusal is logged: the work itself stands)."""
    for line in cost_lines(result, model):
        try:
            await client.call("record_cost", task_id=task_id, operation=operation, **line)
        except ToolCallError as exc:
            log.warning("could not record the cost of task %s: %s", task_id, exc)


async def remaining_budget(server_url: str, token: str) -> float | None:
    """What is left of the project's budget (get_costs), or None when it has no budget."""
    async with AgentClient(server_url, token, profile_path=OBSERVER_PATH) as observer:
        costs = await observer.call("get_costs")
    limit = costs.get("budget_limit_usd")
    return None if limit is None else max(float(limit) - float(costs["total_usd"]), 0.0)


# -------------------------------------------------------------------------------------- runner


class ClaudeRunner:
    """Runs every agent as `python -m launcher.agent_process --runner claude`, after one check of the setup."""

    name = "claude"

    def __init__(self, *, cli_path: str | Path | None = None, claim_wait: float = CLAIM_WAIT) -> None:
        self.cli_path = cli_path
        self.claim_wait = claim_wait

    async def check(self) -> None:
        """One clear error before any agent starts when the SDK, the CLI or a credential is missing."""
        check(cli_path=self.cli_path)

    def command(self, slot: AgentSlot) -> list[str]:
        args = [f"--claim-wait={self.claim_wait!r}"]
        if self.cli_path is not None:
            args.append(f"--cli-path={self.cli_path}")
        return agent_process_command(self.name, args)


def agent_from_args(argv: Sequence[str]) -> ClaudeAgent:
    """The Claude agent of `agent_process --runner claude ARGS`."""
    parser = argparse.ArgumentParser(prog="agent_process --runner claude")
    parser.add_argument("--cli-path", help="the Claude Code CLI (default: the one bundled with the SDK)")
    parser.add_argument(
        "--claim-wait", type=float, default=CLAIM_WAIT, help="seconds one claim waits for work"
    )
    args = parser.parse_args(list(argv))
    return ClaudeAgent(cli_path=args.cli_path, claim_wait=args.claim_wait)


class ClaudeAgent:
    """One agent: claim a task, work it in one SDK session, record its cost, claim again until nothing is left.

    `transport` makes the SDK sessions of tests talk to a test double instead of the CLI.
    """

    def __init__(
        self,
        *,
        transport: TransportFactory | None = None,
        cli_path: str | Path | None = None,
        claim_wait: float = CLAIM_WAIT,
        personas_dir: Path | None = None,
    ) -> None:
        self.transport = transport
        self.cli_path = cli_path
        self.claim_wait = claim_wait
        self.personas_dir = personas_dir

    async def run(self, slot: AgentSlot, stop: asyncio.Event) -> int:
        """Work until the coordinator says nothing is left or `stop` is set (0), or the CLI crashes (CRASH_EXIT_CODE)."""
        persona, prompt = load_persona(slot.persona, self.personas_dir)
        async with AgentClient(slot.server_url, slot.token) as client:
            if slot.claim_file is not None:  # a one-task session: the launcher claimed for us
                claim = json.loads(await asyncio.to_thread(slot.claim_file.read_text, encoding="utf-8"))
                return await self.work(slot, client, claim, persona, prompt, stop)
            while not stop.is_set():
                claim = await client.call("claim_task", wait_seconds=self.claim_wait)
                if claim["status"] == "claimed":
                    code = await self.work(slot, client, claim, persona, prompt, stop)
                    if code != 0:
                        return code
                elif claim["retry_after_seconds"] is None:  # all done, budget spent, only failures left
                    log.info("%s stops: %s", slot.name, claim["message"])
                    return 0
        return 0

    async def work(
        self,
        slot: AgentSlot,
        client: AgentClient,
        claim: Mapping[str, Any],
        persona: PersonaFile,
        system_prompt: str,
        stop: asyncio.Event,
    ) -> int:
        """One task in one session, then its cost recorded and the task failed if still leased; the exit code."""
        task_id, lease_id = claim["task"]["id"], claim["lease"]["lease_id"]
        if stop.is_set():  # claimed as the stop came
            await release_if_held(client, task_id, lease_id, f"{slot.name} was stopped before it started")
            return 0
        model = choose_model(claim, persona.model)
        worktree = claim.get("worktree") or slot.worktree
        options = session_options(
            persona=persona,
            system_prompt=system_prompt,
            server_url=slot.server_url,
            token=slot.token,
            cwd=Path(worktree) if worktree else None,
            model=model,
            max_budget_usd=await remaining_budget(slot.server_url, slot.token),
            exclude_tools=LAUNCHER_TOOLS,
            cli_path=self.cli_path,
        )
        session = asyncio.create_task(run_session(task_prompt(claim), options, self.transport))
        stopping = asyncio.create_task(stop.wait())
        # The model is asked to heartbeat, but may think for longer than a lease lasts: while its
        # session runs, this process keeps the lease alive, and a crash lets it expire.
        keeper = asyncio.create_task(keep_lease(client, task_id, claim["lease"]))
        try:
            await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        stopping.cancel()
        if not session.done():
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            await release_if_held(
                client, task_id, lease_id, f"{slot.name} was stopped; its session was cut short"
            )
            return 0
        outcome = session.result()
        if outcome.result is not None:
            await record_session_cost(client, outcome.result, model=model, task_id=task_id, operation="task")
        await fail_if_held(client, task_id, lease_id, outcome.error or _unfinished(outcome.result))
        if outcome.crash is not None:
            log.error("%s: %s", slot.name, outcome.error)
            return CRASH_EXIT_CODE
        return 0


def _unfinished(result: ResultMessage | None) -> str:
    """The error of a session that ended well but left its task leased."""
    said = f"; its last words: {result.result[:1000]}" if result is not None and result.result else ""
    return "the agent's session ended without calling complete_task or fail_task" + said
