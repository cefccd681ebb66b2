"""The web foundation: login and logout forms, who may open the wall, security headers.

The real app (API + pages) on a free loopback port with the real Redis; each client has its own
cookie jar, so a supervisor and an agent are two browsers.
"""

from __future__ import annotations

import re

import pytest
from aiohttp import test_utils

from router.web.pages import LOGIN_CSRF_COOKIE
from router.web.session import safe_next
from tests.api_helpers import PASSWORD, ApiHarness

WALL_DATA = ("/wall/stream", "/wall/data.json", "/wall/chart/volume.svg", "/wall/report.csv")


async def form_login(
    client: test_utils.TestClient, username: str, password: str = PASSWORD, next_: str = ""
) -> object:
    page = await client.get("/login" + (f"?next={next_}" if next_ else ""))
    assert page.status == 200
    html = await page.text()
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token, html
    return await client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token.group(1),
              "next": next_},
        allow_redirects=False,
    )  # fmt: skip


async def test_wall_redirects_to_login_then_back(h: ApiHarness) -> None:
    await h.user("maria", "supervisor")
    client = await h.client()
    resp = await client.get("/wall", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login?next=/wall"
    resp = await form_login(client, "maria", next_="/wall")
    assert resp.status == 303 and resp.headers["Location"] == "/wall"
    cookie = resp.cookies["cityline_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    wall = await client.get("/wall")
    assert wall.status == 200
    html = await wall.text()
    assert 'data-queue="voice"' in html and 'data-agent="a1"' in html
    # the page carries the session's CSRF token for the API calls of its script
    assert re.search(r'<meta name="csrf-token" content="[^"]+">', html)
    assert "script-src 'self'" in wall.headers["Content-Security-Policy"]
    assert wall.headers["Cache-Control"] == "no-store"
    assert wall.headers["X-Frame-Options"] == "DENY"


async def test_supervisor_lands_on_the_wall(h: ApiHarness) -> None:
    await h.user("maria", "supervisor")
    client = await h.client()
    resp = await form_login(client, "maria")
    assert resp.headers["Location"] == "/wall"
    home = await client.get("/", allow_redirects=False)
    assert home.status == 303 and home.headers["Location"] == "/wall"
    again = await client.get("/login", allow_redirects=False)  # already logged in
    assert again.status == 303 and again.headers["Location"] == "/wall"


async def test_wrong_password_and_missing_form_token(h: ApiHarness) -> None:
    await h.user("maria", "supervisor")
    client = await h.client()
    resp = await form_login(client, "maria", password="wrong password")
    assert resp.status == 401
    assert "Wrong user name or password." in await resp.text()
    assert "cityline_session" not in resp.cookies
    # a login posted from elsewhere has no form token cookie: refused before the password check
    other = await h.client()
    resp = await other.post(
        "/login", data={"username": "maria", "password": PASSWORD, "csrf": "guess"},
        allow_redirects=False,
    )  # fmt: skip
    assert resp.status == 400 and "cityline_session" not in resp.cookies
    assert LOGIN_CSRF_COOKIE in resp.cookies  # a fresh form to try again


async def test_lockout_shows_on_the_form(h: ApiHarness) -> None:
    await h.user("maria", "supervisor")
    client = await h.client()
    for _ in range(h.cfg.http.login_max_failures):
        assert (await form_login(client, "maria", password="nope nope")).status == 401
    resp = await form_login(client, "maria")
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert "Too many failed logins" in await resp.text()


async def test_agent_gets_403_on_the_wall_and_its_data(h: ApiHarness) -> None:
    await h.user("anna", "agent", agent="a1")
    client = await h.client()
    resp = await form_login(client, "anna")
    assert resp.status == 303 and resp.headers["Location"] == "/agent"  # the agent desktop
    wall = await client.get("/wall", allow_redirects=False)
    assert wall.status == 403 and "may not open /wall" in await wall.text()
    report = await client.get("/wall/report", allow_redirects=False)
    assert report.status == 403
    for path in WALL_DATA:
        resp = await client.get(path)
        assert resp.status == 403, path
        assert (await resp.json())["error"]["code"] == "forbidden"
    # an agent's API token is refused the same way
    bearer = await h.bearer("anna", "agent", agent="a1")
    resp = await bearer.client.get(
        "/wall/data.json", headers={"Authorization": f"Bearer {bearer.token}"}
    )
    assert resp.status == 403


async def test_data_endpoints_need_a_login(h: ApiHarness) -> None:
    client = await h.client()
    for path in WALL_DATA:
        resp = await client.get(path)
        assert resp.status == 401, path
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_logout_needs_the_session_token(h: ApiHarness) -> None:
    await h.user("maria", "supervisor")
    client = await h.client()
    await form_login(client, "maria")
    html = await (await client.get("/wall")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', html)
    assert token
    # a form on another site does not know the token: the session survives
    resp = await client.post("/logout", data={"csrf": "forged"}, allow_redirects=False)
    assert resp.status == 403
    assert (await client.get("/wall", allow_redirects=False)).status == 200
    resp = await client.post("/logout", data={"csrf": token.group(1)}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"
    assert (await client.get("/wall", allow_redirects=False)).status == 303
    assert await h.redis.keys(h.keys.session("*")) == []


async def test_static_files_are_served(h: ApiHarness) -> None:
    client = await h.client()
    resp = await client.get("/static/web/wall.js")
    assert resp.status == 200 and '"/wall/stream"' in await resp.text()
    resp = await client.get("/static/web/common.js")
    assert resp.status == 200 and "EventSource" in await resp.text()
    assert (await client.get("/static/web/app.css")).status == 200


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/wall", "/wall"),
        ("/wall/report?day=2026-01-01", "/wall/report?day=2026-01-01"),
        ("//evil.example/x", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),
        ("/wall\r\nSet-Cookie: x=1", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_next(target: str | None, expected: str | None) -> None:
    assert safe_next(target) == expected
