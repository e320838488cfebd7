"""Worker tools: register, claim a task with a lease, heartbeat, and finish it one way or another."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from coordinator.costs import CostEntry
from coordinator.observe import AgentView
from coordinator.records import TaskTest
from coordinator.work import MAX_WAIT_SECONDS, Lease
from tools.arguments import Id, LeaseId, Name, ProjectRef, ShortText, Text, TtlSeconds
from tools.auth import session
from tools.registry import ToolSet
from tools.results import ClaimResult, RegisteredAgent, TaskOutcome
from tools.runtime import ToolContext

TOOLS = ToolSet()

TaskIdArg = Annotated[Id, Field(description="Id of the task you hold the lease on.")]
TokenCount = Annotated[int, Field(ge=0, le=2**31 - 1)]


@TOOLS.tool("Register an agent")
async def register_agent(
    ctx: ToolContext,
    persona: Annotated[
        Name, Field(description="The persona it works as (implementer, reviewer, tester, …).")
    ] = ("implementer"),
    name: Annotated[Name | None, Field(description="A readable name; defaults to the persona.")] = None,
    role: Annotated[
        Literal["worker", "planner", "observer"],
        Field(description="worker: claims tasks; planner: writes the plan; observer: reads only."),
    ] = "worker",
    capabilities: Annotated[list[Name], Field(max_length=50, description="Free-form capability tags.")] = [],  # noqa: B006
    worktree: Annotated[
        ShortText | None,
        Field(
            description="The agent's git worktree; omitted when the project has a repository: "
            "the server creates one and answers its path."
        ),
    ] = None,
    pid: Annotated[int | None, Field(ge=1, le=2**31 - 1, description="Process id, for supervision.")] = None,
    project: ProjectRef = None,
) -> RegisteredAgent:
    """Register an agent and get its bearer token (shown once). Only the operator or a planner may."""
    rt, caller = await session(ctx)
    registered = await rt.coord.agents.register(
        caller,
        persona=persona,
        project=project,
        name=name,
        capabilities=capabilities,
        role=role,
        worktree=worktree,
        pid=pid,
    )
    return RegisteredAgent(agent=AgentView.of(registered.agent), token=registered.token)


@TOOLS.tool("Update an agent", idempotent=True)
async def update_agent(
    ctx: ToolContext,
    agent_id: Annotated[Id, Field(description="Id of the agent (register_agent's answer).")],
    pid: Annotated[
        int | None, Field(ge=1, le=2**31 - 1, description="Its current process id, for supervision.")
    ] = None,
    status: Annotated[
        Literal["active", "stopped"] | None,
        Field(description="stopped: its token stops working; active: it works again."),
    ] = None,
) -> AgentView:
    """Record a supervised agent's process id, or stop it. Only the operator or a planner may."""
    rt, caller = await session(ctx)
    agent = await rt.coord.agents.update(caller, agent_id=agent_id, pid=pid, status=status)
    if status == "stopped" and rt.tokens is not None:
        rt.tokens.forget(agent.id)  # its token must fail at once, not when the cache expires
    return AgentView.of(agent)


@TOOLS.tool("Claim a task")
async def claim_task(
    ctx: ToolContext,
    wait_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            allow_inf_nan=False,
            description="Wait up to this long for a task to become ready instead of polling.",
        ),
    ] = 0.0,
    ttl_seconds: TtlSeconds = None,
) -> ClaimResult:
    """Lease the most urgent ready task that suits you (dependencies done, critical path first).

    Answers status "claimed" with the task, the lease and the context (dependencies' results,
    tests, hand-off note), or "no_task" with the reason and when to ask again. In a project with a
    repository your worktree holds one task at a time: while you hold one, this answers it again
    (resumed, lease extended) until you complete, fail or release it.
    """
    rt, caller = await session(ctx)
    outcome = await rt.coord.work.claim(caller, wait_seconds=wait_seconds, ttl_seconds=ttl_seconds)
    assert caller.agent is not None  # claim() admits agents only
    return ClaimResult.of(outcome, caller.agent.id)


@TOOLS.tool("Heartbeat a lease", idempotent=True)
async def heartbeat(
    ctx: ToolContext,
    task_id: TaskIdArg,
    lease_id: LeaseId,
    progress_note: Annotated[
        ShortText | None, Field(description="Where you are; handed on if someone else takes over.")
    ] = None,
    ttl_seconds: TtlSeconds = None,
) -> Lease:
    """Extend your lease. Answers "lease lost" if it expired and was taken over: then stop."""
    rt, caller = await session(ctx)
    return await rt.coord.work.heartbeat(
        caller, task_id=task_id, lease_id=lease_id, progress_note=progress_note, ttl_seconds=ttl_seconds
    )


