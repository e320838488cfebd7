"""Argument types shared by the tools: ids, names, texts and references, with their limits.

Limits keep every value storable on both backends (ids fit BIGINT, priorities INTEGER) and
text free of NUL characters and lone surrogates, which the databases cannot store.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

MAX_ID = 2**63 - 1


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_storable)]
Title = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_storable)]
ShortText = Annotated[str, Field(max_length=2_000), AfterValidator(_storable)]
Text = Annotated[str, Field(max_length=100_000), AfterValidator(_storable)]
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
    AfterValidator(_storable),
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
Limit = Annotated[int, Field(ge=1, le=1000, description="Most items to return.")]
Offset = Annotated[int, Field(ge=0, le=MAX_ID, description="Items to skip (for paging).")]
