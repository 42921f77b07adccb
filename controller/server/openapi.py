"""The OpenAPI 3.1 document of the controller's HTTP API, generated from the route table."""

from __future__ import annotations

from typing import Any

from controller import __version__
from controller.server.route import MiB, Route

# -- OpenAPI ---------------------------------------------------------------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "What is wrong."}},
    "required": ["error"],
    "additionalProperties": True,
}


def _response_doc(route: Route, status: int, description: str, limits: str) -> dict[str, Any]:
    if status == 413:
        description = f"{description} {limits}"
    doc: dict[str, Any] = {"description": description}
    if status >= 400:
        doc["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    elif route.response_media_type == "application/json":
        doc["content"] = {"application/json": {"schema": {}}}
    else:
        doc["content"] = {route.response_media_type: {"schema": {"type": "string"}}}
    if status == 429:
        doc["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return doc


def openapi_document(
    routes: tuple[Route, ...],
    *,
    max_body_bytes: int = MiB,
    rate_per_second: float = 20,
    burst: int = 40,
) -> dict[str, Any]:
    """An OpenAPI 3.1 document describing ``routes`` (and the limits they are served with)."""
    limit = f"The limit is {max_body_bytes} bytes."
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "description": route.description,
            "tags": [route.tag],
        }
        if route.parameters:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": description,
                    "schema": {"type": "string"},
                }
                for name, description in route.parameters
            ]
        if route.request_body is not None:
            operation["requestBody"] = {
                "description": f"{route.request_body} At most {max_body_bytes} bytes.",
                "required": False,
                "content": {media: {"schema": {}} for media in route.request_media_types},
            }
        operation["responses"] = {
            str(status): _response_doc(route, status, description, limit)
            for status, description in route.responses
        }
        if route.bearer:
            operation["security"] = [{"bearer": []}]
        if route.rate_key is not None:
            operation["x-rate-limit"] = {
                "requestsPerSecond": rate_per_second,
                "burst": burst,
                "per": ["route", *route.rate_key],
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Blockflow controller",
            "version": __version__,
            "description": (
                "The HTTP surface of the Blockflow controller: callbacks, triggers, hooks, "
                "CloudEvents ingest, entity syncs, and operations endpoints. Request bodies "
                f"are limited to {max_body_bytes} bytes; token routes are rate-limited to "
                f"{rate_per_second:g} requests per second (bursts of {burst}) per token."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA},
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before retrying (at least 1).",
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
