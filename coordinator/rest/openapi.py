"""The OpenAPI 3.1 document, generated from the route table and its pydantic models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from coordinator.rest.api import Endpoint
from coordinator.rest.errors import ErrorBody

_REF = "#/components/schemas/{model}"


def openapi_document(endpoints: Sequence[Endpoint], *, version: str) -> dict[str, Any]:
    """Paths, operations, parameters, bodies and answers of every endpoint, with shared schemas."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorBody, "serialization"): None}
    for endpoint in endpoints:
        for model in endpoint.models.values():
            wanted[(model, "validation")] = None
        if endpoint.response is not None:
            wanted[(endpoint.response, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=_REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs, schemas)
    error = {
        "description": "An error",
        "content": {"application/json": {"schema": refs[(ErrorBody, "serialization")]}},
    }
    for operation in (op for item in paths.values() for op in item.values()):
        operation["responses"].update({"4XX": error, "5XX": error})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "YokeFlow Coordinator",
            "version": version,
            "description": "Projects, tasks, dependencies, the execution plan, worktrees and merges, agents, "
            "costs, expertise and the live event stream. Without a token, requests act as the local operator "
            "when the server allows it (loopback, no --require-token); writes need the operator or a planner.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An agent token."}
            },
        },
        "security": [{}, {"bearer": []}],
    }


def _operation(endpoint: Endpoint, refs: dict[Any, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.handler.__name__,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": [],
    }
    if endpoint.description:
        operation["description"] = endpoint.description
    for part, where in (("path", "path"), ("query", "query")):
        model = endpoint.models.get(part)
        if model is not None:
            operation["parameters"] += _parameters(_definition(refs[(model, "validation")], schemas), where)
    body = endpoint.models.get("body")
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(body, "validation")]}},
        }
    schema = {"type": "string"} if endpoint.response is None else refs[(endpoint.response, "serialization")]
    operation["responses"] = {
        str(endpoint.status): {
            "description": endpoint.summary,
            "content": {endpoint.media_type: {"schema": schema}},
        }
    }
    return operation


def _definition(ref: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    name = str(ref["$ref"]).rsplit("/", 1)[-1]
    return dict(schemas[name])


def _parameters(definition: dict[str, Any], where: str) -> list[dict[str, Any]]:
    required = set(definition.get("required", []))
    found = []
    for name, schema in definition.get("properties", {}).items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
        }
        if "description" in schema:
            parameter["description"] = schema["description"]
        parameter["schema"] = {k: v for k, v in schema.items() if k not in ("description", "title")}
        if schema.get("type") == "array":
            parameter["style"], parameter["explode"] = "form", True
        found.append(parameter)
    return found
