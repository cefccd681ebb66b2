"""The admin page (/admin): who may open it, what it carries (the API does the rest)."""

from __future__ import annotations

import json
import re

from tests.api_helpers import ApiHarness
from tests.test_web_pages import form_login


def page_config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="admin-config">(.*?)</script>', html,
                      re.S)  # fmt: skip
    assert found, html
    return json.loads(found.group(1))


async def test_admin_sees_the_forms(h: ApiHarness) -> None:
    await h.user("root", "admin")
    client = await h.client()
    assert (await form_login(client, "root")).status == 303
    resp = await client.get("/admin")
    assert resp.status == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    html = await resp.text()
    config = page_config(html)
    assert config["can_edit"] is True and config["me"] == "root"
    assert {"general", "taxes", "roads", "lang_en"} == {s["name"] for s in config["skills"]}
    assert 'id="users-panel"' in html and 'id="agent-form"' in html
    assert re.search(r'<script src="/static/web/admin\.js\?v=[0-9a-f]+" defer>', html)
    assert "<script>" not in html  # no inline script: the CSP would refuse it
    static = await client.get("/static/web/admin.js")
    assert static.status == 200 and "textContent" in await static.text()


async def test_supervisor_reads_only(h: ApiHarness) -> None:
    await h.user("maria", "supervisor")
    client = await h.client()
    await form_login(client, "maria")
    resp = await client.get("/admin")
    assert resp.status == 200
    html = await resp.text()
    assert page_config(html)["can_edit"] is False
    assert 'id="users-panel"' not in html and "Read only" in html


async def test_agents_get_403_and_strangers_the_login(h: ApiHarness) -> None:
    await h.user("anna", "agent", "a1")
    stranger = await h.client()
    resp = await stranger.get("/admin", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/admin"
    client = await h.client()
    await form_login(client, "anna")
    resp = await client.get("/admin")
    assert resp.status == 403
