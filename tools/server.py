"""MCP servers of the coordinator, one per profile, each a short list of tools for one kind of agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, get_args

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from coordinator import __version__
from coordinator.errors import YokeflowError
from tools.costs_tools import TOOLS as COSTS
from tools.errors import describe_error, describe_validation
from tools.learning import TOOLS as LEARNING
from tools.observer import TOOLS as OBSERVER
from tools.planner import TOOLS as PLANNER
from tools.plans import TOOLS as PLANS
from tools.registry import ToolSpec
from tools.runtime import Runtime
from tools.worker import TOOLS as WORKER
from tools.yokeflow_compat import SHARED as YOKEFLOW_SHARED
from tools.yokeflow_compat import TOOLS as YOKEFLOW

Profile = Literal["all", "planner", "worker", "observer", "yokeflow"]
PROFILES: tuple[Profile, ...] = get_args(Profile)
HTTP_PATHS: dict[str, Profile] = {
    "/mcp": "all",
    "/mcp/planner": "planner",
    "/mcp/worker": "worker",
    "/mcp/observer": "observer",
    "/mcp/yokeflow": "yokeflow",
}

INSTRUCTIONS: dict[Profile, str] = {
    "planner": "Plan the project: create_epic, then expand_epic with local keys for dependencies inside "
    "one call; add_dependency/remove_dependency to adjust; create_test for what must be verified. "
    "Check it with validate_dependencies, get_dependency_graph, get_parallel_batches, get_critical_path; "
    "build_execution_plan, then update_execution_plan to pin batches, worktrees or a forced order.",
    "worker": "Work loop: claim_task(wait_seconds=…) → heartbeat while working → complete_task or fail_task. "
    'If a call answers "lease lost", stop working on that task and claim again. record_cost after each piece of work; '
    "record_learning what the next agent in this domain should know (get_expertise reads it).",
    "observer": "Read-only views: project_status, list_tasks, get_task, list_agents, get_events (a cursor), "
    "list_merges, get_costs, get_cost_forecast, get_model_stats.",
    "yokeflow": "YokeFlow task manager tools: get_next_task respects dependencies; claim_next_task(worker_id) "
    "leases a task; update_task_status(task_id, done) completes or reopens it.",
    "all": "YokeFlow coordinator: planner, worker, observer and YokeFlow-compatible tools in one list.",
}


def profile_tools(profile: Profile) -> list[ToolSpec]:
    """The tools a profile exposes, in a stable order and without duplicates."""
    reads = OBSERVER.pick("project_status", "list_tasks", "get_task", "ping")
    chosen: dict[Profile, list[ToolSpec]] = {
        "planner": [*PLANNER, *PLANS, *reads],
        "worker": [*WORKER, *LEARNING, *OBSERVER.pick("get_task", "ping")],
        "observer": [*OBSERVER, *COSTS],
        "yokeflow": [*YOKEFLOW, *YOKEFLOW_SHARED],
    }
    specs = chosen.get(profile) or [
        spec for p in ("planner", "worker", "observer", "yokeflow") for spec in chosen[p]
    ]
    return list({spec.name: spec for spec in specs}.values())


class CoordinatorServer(MCPServer[Runtime]):
    """An MCPServer whose tool errors always say what was wrong and how to fix it."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Runtime, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as exc:
            # A coordinator error is an expected outcome (bad id, wrong state, lost lease…).
            if isinstance(exc.__cause__, YokeflowError):
                text = describe_error(exc.__cause__, arguments)
                raise ToolError(f"Error executing tool {name}: {text}") from exc.__cause__
            raise
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                text = describe_validation(exc.__cause__)
                raise ToolError(f"Error executing tool {name}: {text}") from exc.__cause__
            raise


def build_server(profile: Profile, runtime: Runtime) -> CoordinatorServer:
    """A server with the profile's tools over `runtime` (which the caller opens and closes)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")

    @asynccontextmanager
    async def lifespan(_: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        yield runtime

    return CoordinatorServer(
        "yokeflow" if profile == "all" else f"yokeflow-{profile}",
        title=f"YokeFlow coordinator ({profile})",
        version=__version__,
        instructions=INSTRUCTIONS[profile],
        lifespan=lifespan,
        log_level="WARNING",
        tools=[spec.tool for spec in profile_tools(profile)],
    )


def http_servers(runtime: Runtime) -> dict[str, CoordinatorServer]:
    """One server per HTTP path, all over the same runtime."""
    return {path: build_server(profile, runtime) for path, profile in HTTP_PATHS.items()}
