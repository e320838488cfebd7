"""Parameter types of the REST API, with the limits that keep every value storable."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from coordinator.values import MAX_ID, Id, Limit, Name, Offset, ShortText, storable

__all__ = ["Cursor", "Id", "Limit", "Name", "Offset", "Priority", "ShortText", "Strict", "Text"]

Text = Annotated[str, Field(max_length=200_000), AfterValidator(storable)]
Priority = Annotated[int, Field(ge=-1_000_000, le=1_000_000, description="Lower runs first.")]
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
