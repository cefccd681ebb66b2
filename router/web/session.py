"""Who is looking at a page: the session cookie of the API's login, checked at every request.

Pages use the same sessions as the JSON API (router/auth.py): one login serves the page and the
API calls its script makes. An API token (Authorization: Bearer) works on the data endpoints
(the stream, the report CSV) too, for scripts; a page is for people and wants the cookie.

`guard` answers for a handler that is refused: a page redirects to /login (not logged in) or
shows an HTML 403; a data endpoint answers the API's JSON error (401 / 403).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Literal
from urllib.parse import quote

from aiohttp import web

from router.auth import SESSION_COOKIE, Auth, Principal, Role
from router.errors import Unauthorized
from router.http.api import AUTH_KEY
from router.http.app import json_error
from router.web.render import render

logger = logging.getLogger(__name__)

STAFF = frozenset({Role.supervisor, Role.admin})

PageHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


async def principal_of(request: web.Request) -> Principal | None:
    """The caller, or None when there is no valid session (or token)."""
    auth: Auth = request.app[AUTH_KEY]
    try:
        return await auth.authenticate(
            request.headers.get("Authorization"), request.cookies.get(SESSION_COOKIE)
        )
    except Unauthorized:
        return None


def safe_next(target: str | None) -> str | None:
    """A local path to return to after the login, never another site (open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 0x20 for c in target):
        return None
    return target


def forbidden_page(principal: Principal, what: str) -> web.Response:
    logger.info("page refused: user=%s role=%s page=%s", principal.username, principal.role, what)
    return render("forbidden.html", status=403, user=principal, what=what)


def guard(
    roles: Collection[Role], kind: Literal["page", "data"]
) -> Callable[[PageHandler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Let a handler run only for a logged-in user with one of `roles`."""

    def wrap(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await principal_of(request)
            if principal is None:
                if kind == "page":
                    location = f"/login?next={quote(request.path_qs, safe='/')}"
                    return web.Response(status=303, headers={"Location": location})
                return json_error(401, "unauthorized", "log in first")
            if principal.role not in roles:
                if kind == "page":
                    return forbidden_page(principal, request.path)
                return json_error(
                    403, "forbidden", f"role {principal.role.value} may not see {request.path}"
                )
            return await handler(request, principal)

        return guarded

    return wrap
