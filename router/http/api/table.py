"""The shape of one API route and the wrapper that gives every handler the same checks.

A `Route` says everything about an endpoint once: method, path, handler, summary, request and
response models, the roles allowed. `router.http.api.routes.ROUTES` lists them all; the aiohttp
registration and the OpenAPI document are both generated from that list, so they cannot
disagree. The wrapper (`make_handler`) runs, in this order, before the handler sees a request:

1. authentication (token or session cookie) -> 401 `unauthorized`;
2. CSRF for cookie-authenticated unsafe methods -> 403 `csrf_failed`;
3. role, and for role agent the `{agent_id}` of the path must be its own -> 403 `forbidden`;
4. path parameters that cannot be ids -> 404; the body -> 415 / 400 / 422 (validation.py).

Nothing is read or changed before a check passes, so a refused request leaves no trace in Redis.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from router.auth import CSRF_HEADER, SESSION_COOKIE, Auth, LockedOut, Principal, Role
from router.errors import CitylineError, Forbidden, Unauthorized
from router.http.api.schemas import NoBody
from router.http.api.validation import ApiError, check_path_params, read_body
from router.http.app import json_error
from router.service import RoutingService

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)}")

# Answers carry interactions, residents' messages and CSRF tokens: no cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class Call:
    """What a handler gets: the request, who makes it, the validated body, collaborators."""

    request: web.Request
    principal: Principal | None
    body: Any
    service: RoutingService
    auth: Auth

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def user(self) -> Principal:
        """The caller of a protected route (the wrapper guarantees there is one)."""
        assert self.principal is not None
        return self.principal


# A handler returns a response model (sent with the route's status) or a ready response.
ApiHandler = Callable[[Call], Awaitable[BaseModel | web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below API_PREFIX, aiohttp syntax: /agents/{agent_id}
    handler: ApiHandler
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    # None: public (login, the OpenAPI document); otherwise the roles allowed
    roles: frozenset[Role] | None = None
    status: int = 200
    tag: str = ""
    description: str = ""
    errors: tuple[int, ...] = field(default=())
    # A file upload: the multipart/form-data field holding the file. The wrapper then leaves
    # the body to the handler (which reads and limits it itself) instead of reading JSON.
    upload: str = ""
    # Content types of an answer that is not JSON (an image): documented as binary.
    media: tuple[str, ...] = field(default=())

    @property
    def full_path(self) -> str:
        return API_PREFIX + self.path

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    @property
    def name(self) -> str:
        return self.handler.__name__


def json_reply(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status, headers=NO_STORE)


def _error_headers(exc: CitylineError) -> dict[str, str]:
    headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
    if exc.status == 401:
        # RFC 9110: a 401 names the scheme that would work.
        headers.setdefault("WWW-Authenticate", 'Bearer realm="cityline"')
    if isinstance(exc, LockedOut):
        headers.setdefault("Retry-After", str(exc.retry_after_s))
    return headers


async def _authorize(route: Route, request: web.Request, auth: Auth) -> Principal | None:
    if route.roles is None:
        return None
    principal = await auth.authenticate(
        request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE)
    )
    if request.method in UNSAFE_METHODS:
        auth.check_csrf(principal, request.headers.get(CSRF_HEADER))
    if principal.role not in route.roles:
        raise Forbidden(f"role {principal.role.value} may not {route.summary.lower()}")
    agent_id = request.match_info.get("agent_id")
    if agent_id is not None and principal.role == Role.agent and agent_id != principal.agent_id:
        raise Forbidden("an agent acts only as itself")
    return principal


def make_handler(route: Route, service: RoutingService, auth: Auth) -> Callable[..., Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            principal = await _authorize(route, request, auth)
            check_path_params(request)
            body = None
            if route.request is not None:
                body = await read_body(request, route.request)
            elif route.upload:
                pass  # multipart: the handler reads it (router.http.api.cases.add_case_photo)
            elif request.method in UNSAFE_METHODS:
                await read_body(request, NoBody)  # an action without parameters: {} at most
            result = await route.handler(Call(request, principal, body, service, auth))
        except CitylineError as exc:
            details = exc.details if isinstance(exc, ApiError) else None
            if exc.status in (401, 403) and not isinstance(exc, Unauthorized | ApiError):
                logger.info(
                    "%s %s refused: %s (%s)", request.method, request.path, exc.code, exc.message
                )
            return json_error(
                exc.status, exc.code, exc.message, headers=_error_headers(exc), details=details
            )
        if isinstance(result, web.StreamResponse):
            return result
        return json_reply(result, route.status)

    handle.__name__ = route.name
    handle.__doc__ = route.summary
    return handle


def register(
    app: web.Application, routes: list[Route], service: RoutingService, auth: Auth
) -> None:
    seen: set[tuple[str, str]] = set()
    for route in routes:
        ident = (route.method, route.full_path)
        if ident in seen:
            raise ValueError(f"route {route.method} {route.full_path} is declared twice")
        seen.add(ident)
        app.router.add_route(
            route.method,
            route.full_path,
            make_handler(route, service, auth),
            name=f"api.{route.name}",
        )
