"""The OpenAPI document and the router are generated from one table: they must agree exactly."""

from __future__ import annotations

from typing import Any

import openapi_spec_validator
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from router.auth import Auth
from router.config import CitylineConfig
from router.http.api import ROUTES, ROUTES_KEY, setup_api
from router.http.api.table import API_PREFIX
from router.http.app import AppContext, create_app
from router.service import RoutingService
from tests.api_helpers import API, ApiHarness, cheap_hasher

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture
async def document(api: ApiHarness) -> dict[str, Any]:
    client = await api.client()
    resp = await client.get(f"{API}/openapi.json")  # public: no credentials
    assert resp.status == 200
    return await resp.json()


def _api_routes(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every /api/v1 route the aiohttp router serves."""
    out = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith(API_PREFIX) and route.method != "HEAD":
            out.add((route.method.lower(), canonical))
    return out


def _resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/components/schemas/"), ref
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


def _app(cfg: CitylineConfig, redis: aioredis.Redis, service: RoutingService) -> web.Application:
    auth = Auth(redis, service.store.keys, cfg, hasher=cheap_hasher())
    return create_app(
        AppContext(config=cfg, redis=redis, keys=service.store.keys, store=service.store),
        extra_setup=[lambda app: setup_api(app, service, auth)],
    )


async def test_document_is_openapi_3_1(document: dict[str, Any]):
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] and document["info"]["version"]
    assert document["paths"]
    assert {"bearerToken", "sessionCookie"} <= set(document["components"]["securitySchemes"])
    openapi_spec_validator.validate(document)  # raises on any violation of the spec


async def test_every_route_is_documented_and_every_path_routed(
    document: dict[str, Any], cfg: CitylineConfig, redis: aioredis.Redis,
    service: RoutingService,
):  # fmt: skip
    app = _app(cfg, redis, service)
    routed = _api_routes(app)
    documented = {
        (method, path)
        for path, ops in document["paths"].items()
        for method in ops
        if method in METHODS
    }
    assert routed == documented
    assert len(routed) == len(ROUTES) == len(app[ROUTES_KEY])


async def test_request_and_response_schemas(document: dict[str, Any]):
    for route in ROUTES:
        op = document["paths"][route.full_path][route.method.lower()]
        assert op["operationId"] == route.name and op["summary"] == route.summary
        if route.upload:
            form = op["requestBody"]["content"]["multipart/form-data"]["schema"]
            assert form["properties"][route.upload]["format"] == "binary"
            assert {"413", "415", "422"} <= set(op["responses"])
        elif route.request is None:
            assert "requestBody" not in op, route.full_path
        else:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            resolved = _resolve(document, schema["$ref"])
            assert resolved["additionalProperties"] is False, route.request
            assert set(resolved["properties"]) == set(route.request.model_fields)
        content = op["responses"][str(route.status)]["content"]
        if route.media:  # an image, not JSON
            assert set(content) == set(route.media)
        elif route.response is not None:
            success = content["application/json"]["schema"]
            assert set(_resolve(document, success["$ref"])["properties"]) == set(
                route.response.model_fields
            )
        assert [p["name"] for p in op.get("parameters", [])] == route.params
        if route.roles is None:
            assert op["security"] == []
        else:
            assert op["x-roles"] == sorted(r.value for r in route.roles)
            assert "401" in op["responses"] and "403" in op["responses"]
        error = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert _resolve(document, error["$ref"])["properties"].keys() == {"error"}


async def test_documented_intake_schema_matches_the_model(document: dict[str, Any]):
    op = document["paths"]["/api/v1/interactions"]["post"]
    schema = _resolve(document, op["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert schema["required"] == ["channel"]
    assert op["requestBody"]["required"] is True
    assert "201" in op["responses"]
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert "429" in login["responses"]
    agent_login = document["paths"]["/api/v1/agents/{agent_id}/login"]["post"]
    assert agent_login["requestBody"]["required"] is False  # {} is a valid body


async def test_case_photo_routes_are_documented(document: dict[str, Any]):
    photo = document["paths"]["/api/v1/cases/{number}/photos/{index}"]["get"]
    assert set(photo["responses"]["200"]["content"]) == {
        "image/jpeg", "image/png", "image/webp", "image/gif"}
    assert {"403", "404"} <= set(photo["responses"])
    upload = document["paths"]["/api/v1/cases/{number}/photos"]["post"]
    assert upload["requestBody"]["required"] is True
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"201", "403", "404", "413", "415", "422"} <= set(upload["responses"])


async def test_a_route_declared_twice_is_refused(
    cfg: CitylineConfig, redis: aioredis.Redis, service: RoutingService
):
    from router.http.api.table import register

    app = web.Application()
    auth = Auth(redis, service.store.keys, cfg, hasher=cheap_hasher())
    with pytest.raises(ValueError, match="declared twice"):
        register(app, [ROUTES[0], ROUTES[0]], service, auth)
