"""The web dashboard: `/` and `/static/...`, served from files shipped inside the package.

The page is hand-written HTML, CSS and JavaScript in `coordinator/dashboard/` (no Node build
step, nothing from a CDN). It reads the REST API and the server-sent event stream of the same
process, so these routes only hand out files. Every answer carries a strict Content Security
Policy: the page may load and talk to its own origin only.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
"""The folder holding index.html, app.js and style.css (inside the package, so it ships in the wheel)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The files change with the package; the browser checks its copy (ETag) on every load.
    "Cache-Control": "no-cache",
}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


async def index(_: Request) -> Response:
    """GET /: the dashboard page."""
    return FileResponse(
        DASHBOARD_DIR / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


class _DashboardFiles(StaticFiles):
    """The page's scripts and styles, with the security headers and the right JavaScript type on every platform."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        media_type = _TYPES.get(Path(path).suffix)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if not (media_type and k.lower() == b"content-type")
                ]
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                if media_type:
                    headers.append((b"content-type", media_type.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def dashboard_routes() -> list[BaseRoute]:
    """The routes to add to the HTTP app: the page at `/`, its files under `/static/`."""
    return [
        Route("/", index, methods=["GET", "HEAD"], name="dashboard"),
        Mount("/static", app=_DashboardFiles(directory=DASHBOARD_DIR), name="dashboard-static"),
    ]
