"""The versioned JSON API, /api/v1.

The composition root passes `lambda app: setup_api(app, service, auth)` to
`router.http.app.create_app(..., extra_setup=[...])`. Modules by concern: `auth_routes` (login,
logout, me), `intake` (contacts in, reading them), `agents` (the agent desktop),
`supervision` (agents, queues, live figures, moves), `openapi` (the document), `routes` (THE
table), `table` (route shape and the wrapper doing auth and validation), `validation` (bodies),
`schemas` (request and response models).
"""

from __future__ import annotations

from aiohttp import web

from router.auth import Auth
from router.http.api.openapi import OPENAPI_KEY, build_document
from router.http.api.routes import ROUTES
from router.http.api.supervision import STATS_KEY
from router.http.api.table import API_PREFIX, Route, register
from router.http.open311_routes import setup_open311
from router.http.public_case_stats import setup_public_case_stats
from router.http.public_cases import setup_public_cases
from router.service import RoutingService
from router.stats import StatsAggregator

SERVICE_KEY = web.AppKey("cityline_api_service", RoutingService)
AUTH_KEY = web.AppKey("cityline_api_auth", Auth)
ROUTES_KEY = web.AppKey("cityline_api_routes", list)

__all__ = [
    "API_PREFIX",
    "AUTH_KEY",
    "OPENAPI_KEY",
    "ROUTES",
    "ROUTES_KEY",
    "SERVICE_KEY",
    "Route",
    "setup_api",
]


def setup_api(app: web.Application, service: RoutingService, auth: Auth) -> None:
    """Register every /api/v1 route of `ROUTES` and the OpenAPI document built from them."""
    app[SERVICE_KEY] = service
    app[AUTH_KEY] = auth
    app[ROUTES_KEY] = list(ROUTES)
    store = service.store
    app[STATS_KEY] = StatsAggregator(store.redis, store.keys, service.cfg)
    app[OPENAPI_KEY] = build_document(ROUTES)
    register(app, ROUTES, service, auth)
    setup_public_cases(app, service)  # GET /cases/<number>: the public status page (HTML)
    setup_public_case_stats(app, service)  # /stats/cases + /stats/cases.json
    setup_open311(app, service, auth)  # /open311/v2: GeoReport v2 over cases
