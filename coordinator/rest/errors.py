"""Errors as JSON answers: `{"error": code, "message", "fix"}` with the HTTP status that fits."""

from __future__ import annotations

from pydantic import BaseModel, Field, ValidationError
from starlette.responses import JSONResponse

from coordinator.errors import (
    CycleError,
    DatabaseLocked,
    DatabaseUnavailable,
    InvalidInput,
    LeaseLost,
    NotFound,
    PermissionDenied,
    StateConflict,
    YokeflowError,
)

TOKEN_FIX = "send `Authorization: Bearer <token>` with the token register_agent or `yokeflow launch` issued"


class ErrorBody(BaseModel):
    """What every 4xx and 5xx answer of the API holds."""

    error: str = Field(description="A stable code: invalid_json, invalid_input, cycle, not_found, ...")
    message: str = Field(description="What was wrong, in words.")
    fix: str | None = Field(description="How to put it right.")
    field: str | None = Field(default=None, description="The request field the error is about, if one.")
    cycle: list[int] | None = Field(default=None, description="For code cycle: the task ids of the cycle.")


class HttpError(YokeflowError):
    """A refusal of the HTTP layer itself (bad JSON, a body too large, no token) with its status."""

    def __init__(
        self, status: int, code: str, message: str, *, fix: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, fix=fix)
        self.status, self.code, self.field = status, code, field


class Unauthenticated(HttpError):
    def __init__(self, message: str, *, fix: str | None = TOKEN_FIX) -> None:
        super().__init__(401, "unauthorized", message, fix=fix)


_STATUS: tuple[tuple[type[YokeflowError], int], ...] = (
    (PermissionDenied, 403),
    (NotFound, 404),
    (StateConflict, 409),
    (LeaseLost, 409),
    (InvalidInput, 422),
    (DatabaseLocked, 503),
    (DatabaseUnavailable, 503),
)


def status_of(exc: YokeflowError) -> int:
    if isinstance(exc, HttpError):
        return exc.status
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 400)


def error_response(exc: YokeflowError) -> JSONResponse:
    body = ErrorBody(
        error=exc.code,
        message=exc.message,
        fix=exc.fix,
        field=exc.field if isinstance(exc, InvalidInput | HttpError) else None,
        cycle=exc.cycle if isinstance(exc, CycleError) else None,
    )
    status = status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="yokeflow"'} if status == 401 else None
    return JSONResponse(body.model_dump(exclude_none=True), status, headers=headers)


def invalid(exc: ValidationError, part: str) -> YokeflowError:
    """A request part (`path`, `query`, `body`) that does not match its model: 400 for bad JSON, else 422."""
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return HttpError(
            400, "invalid_json", f"the body is not valid JSON: {errors[0]['msg']}", fix="send a JSON object"
        )
    problems: list[str] = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in (part, *error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] not in ("missing", "extra_forbidden"):
            shown = repr(error.get("input"))
            message += f" (got {shown[:60] + '…' if len(shown) > 60 else shown})"
        problems.append(f"{where}: {message}")
    if len(errors) > 5:
        problems.append(f"and {len(errors) - 5} more")
    return HttpError(
        422,
        "invalid_input",
        "; ".join(problems),
        fix="see /api/openapi.json for this endpoint's schema",
        field=".".join(str(p) for p in errors[0]["loc"]) or part,
    )
