"""The REST machinery: a table of typed handlers, and how one request runs through it.

A handler is `async def name(call: Call, path: P, query: Q, body: B) -> R`: `path`, `query` and
`body` are optional and each annotated with a pydantic model; `R` is a pydantic model (the
JSON answer) or a Starlette `Response` (a stream). Everything else is derived from those
annotations: request validation, the answer, and the OpenAPI document (`openapi.py`).
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from coordinator.context import OPERATOR, Caller, Role, agent_caller, require_role
from coordinator.errors import PermissionDenied, YokeflowError
from coordinator.rest.errors import HttpError, Unauthenticated, error_response, invalid
from coordinator.rest.reads import RestReads
from coordinator.service import Coordinator

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
WRITERS: tuple[Role, ...] = ("operator", "planner")
_PARTS = ("path", "query", "body")

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Call:
    """What a handler gets besides its parameters: the coordinator, the caller, the request and its app's context."""

    coord: Coordinator
    caller: Caller
    request: Request
    context: RestContext

    @property
    def reads(self) -> RestReads:
        return RestReads(self.coord.store, self.coord.config, self.coord.wakeup)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    tag: str
    write: bool
    status: int
    models: dict[str, type[BaseModel]]
    response: type[BaseModel] | None
    """None: the handler answers with its own `Response` of `media_type`."""
    media_type: str = "application/json"
    token_in_query: bool = False
    """The token may come as `?access_token=` (EventSource cannot send headers)."""

    @property
    def summary(self) -> str:
        return (self.handler.__doc__ or self.handler.__name__).strip().splitlines()[0]

    @property
    def description(self) -> str:
        return "\n".join(
            line.strip() for line in (self.handler.__doc__ or "").strip().splitlines()[1:]
        ).strip()


class RouteTable:
    """The endpoints of one part of the API (one OpenAPI tag)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **options)

    def patch(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **options)

    def delete(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **options)

    def route(
        self,
        method: str,
        path: str,
        *,
        write: bool | None = None,
        status: int = 200,
        media_type: str = "application/json",
        token_in_query: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Add a handler; `write` (default: every method but GET) needs an operator or planner."""

        def add(handler: Handler) -> Handler:
            hints = typing.get_type_hints(handler)
            answer = hints["return"]
            self.endpoints.append(
                Endpoint(
                    method=method,
                    path=path,
                    handler=handler,
                    tag=self.tag,
                    write=method != "GET" if write is None else write,
                    status=status,
                    models={part: hints[part] for part in _PARTS if part in hints},
                    response=None if issubclass(answer, Response) else answer,
                    media_type=media_type,
                    token_in_query=token_in_query,
                )
            )
            return handler

        return add


@dataclass
class RestContext:
    """What every request shares: the open coordinator (None while starting) and the identity rules.

    `allow_operator`: a request without a token acts as the local operator (loopback servers
    without --require-token). `security`: the Host and Origin headers accepted (None: any).
    """

    allow_operator: bool
    security: TransportSecuritySettings | None
    coord: Coordinator | None = None
    heartbeat_seconds: float = 15.0
    """How long an event stream stays quiet before it sends a `: ping` comment."""
    poll_seconds: float = 1.0
    """How often an event stream reads the log when no wake-up came."""
    open_streams: int = 0
    closing: bool = False
    """Set as the server starts to shut down: event streams then end within `poll_seconds`."""


class PathApp:
    """The ASGI app of one path: picks the endpoint of the method and runs it."""

    def __init__(self, context: RestContext, endpoints: Sequence[Endpoint]) -> None:
        self.context = context
        self.by_method = {e.method: e for e in endpoints}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        endpoint = self.by_method.get(request.method)
        if endpoint is None:
            allowed = ", ".join(sorted(self.by_method))
            response: Response = error_response(
                HttpError(
                    405, "method_not_allowed", f"{request.method} is not allowed here", fix=f"use {allowed}"
                )
            )
            response.headers["Allow"] = allowed
        else:
            response = await run(self.context, endpoint, request)
        await response(scope, receive, send)


async def run(context: RestContext, endpoint: Endpoint, request: Request) -> Response:
    """One request: check its headers, identify the caller, validate, call the handler, answer."""
    try:
        check_headers(request, context.security)
        coord = context.coord
        if coord is None:
            raise HttpError(503, "starting", "the server is not ready yet", fix="try again in a moment")
        caller = await identify(coord, request, context.allow_operator, endpoint.token_in_query)
        if endpoint.write:
            require_role(caller, WRITERS, f"make changes ({endpoint.method} {endpoint.path})")
        arguments = {part: await _parse(part, model, request) for part, model in endpoint.models.items()}
        result = await endpoint.handler(Call(coord, caller, request, context), **arguments)
    except YokeflowError as exc:
        return error_response(exc)
    except Exception:  # an answer instead of a dropped connection; the log has the details
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal", "message": "the server failed to answer", "fix": "see the server's log"},
            500,
        )
    if endpoint.response is None:
        assert isinstance(result, Response)
        return result
    return Response(result.model_dump_json(), endpoint.status, media_type="application/json")


async def identify(
    coord: Coordinator, request: Request, allow_operator: bool, token_in_query: bool
) -> Caller:
    """The agent of the request's bearer token; without one, the operator where the server allows it."""
    header = request.headers.get("authorization")
    token = request.query_params.get("access_token") if token_in_query else None
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization: the header is not of the form 'Bearer <token>'")
    if token is None:
        if allow_operator:
            return OPERATOR
        raise Unauthenticated("this server requires a bearer token and the request carried none")
    try:
        return agent_caller(await coord.agents.authenticate(token.strip()))
    except PermissionDenied as exc:
        raise Unauthenticated(exc.message, fix=exc.fix) from None


def check_headers(request: Request, security: TransportSecuritySettings | None) -> None:
    """Refuse other sites' pages (DNS rebinding, cross-site requests) and bodies that are not JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise HttpError(
            415,
            "unsupported_media_type",
            f"the body is {content_type}",
            fix="send Content-Type: application/json",
        )
    if security is None or not security.enable_dns_rebinding_protection:
        return
    if not _matches(request.headers.get("host", ""), security.allowed_hosts):
        raise HttpError(
            421, "invalid_host", "the Host header names another server", fix="use the server's address"
        )
    origin = request.headers.get("origin")
    if origin is not None and not _matches(origin, security.allowed_origins):
        raise HttpError(
            403,
            "invalid_origin",
            f"requests from pages of {origin} are not accepted",
            fix="open the dashboard from this server, or add the name with --allowed-host",
        )


def _matches(value: str, allowed: Sequence[str]) -> bool:
    return value in allowed or any(a.endswith(":*") and value.startswith(a[:-1]) for a in allowed)


async def _parse(part: str, model: type[BaseModel], request: Request) -> BaseModel:
    try:
        if part == "path":
            return model.model_validate(request.path_params)
        if part == "query":
            return model.model_validate(query_values(request, model))
        return model.model_validate_json(await read_body(request) or b"{}")
    except ValidationError as exc:
        raise invalid(exc, part) from None


def query_values(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """The query string as the model's fields: list fields repeat (`?status=a&status=b`) or take commas."""
    values: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        field = model.model_fields.get(key)
        if field is not None and typing.get_origin(field.annotation) is list:
            values.setdefault(key, []).extend(v for v in value.split(",") if v)
        else:
            values[key] = value
    return values


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 beyond MAX_BODY_BYTES (before reading it when its length is declared)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


def _too_large() -> HttpError:
    return HttpError(
        413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes", fix="send less in one request"
    )
