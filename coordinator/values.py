"""Value types shared by every door (MCP tools, REST API): ids, names, texts and paging, with limits.

The limits keep every value storable on both backends (ids fit BIGINT) and text free of NUL
characters and lone surrogates, which the databases cannot store.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

MAX_ID = 2**63 - 1


def storable(value: str) -> str:
    """`value` if a database can store it; otherwise a ValueError saying why."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(storable)]
ShortText = Annotated[str, Field(max_length=2_000), AfterValidator(storable)]
Limit = Annotated[int, Field(ge=1, le=1000, description="Most items to return.")]
Offset = Annotated[int, Field(ge=0, le=MAX_ID, description="Items to skip (for paging).")]
