"""Error texts for tool results: each names the argument, the problem and the fix."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from coordinator.errors import InvalidInput, LeaseLost, PermissionDenied, YokeflowError

# Which kind of object an argument names, to find the argument an error message is about.
_ARGUMENT_NOUNS = {
    "task_id": "task",
    "depends_on": "task",
    "epic_id": "epic",
    "test_id": "test",
    "project": "project",
    "persona": "persona",
}
_FIELD_PREFIX = re.compile(r"^[A-Za-z_][\w\[\].]*: ")


def describe_error(exc: YokeflowError, arguments: Mapping[str, Any]) -> str:
    """`argument: problem. Fix: …` for a coordinator error raised by a tool call with `arguments`."""
    text = str(exc)
    if isinstance(exc, InvalidInput | LeaseLost) or _FIELD_PREFIX.match(text):
        return text
    if isinstance(exc, PermissionDenied):
        return f"permission denied: {text}"
    argument = _argument_named(exc.message, arguments)
    return f"{argument}: {text}" if argument else text


def _argument_named(message: str, arguments: Mapping[str, Any]) -> str | None:
    for name, value in arguments.items():
        noun = _ARGUMENT_NOUNS.get(name)
        if noun is None or not isinstance(value, int | str) or isinstance(value, bool):
            continue
        if re.search(rf"\b{noun} '?{re.escape(str(value))}'?(?!\w)", message):
            return name
    return None


def describe_validation(exc: ValidationError, *, limit: int = 5) -> str:
    """The arguments that failed validation, what was wrong with each, and the fix."""
    problems: list[str] = []
    fields: list[str] = []
    for error in exc.errors()[:limit]:
        where = _location(error["loc"])
        fields.append(where)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] != "missing":
            shown = repr(error.get("input"))
            message += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
        problems.append(f"{where}: {message}")
    more = len(exc.errors()) - limit
    if more > 0:
        problems.append(f"and {more} more")
    names = ", ".join(dict.fromkeys(fields))
    return f"{'; '.join(problems)}. Fix: correct {names} as the tool's input schema describes"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "arguments"
