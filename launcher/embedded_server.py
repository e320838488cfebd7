"""The HTTP server run inside the launcher (when no --server is given): uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from coordinator.config import Config
from coordinator.errors import YokeflowError
from launcher.serve import build_http_app, http_server

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def embedded_server(url: str, config: Config, *, repo: Path | None = None) -> AsyncIterator[str]:
    """Serve the database at `url` on a free loopback port until the block ends; the base URL.

    uvicorn runs on a thread with its own event loop (and leaves the process's signals alone).
    """
    port = free_port()
    app = build_http_app(url, config, host=HOST, repo=repo)
    server = http_server(app, host=HOST, port=port, log_level="warning")
    thread = threading.Thread(target=server.run, name="yokeflow-http", daemon=True)
    thread.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or loop.time() > deadline:
                raise YokeflowError(
                    f"the coordinator's HTTP server did not start on {HOST}:{port}",
                    fix="check the database URL and the messages above, or start one yourself with "
                    "`yokeflow serve --http` and pass --server",
                )
            await asyncio.sleep(0.02)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join)
