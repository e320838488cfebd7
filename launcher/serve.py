"""`yokeflow serve`: the MCP server over stdio (one client) or streamable HTTP (many clients)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from coordinator.config import Config
from coordinator.errors import ConfigError, InvalidInput
from coordinator.http_app import (
    SHUTDOWN_GRACE_SECONDS,
    McpFactory,
    build_app,
    host_protection,
    is_loopback,
)
from coordinator.service import Coordinator
from coordinator.storage.base import Clock
from tools.runtime import Identity, Runtime
from tools.server import HTTP_PATHS, PROFILES, Profile, build_server
from tools.token_cache import DEFAULT_SECONDS as DEFAULT_TOKEN_CACHE_SECONDS
from tools.token_cache import TokenCache

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "YOKEFLOW_TOKEN"


def with_project(config: Config, project: str | None) -> Config:
    """`config` with server.project set to `project` (unchanged when it is None)."""
    if project is None:
        return config
    return config.model_copy(update={"server": config.server.model_copy(update={"project": project})})


async def serve_stdio(
    *,
    url: str,
    config: Config | None = None,
    profile: Profile = "all",
    token: str | None = None,
    repo: Path | None = None,
) -> None:
    """Serve one MCP client over stdin/stdout until it disconnects.

    With `token`, every call acts as that agent; without, as the local operator. While the
    client is connected, expertise is consolidated as `learning.self_improve_interval` says and,
    with `repo`, the merge queue runs in the background.
    """
    coord = await Coordinator.open(url, config, repo=repo)
    background = [asyncio.create_task(coord.improve_expertise_forever())]
    if repo is not None:
        background.append(asyncio.create_task(coord.merge_forever()))
    try:
        if token is not None:
            await coord.agents.authenticate(token)  # a wrong token fails now, not on the first call
        server = build_server(profile, Runtime(coord, Identity(token=token)))
        await server.run_stdio_async()
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await coord.close()


def parse_listen(
    value: str | None, *, default_host: str = DEFAULT_HOST, default_port: int = DEFAULT_PORT
) -> tuple[str, int]:
    """`[HOST:]PORT` (IPv6 as `[::1]:8765`) → (host, port); empty means the defaults."""
    if not value:
        return default_host, default_port
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = default_host, value
    host = host.strip("[]") or default_host
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidInput(
            "--http", f"{value!r} is not [HOST:]PORT", fix="e.g. --http 8765 or --http 127.0.0.1:8765"
        )
    return host, int(port_text)


def check_exposure(host: str, require_token: bool) -> None:
    """Refuse to listen beyond this machine unless every call must carry a token."""
    if not is_loopback(host) and not require_token:
        raise ConfigError(
            f"refusing to listen on {host}: without tokens anyone who can reach it would act as the operator",
            fix="add --require-token (agents then send `Authorization: Bearer <token>`), "
            "or listen on 127.0.0.1",
        )


def build_http_app(
    url: str,
    config: Config | None = None,
    *,
    host: str = DEFAULT_HOST,
    require_token: bool = False,
    allowed_hosts: Sequence[str] = (),
    clock: Clock | None = None,
    sweep_interval_seconds: float | None = None,
    token_cache_seconds: float = DEFAULT_TOKEN_CACHE_SECONDS,
    repo: Path | None = None,
) -> Starlette:
    """The HTTP app with every profile at its path (`/mcp` = all tools), over one coordinator.

    `clock` replaces the store's clock (tests move time by hand); `sweep_interval_seconds` sets how
    often the background sweep runs (default: leases.heartbeat_interval_seconds);
    `token_cache_seconds` how long a token's agent is remembered (0: read it on every call);
    `repo` the git repository of projects that name none (worktrees and the merge queue).
    """
    config = config or Config()
    identity = Identity(allow_operator=not require_token)
    tokens = TokenCache(token_cache_seconds) if token_cache_seconds > 0 else None

    def factory(profile: Profile) -> McpFactory:
        return lambda coord: build_server(profile, Runtime(coord, identity, tokens))

    return build_app(
        open_coordinator=partial(Coordinator.open, url, config, clock=clock, repo=repo),
        mcp={path: factory(profile) for path, profile in HTTP_PATHS.items()},
        require_token=require_token,
        json_response=config.server.json_response,
        transport_security=host_protection(host, allowed_hosts),
        sweep_interval_seconds=sweep_interval_seconds,
    )


async def run_http(
    *,
    url: str,
    config: Config | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    require_token: bool = False,
    allowed_hosts: Sequence[str] = (),
    log_level: str = "info",
    repo: Path | None = None,
) -> None:
    """Serve HTTP until interrupted (the coroutine behind `serve_http`)."""
    check_exposure(host, require_token)
    app = build_http_app(
        url, config, host=host, require_token=require_token, allowed_hosts=allowed_hosts, repo=repo
    )
    await http_server(app, host=host, port=port, log_level=log_level).serve()


class _Server(uvicorn.Server):
    """uvicorn that ends the app's open event streams as soon as it starts to shut down."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.state.rest.closing = True  # a dashboard's stream would otherwise hold the shutdown up
        await super().shutdown(sockets)


