"""The REST API under /api: JSON over the coordinator's services, its OpenAPI document, and live events.

`rest_routes(context)` gives the Starlette routes; `http_app.build_app` mounts them beside the MCP
paths. Every endpoint is a typed handler in one of the route tables below.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from coordinator import __version__
from coordinator.rest.api import Endpoint, PathApp, RestContext
from coordinator.rest.costs import COSTS
from coordinator.rest.errors import HttpError, error_response
from coordinator.rest.expertise import EXPERTISE
from coordinator.rest.graph import GRAPH
from coordinator.rest.merges import MERGES
from coordinator.rest.openapi import openapi_document
from coordinator.rest.projects import PROJECTS
from coordinator.rest.stream import STREAM
from coordinator.rest.tasks import TASKS

__all__ = ["RestContext", "endpoints", "rest_routes"]


def endpoints() -> list[Endpoint]:
    return [
        e for table in (PROJECTS, TASKS, GRAPH, MERGES, COSTS, EXPERTISE, STREAM) for e in table.endpoints
    ]


@cache
def _document() -> dict[str, Any]:
    return openapi_document(endpoints(), version=__version__)


async def _openapi(_: Request) -> Response:
    """GET /api/openapi.json: the OpenAPI 3.1 document of the REST API."""
    return JSONResponse(_document())


async def _unknown(request: Request) -> Response:
    return error_response(
        HttpError(
            404, "not_found", f"there is no {request.url.path}", fix="see /api/openapi.json for the endpoints"
        )
    )


def rest_routes(context: RestContext) -> list[BaseRoute]:
    """Every endpoint at its path, the OpenAPI document, and a JSON 404 for other /api paths."""
    by_path: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints():
        by_path.setdefault(endpoint.path, []).append(endpoint)
    routes: list[BaseRoute] = [Route(path, PathApp(context, group)) for path, group in by_path.items()]
    routes.append(Route("/api/openapi.json", _openapi, methods=["GET"]))
    routes.append(Route("/api/{rest:path}", _unknown))
    return routes
