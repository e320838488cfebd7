"""Parameter types of the REST API, with the limits that keep every value storable."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
ShortText = Annotated[str, Field(max_length=2_000), AfterValidator(_storable)]
Text = Annotated[str, Field(max_length=200_000), AfterValidator(_storable)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000, description="Lower runs first.")]
Limit = Annotated[int, Field(ge=1, le=1000, description="Most items to return.")]
Offset = Annotated[int, Field(ge=0, le=MAX_ID, description="Items to skip (for paging).")]
Cursor = Annotated[
    int, Field(ge=0, le=MAX_ID, description="An event position: events after it are returned.")
]


class Strict(BaseModel):
    """A request part: unknown fields are refused, so a misspelt one is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ProjectPath(Strict):
    project: Name = Field(description="The project's name or id.")


class TaskPath(Strict):
    task_id: Id


class MergePath(Strict):
    merge_id: Id


class Reason(Strict):
    reason: ShortText = Field(default="", description="Why; kept in the audit log.")
