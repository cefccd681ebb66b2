"""The web pages' front door: login and logout forms, the home redirect, and `setup_web`.

Login is the API's login (router/auth.py `Auth.login`: argon2, lockout, the same session
cookie) behind an HTML form. The form has its own CSRF defence because there is no session yet:
a random token in a short-lived SameSite=Strict cookie that the form must echo, so another
site cannot log a supervisor into an account of its choosing. Logout is a POST with the
session's CSRF token, so a link on another site cannot end a supervisor's session.

Where a user lands after logging in: `home_for` (supervisors and admins the wall; agents the
agent desktop once a module registers the route named "web.desktop").
"""

from __future__ import annotations

import hmac
import logging
import secrets

from aiohttp import web

from router.auth import SESSION_COOKIE, Auth, CsrfFailed, LockedOut, Principal, Role
from router.errors import Unauthorized
from router.http.api import AUTH_KEY, SERVICE_KEY
from router.web.render import render, setup_static
from router.web.session import STAFF, principal_of, safe_next

logger = logging.getLogger(__name__)

LOGIN_CSRF_COOKIE = "cityline_login_csrf"
LOGIN_CSRF_TTL_S = 3600
# user names and passwords longer than the API's limits are refused before any work
MAX_FIELD = 1024


def see_other(location: str) -> web.Response:
    """A 303 to `location` as a plain response (cookies can be set on it)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def home_for(app: web.Application, principal: Principal) -> str:
    if principal.role in STAFF:
        return "/wall"
    if principal.role == Role.agent and "web.desktop" in app.router.named_resources():
        return str(app.router["web.desktop"].url_for())
    return "/"


def _login_form(
    request: web.Request, *, status: int = 200, error: str = "", username: str = ""
) -> web.Response:
    token = secrets.token_urlsafe(24)
    response = render(
        "login.html",
        status=status,
        csrf=token,
        error=error,
        username=username,
        next=safe_next(request.query.get("next")) or "",
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=LOGIN_CSRF_TTL_S, path="/login", httponly=True,
        samesite="Strict", secure=request.app[AUTH_KEY].cookie_secure or None,
    )  # fmt: skip
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    principal = await principal_of(request)
    if principal is not None and principal.via == "session":
        return see_other(safe_next(request.query.get("next")) or home_for(request.app, principal))
    return _login_form(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    auth: Auth = request.app[AUTH_KEY]
    form = await request.post()
    username = str(form.get("username", ""))[:MAX_FIELD].strip()
    password = str(form.get("password", ""))[:MAX_FIELD]
    sent = str(form.get("csrf", ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _login_form(
            request, status=400, error="The form expired. Please log in again.", username=username
        )
    if not username or not password:
        return _login_form(request, status=400, error="Enter your user name and password.",
                           username=username)  # fmt: skip
    try:
        result = await auth.login(username, password, request.remote or "")
    except LockedOut as exc:
        response = _login_form(
            request, status=429, username=username,
            error=f"Too many failed logins. Try again in {exc.retry_after_s} s.",
        )  # fmt: skip
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except Unauthorized:
        return _login_form(
            request, status=401, error="Wrong user name or password.", username=username
        )
    target = safe_next(str(form.get("next", ""))) or home_for(request.app, result.principal)
    response = see_other(target)
    response.set_cookie(
        SESSION_COOKIE, result.session_id, max_age=result.ttl_s, path="/", httponly=True,
        samesite="Strict", secure=auth.cookie_secure or None,
    )  # fmt: skip
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


async def logout_submit(request: web.Request) -> web.StreamResponse:
    auth: Auth = request.app[AUTH_KEY]
    principal = await principal_of(request)
    if principal is not None and principal.via == "session":
        form = await request.post()
        try:
            auth.check_csrf(principal, str(form.get("csrf", "")))
        except CsrfFailed:
            return render("forbidden.html", status=403, user=principal, what="logout")
        await auth.logout(principal)
    response = see_other("/login")
    response.del_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="Strict",
        secure=auth.cookie_secure or None,
    )  # fmt: skip
    return response


async def home(request: web.Request) -> web.StreamResponse:
    principal = await principal_of(request)
    if principal is None:
        return see_other("/login")
    target = home_for(request.app, principal)
    if target != "/":
        return see_other(target)
    return render("home.html", user=principal)


def setup_web(app: web.Application) -> None:
    """Register the pages. They sit on the API's auth and service, so they are registered only
    when the API is (router/http/app.py calls this after the API's setup)."""
    if AUTH_KEY not in app or SERVICE_KEY not in app:
        return
    from router.web import admin, cases_report, desktop, wall

    setup_static(app)
    app.router.add_get("/", home, name="web.home")
    app.router.add_get("/login", login_page, name="web.login")
    app.router.add_post("/login", login_submit, name="web.login_submit")
    app.router.add_post("/logout", logout_submit, name="web.logout")
    wall.setup(app)
    desktop.setup(app)
    admin.setup(app)
    cases_report.setup(app)  # /wall/cases, /wall/cases.csv: the city's case report
