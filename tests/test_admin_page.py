"""The admin page (/admin): who may open it, what it carries (the API does the rest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import redis.asyncio as aioredis

from router.config import CitylineConfig
from tests.api_helpers import API, ApiHarness, error_of
from tests.test_directory import VIP_STEP, unchanged, with_flows
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


async def test_the_page_resets_and_shows_refusals(
    h: ApiHarness, cfg: CitylineConfig, redis: aioredis.Redis, tmp_path: Path
) -> None:
    """What the page's buttons send (admin.js: the session cookie and the page's CSRF token):
    a reset applies, a removal an IVR flow still needs is refused with its details, and the
    refusal changes nothing."""
    with_flows(cfg, tmp_path / "flows")
    await h.user("root", "admin")
    client = await h.client()
    await form_login(client, "root")
    html = await (await client.get("/admin")).text()
    assert html.count('class="reset"') == 2  # the agent's and the queue's form
    assert 'id="agents-removed"' in html and 'id="queues-removed"' in html
    script = await (await client.get("/static/web/admin.js")).text()
    assert '"/reset"' in script and "removed ||" in script
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found
    headers = {"X-CSRF-Token": found.group(1)}

    before = await unchanged(redis)
    resp = await client.delete(f"{API}/admin/queues/voice-vip", headers=headers)
    assert resp.status == 409
    err = await error_of(resp)
    assert err["code"] == "in_use" and err["details"][0]["loc"] == list(VIP_STEP)
    assert await unchanged(redis) == before

    resp = await client.put(f"{API}/admin/agents/a2", headers=headers,
                            json={"name": "Bartek", "skills": {"general": 1}})  # fmt: skip
    assert resp.status == 200
    resp = await client.post(f"{API}/admin/agents/a2/reset", headers=headers)
    assert resp.status == 200 and (await resp.json())["result"] == "restored"
    assert cfg.agents["a2"].skills == {"general": 5, "lang_en": 5}
    resp = await client.post(f"{API}/admin/agents/a2/reset")  # no CSRF token: refused
    assert resp.status == 403
