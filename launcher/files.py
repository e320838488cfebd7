"""Reading the files a command is given, with an error that names the file and what it should be."""

from __future__ import annotations

import asyncio
from pathlib import Path

from coordinator.errors import InvalidInput


async def read_text_file(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; `what` says what the file should be (e.g. "a JSON or YAML plan file")."""
    try:
        return await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(str(path), f"cannot be read: {exc}", fix=f"give the path of {what}") from None
