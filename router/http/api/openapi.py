"""The OpenAPI 3.1 document of /api/v1, generated from the route table.

Built once at set-up from the same `Route` list the router registers, so a route cannot exist
without its documentation or the other way round. OpenAPI 3.1 takes JSON Schema 2020-12, which
is what pydantic's `model_json_schema` writes, so the models' schemas go in unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from router.http.api.schemas import ErrorResponse
from router.http.api.table import Call, Route

OPENAPI_KEY = web.AppKey("cityline_api_openapi", dict)

_REF = "#/components/schemas/{model}"
_SECURITY_SCHEMES = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "API token (cityline token create); no CSRF header needed",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "cityline_session",
        "description": "from POST /api/v1/auth/login; unsafe methods also need X-CSRF-Token",
    },
}
_ERROR_TEXT = {
    400: "malformed JSON (invalid_json) or request",
    401: "missing or invalid credentials (unauthorized)",
    403: "wrong role, another agent's id or interaction (forbidden), or no CSRF (csrf_failed)",
    404: "unknown resource (not_found, unknown_queue, unknown_agent...)",
    409: "not allowed in the current state (invalid_state, stale, busy...)",
    413: "body too large (request_too_large)",
    415: "body is not application/json, or not multipart/form-data for an upload "
    "(unsupported_media_type)",
    422: "the body does not validate (validation_error, with details) or names something "
    "unknown (channel_mismatch, unknown_reason...)",
    429: "too many failed logins (locked_out); see Retry-After",
}


def _version() -> str:
    try:
        return metadata.version("cityline")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _error_statuses(route: Route) -> list[int]:
    statuses = set(route.errors)
    if route.roles is not None:
        statuses |= {401, 403}
    if route.params:
        statuses.add(404)
    if route.request is not None or route.upload:
        statuses |= {400, 413, 415, 422}
    return sorted(statuses)


def build_document(routes: Sequence[Route], *, title: str = "cityline API") -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for route in routes:
        if route.request is not None:
            wanted.append((route.request, "validation"))
        if route.response is not None:
            wanted.append((route.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=_REF)
    error_ref = refs[(ErrorResponse, "serialization")]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "tags": [route.tag] if route.tag else [],
        }
        roles = sorted(r.value for r in route.roles) if route.roles is not None else []
        description = route.description
        if route.roles is not None:
            description = f"{description}\n\nRoles: {', '.join(roles)}.".strip()
            op["security"] = [{"bearerToken": []}, {"sessionCookie": []}]
        else:
            op["security"] = []
        if description:
            op["description"] = description
        op["x-roles"] = roles
        if route.params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in route.params
            ]
        if route.request is not None:
            op["requestBody"] = {
                # an empty body stands for {}: required only when some field has no default
                "required": any(f.is_required() for f in route.request.model_fields.values()),
                "content": {"application/json": {"schema": refs[(route.request, "validation")]}},
            }
        elif route.upload:
            op["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": [route.upload],
                    "properties": {route.upload: {"type": "string", "format": "binary"}},
                }}},
            }
        success: dict[str, Any] = {"description": route.summary}
        if route.response is not None:
            schema = refs[(route.response, "serialization")]
        else:
            schema = {"type": "object"}
        if route.media:
            success["content"] = {m: {"schema": {"type": "string", "format": "binary"}}
                                  for m in route.media}
        else:
            success["content"] = {"application/json": {"schema": schema}}
        responses: dict[str, Any] = {str(route.status): success}
        for status in _error_statuses(route):
            responses[str(status)] = {
                "description": _ERROR_TEXT.get(status, "error"),
                "content": {"application/json": {"schema": error_ref}},
            }
        responses["default"] = {
            "description": "any other error, same shape",
            "content": {"application/json": {"schema": error_ref}},
        }
        op["responses"] = responses
        paths.setdefault(route.full_path, {})[route.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": _version(),
            "description": "Contact routing for city halls. Errors are always "
            '{"error": {"code", "message"}}; clients branch on code.',
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


async def openapi_document(call: Call) -> web.StreamResponse:
    return web.json_response(call.request.app[OPENAPI_KEY])


def document_channel_route(
    app: web.Application,
    path: str,
    method: str,
    *,
    summary: str,
    request: type[BaseModel],
    responses: dict[str, str],
) -> None:
    """Add a channel's own /api/v1 route (e.g. the web form's JSON intake) to the served
    document, so the document still lists every /api/v1 route the app serves. No-op when the
    app has no API document (tests of the channel alone)."""
    document = app.get(OPENAPI_KEY)
    if document is None:
        return
    document["paths"].setdefault(path, {})[method.lower()] = {
        "summary": summary,
        "tags": ["channels"],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request.model_json_schema()}},
        },
        "responses": {code: {"description": text} for code, text in responses.items()},
    }
