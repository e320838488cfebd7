"""Argument types of the tools: the shared values of `coordinator.values`, plus titles, texts,
project references, lease ids and lease lengths, with their limits (priorities fit INTEGER)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from coordinator.values import Id, Limit, Name, Offset, ShortText, storable

__all__ = [
    "Id",
    "LeaseId",
    "Limit",
    "Name",
    "Offset",
    "Priority",
    "ProjectRef",
    "ShortText",
    "Text",
    "Title",
    "TtlSeconds",
]

Title = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(storable)]
Text = Annotated[str, Field(max_length=100_000), AfterValidator(storable)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
ProjectRef = Annotated[
    Id | Name | None,
    Field(
        description="Project name or id. Omit it to use your token's project, or else the server's "
        "default project (`--project`, server.project, or the only project there is)."
    ),
]
LeaseId = Annotated[
    str,
    Field(min_length=1, max_length=200, description="The lease_id claim_task returned for this task."),
    AfterValidator(storable),
]
TtlSeconds = Annotated[
    float | None,
    Field(
        ge=5,
        le=86_400,
        allow_inf_nan=False,
        description="How long the lease lasts without a heartbeat (default: leases.ttl_seconds).",
    ),
]
