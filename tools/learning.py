"""Learning tools: record what was learned about a domain, and read a domain's expertise."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from coordinator.expertise import LearningRecorded
from coordinator.expertise_model import MAX_CONTENT_CHARS, Kind
from coordinator.expertise_store import ExpertiseView
from tools.arguments import Id, Name, ProjectRef, ShortText
from tools.auth import session
from tools.registry import ToolSet
from tools.runtime import ToolContext

TOOLS = ToolSet()

DomainArg = Annotated[Name, Field(description="An expertise domain of learning.domains, e.g. database.")]


@TOOLS.tool("Record a learning")
async def record_learning(
    ctx: ToolContext,
    kind: Annotated[
        Kind,
        Field(
            description="pattern: how this codebase does things; technique: a practice that worked; "
            "failure: an error and (in fix) what fixed it; core_file: a file central to the domain; "
            "gotcha: a trap to avoid."
        ),
    ],
    content: Annotated[
        ShortText,
        Field(
            min_length=1,
            max_length=MAX_CONTENT_CHARS,
            description="The learning in a sentence or two; for core_file, the path relative to the repository root.",
        ),
    ],
    domain: Annotated[
        Name | None,
        Field(description="Its domain; omitted: the task's domain, else classified from content and files."),
    ] = None,
    task_id: Annotated[Id | None, Field(description="The task it was learned on, if any.")] = None,
    fix: Annotated[ShortText | None, Field(description="For a failure: what fixed it.")] = None,
    files: Annotated[
        list[ShortText],
        Field(max_length=100, description="Files it is about, relative to the repository root."),
    ] = [],  # noqa: B006
    project: ProjectRef = None,
) -> LearningRecorded:
    """Add a learning to a domain's expertise, which later claims of that domain receive.

    The same learning again (case, spacing and final punctuation aside) raises its count instead
    of adding a copy.
    """
    rt, caller = await session(ctx)
    return await rt.coord.expertise.record_learning(
        caller,
        kind=kind,
        content=content,
        domain=domain,
        task_id=task_id,
        fix=fix,
        files=files,
        project=project,
    )


@TOOLS.tool("Get a domain's expertise")
async def get_expertise(ctx: ToolContext, domain: DomainArg, project: ProjectRef = None) -> ExpertiseView:
    """Everything learned about a domain: its entries with their counts, version, confidence and usage.

    Reading counts as a use of the expertise (usage_count).
    """
    rt, caller = await session(ctx)
    return await rt.coord.expertise.get_expertise(caller, domain=domain, project=project)