def http_server(app: Starlette, *, host: str, port: int, log_level: str = "info") -> uvicorn.Server:
    """The uvicorn server of the app (`build_http_app`), which also ends its event streams when stopping."""
    options = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,  # a client that holds on longer is cut off
    )
    return _Server(options, app)


def serve_http(
    *,
    url: str,
    config: Config | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    require_token: bool = False,
    allowed_hosts: Sequence[str] = (),
    log_level: str = "info",
) -> None:
    """Serve MCP over streamable HTTP (and the REST API) at http://HOST:PORT until interrupted."""
    asyncio.run(
        run_http(
            url=url,
            config=config,
            host=host,
            port=port,
            require_token=require_token,
            allowed_hosts=allowed_hosts,
            log_level=log_level,
        )
    )


# ------------------------------------------------------------------------------ command line


def add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to the `yokeflow` command line."""
    serve = commands.add_parser(
        "serve",
        help="run the MCP server (stdio, or --http [HOST:]PORT)",
        description="Serve the coordinator's MCP tools: over stdio for one client (Claude Desktop, an IDE), "
        "or over streamable HTTP for many (agents, IDEs) at /mcp, /mcp/planner, /mcp/worker, "
        "/mcp/observer and /mcp/yokeflow.",
    )
    serve.add_argument(
        "--http",
        metavar="[HOST:]PORT",
        nargs="?",
        const="",
        help=f"serve streamable HTTP instead of stdio (default {DEFAULT_HOST}:{DEFAULT_PORT}, "
        "or server.host/server.port of the config)",
    )
    serve.add_argument(
        "--profile",
        choices=PROFILES,
        default="all",
        help="stdio: which tools to offer (default all); over HTTP each profile has its own path",
    )
    serve.add_argument("--project", help="the project calls naming none work on (default: server.project)")
    serve.add_argument(
        "--token",
        help=f"stdio: act as the agent of this token (default: ${TOKEN_ENV}, else the local operator)",
    )
    serve.add_argument(
        "--require-token",
        action="store_true",
        help="HTTP: every call must carry `Authorization: Bearer <token>` (needed to listen beyond loopback)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="HTTP: a host name clients use to reach the server (Host-header protection); repeatable",
    )
    serve.add_argument(
        "--repo",
        metavar="PATH",
        help="the git repository agents work in (worktrees, merge queue); default: --root when it is a "
        "git checkout",
    )
    serve.add_argument(
        "--no-repo", action="store_true", help="work without git: no worktrees, no merge queue"
    )
    serve.set_defaults(handler=cmd_serve)


def repository_for(args: argparse.Namespace) -> Path | None:
    """The repository `--repo`/`--no-repo`/`--root` name: explicit, else the root if it is a git checkout."""
    if args.no_repo:
        return None
    if args.repo:
        repo = Path(args.repo).resolve()
        if not repo.is_dir():
            raise InvalidInput(
                "--repo", f"{args.repo} is not a folder", fix="give the path of your git checkout"
            )
        return repo
    root = Path(args.root).resolve()
    return root if (root / ".git").exists() else None


async def cmd_serve(args: argparse.Namespace) -> int:
    from launcher.cli import _config_and_url

    config, url = _config_and_url(args)
    config = with_project(config, args.project)
    if args.http is None:
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING)  # stdout carries the protocol
        await serve_stdio(
            url=url,
            config=config,
            profile=args.profile,
            token=args.token or os.environ.get(TOKEN_ENV),
            repo=repository_for(args),
        )
        return 0
    host, port = parse_listen(args.http, default_host=config.server.host, default_port=config.server.port)
    await run_http(
        url=url,
        config=config,
        host=host,
        port=port,
        require_token=args.require_token,
        allowed_hosts=args.allowed_host,
        repo=repository_for(args),
    )
    return 0
