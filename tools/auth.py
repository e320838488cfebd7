"""Who is calling: a bearer token names an agent; no token means the local operator, where allowed."""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.context import OPERATOR, Caller, agent_caller
from coordinator.errors import PermissionDenied
from coordinator.records import Agent
from tools.runtime import Runtime, ToolContext, runtime_of

TOKEN_FIX = (
    "send `Authorization: Bearer <token>` with the token register_agent or `yokeflow launch` issued "
    "(over stdio: --token or YOKEFLOW_TOKEN)"
)


def bearer_token(headers: Mapping[str, str] | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no such header."""
    if headers is None:
        return None
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise PermissionDenied("Authorization: the header is not of the form 'Bearer <token>'", fix=TOKEN_FIX)
    return token.strip()


async def resolve_caller(runtime: Runtime, headers: Mapping[str, str] | None) -> Caller:
    """The caller of one request.

    HTTP requests (headers present) are identified by their own bearer token only; stdio and
    in-process calls (no headers) use the server's token. Without any token the caller is the
    local operator, unless the server requires tokens.
    """
    token = bearer_token(headers) if headers is not None else runtime.identity.token
    if token is not None:
        return agent_caller(await _agent_of(runtime, token))
    if runtime.identity.allow_operator:
        return OPERATOR
    raise PermissionDenied(
        "Authorization: this server requires a bearer token and the request carried none", fix=TOKEN_FIX
    )


async def session(ctx: ToolContext) -> tuple[Runtime, Caller]:
    """The runtime and the authenticated caller of this tool call."""
    runtime = runtime_of(ctx)
    return runtime, await resolve_caller(runtime, ctx.headers)


async def _agent_of(runtime: Runtime, token: str) -> Agent:
    """The token's agent: from the runtime's token cache when it has one, else from the database."""
    cache = runtime.tokens
    agent = cache.get(token) if cache is not None else None
    if agent is None:
        agent = await runtime.coord.agents.authenticate(token)
        if cache is not None:
            cache.put(token, agent)
    return agent