@TOOLS.tool("Complete a task")
async def complete_task(
    ctx: ToolContext,
    task_id: TaskIdArg,
    lease_id: LeaseId,
    summary: Annotated[
        ShortText | None, Field(description="What was done, for the tasks that build on it.")
    ] = None,
    result: Annotated[Text | None, Field(description="Longer result text, if any.")] = None,
    files_changed: Annotated[
        list[ShortText], Field(max_length=10_000, description="Files you changed.")
    ] = [],  # noqa: B006
    commit: Annotated[ShortText | None, Field(description="The commit holding the work.")] = None,
) -> TaskOutcome:
    """Finish your task and unblock its dependents. Refused while one of its tests fails."""
    rt, caller = await session(ctx)
    done = await rt.coord.work.complete(
        caller,
        task_id=task_id,
        lease_id=lease_id,
        result=result,
        summary=summary,
        files_changed=files_changed,
        commit=commit,
    )
    return TaskOutcome.model_validate(done)


@TOOLS.tool("Fail a task")
async def fail_task(
    ctx: ToolContext,
    task_id: TaskIdArg,
    lease_id: LeaseId,
    error: Annotated[Text, Field(min_length=1, description="What went wrong, for the next attempt.")],
    retryable: Annotated[
        bool, Field(description="True if another attempt could succeed (retried with backoff).")
    ] = True,
) -> TaskOutcome:
    """Give up on this attempt: the task is retried later, or fails for good after its last attempt."""
    rt, caller = await session(ctx)
    failed = await rt.coord.work.fail(
        caller, task_id=task_id, lease_id=lease_id, error=error, retryable=retryable
    )
    return TaskOutcome.model_validate(failed)


@TOOLS.tool("Release a task")
async def release_task(
    ctx: ToolContext,
    task_id: TaskIdArg,
    lease_id: LeaseId,
    note: Annotated[ShortText | None, Field(description="A hand-off note for whoever takes it next.")] = None,
) -> TaskOutcome:
    """Hand a task back untouched (it does not use up an attempt)."""
    rt, caller = await session(ctx)
    return TaskOutcome.model_validate(
        await rt.coord.work.release(caller, task_id=task_id, lease_id=lease_id, note=note)
    )


@TOOLS.tool("Record a test result", idempotent=True)
async def update_test_result(
    ctx: ToolContext,
    test_id: Annotated[Id, Field(description="Id of the test.")],
    passes: Annotated[bool, Field(description="Whether the test passes.")],
    notes: Annotated[ShortText | None, Field(description="How it was verified, or the failure.")] = None,
) -> TaskTest:
    """Record whether a test passes. A task with a failing test cannot be completed."""
    rt, caller = await session(ctx)
    return await rt.coord.planning.update_test_result(caller, test_id=test_id, passes=passes, notes=notes)


@TOOLS.tool("Record a cost")
async def record_cost(
    ctx: ToolContext,
    model: Annotated[
        Name, Field(description="The model that did the work, e.g. claude-sonnet-4-5 or sonnet.")
    ],
    input_tokens: Annotated[
        TokenCount, Field(description="Input tokens, not counting the prompt cache.")
    ] = 0,
    output_tokens: Annotated[TokenCount, Field(description="Output tokens.")] = 0,
    cache_read_tokens: Annotated[
        TokenCount, Field(description="Input tokens read from the prompt cache.")
    ] = 0,
    cache_write_tokens: Annotated[
        TokenCount, Field(description="Input tokens written to the prompt cache.")
    ] = 0,
    cost_usd: Annotated[
        float | None,
        Field(
            ge=0,
            le=1_000_000,
            allow_inf_nan=False,
            description="What it cost in US dollars; omit it to price the tokens with cost.pricing.",
        ),
    ] = None,
    task_id: Annotated[Id | None, Field(description="The task the work was for, if any.")] = None,
    operation: Annotated[
        Name, Field(description="What kind of work: task, planning, review, merge, …")
    ] = "task",
    project: ProjectRef = None,
) -> CostEntry:
    """Add one line to the cost ledger (tokens and dollars, by model, agent and task).

    Crossing the budget's warning fraction, or the budget itself, adds an event. Each call adds a
    line, so record each piece of work once.
    """
    rt, caller = await session(ctx)
    return await rt.coord.costs.record(
        caller,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        cost_usd=cost_usd,
        task_id=task_id,
        operation=operation,
        project=project,
    )
