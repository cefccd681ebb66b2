"""The supervisor wall in a real browser against a real `cityline serve` (in-process).

A supervisor logs in through the page and sees the tiles and the agent grid; a contact arrives
through the intake API and an agent signs in ready through the API: the tiles and the grid
change without a reload. The supervisor pauses an agent from the wall. An agent's browser gets
403 on the wall. Screenshots of the wall are saved as test artifacts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import users as accounts
from router.main import Cityline
from router.models import IntakeRequest
from tests.api_helpers import PASSWORD
from tests.browser.conftest import accepted, log_in, logged_in_page

pytestmark = pytest.mark.browser

LIVE_S = 10_000  # ms: how long a live change may take to show (the wall pushes every second)
USERS = (("maria", "supervisor", None), ("anna", "agent", "a1"), ("portal", "intake", None))
WALL_VIEW = {"width": 1400, "height": 1100}


@pytest.fixture
def city_users() -> tuple[tuple[str, str, str | None], ...]:
    return USERS


async def test_supervisor_sees_the_wall_change_live(
    city: tuple[Cityline, str], browser: Any, redis: aioredis.Redis, artifacts: Path
) -> None:
    from playwright.async_api import expect

    _, base = city
    page = await logged_in_page(browser, base, "maria", "/wall", WALL_VIEW)
    await page.wait_for_url(f"{base}/wall")
    voice = page.locator('.tile[data-queue="voice"]')
    await expect(voice.locator('[data-f="waiting"]')).to_have_text("0")
    await expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_S)
    anna = page.locator('#agents tr[data-agent="a1"]')
    await expect(anna.locator('[data-f="state"]')).to_have_text("offline")
    await page.evaluate("window.__notReloaded = true")

    token = (await accounts.create_token(redis, Keys(), "portal", label="browser test")).token
    # unsafe=True: aiohttp keeps no cookies for an IP address (127.0.0.1) otherwise
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        # a resident calls: the contact comes in through the intake API
        resp = await http.post(
            "/api/v1/interactions",
            json={"channel": "voice", "queue": "voice", "resident": "+48600100200",
                  "subject": "Street lamp <b>broken</b>"},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert resp.status == 201, await resp.text()
        await expect(voice.locator('[data-f="waiting"]')).to_have_text("1", timeout=LIVE_S)
        row = page.locator("#waiting tbody tr")
        await expect(row).to_have_count(1, timeout=LIVE_S)
        # the subject is shown as text, never as markup
        await expect(row.locator('[data-f="subject"]')).to_have_text("Street lamp <b>broken</b>")
        await page.screenshot(path=str(artifacts / "wall-waiting.png"), full_page=True)
        # the supervisor raises its priority from the wall: recorded as a PRIORITY event
        ix_id = (await resp.json())["id"]
        await row.locator(".priority-raise").click()
        await expect(row.locator('[data-f="priority"]')).to_have_text("5", timeout=LIVE_S)
        raised = [f for _, f in await redis.xrange("cl:events") if f.get("ev") == "PRIORITY"]
        assert [(f["ix"], f["priority"], f["by"]) for f in raised] == [(ix_id, "5", "maria")]

        # the agent signs in ready through the API: the dispatcher offers the call at once
        resp = await http.post(
            "/api/v1/auth/login", json={"username": "anna", "password": PASSWORD}
        )
        assert resp.status == 200, await resp.text()
        csrf = (await resp.json())["csrf_token"]
        resp = await http.post(
            "/api/v1/agents/a1/login", json={"ready": True}, headers={"X-CSRF-Token": csrf}
        )
        assert resp.status == 200, await resp.text()
    await expect(anna.locator('[data-f="state"]')).to_have_text(
        re.compile("^(ready|busy)$"), timeout=LIVE_S
    )
    await expect(voice.locator('[data-f="waiting"]')).to_have_text("0", timeout=LIVE_S)
    await expect(page.locator("#waiting tbody tr")).to_have_count(0, timeout=LIVE_S)
    assert await page.evaluate("window.__notReloaded") is True, "the page was reloaded"

    # a supervisor action from the wall: sign Bartek in, not ready (break)
    bartek = page.locator('#agents tr[data-agent="a2"]')
    await bartek.locator(".agent-target").select_option("not_ready:break")
    await bartek.locator(".agent-apply").click()
    await expect(bartek.locator('[data-f="state"]')).to_have_text("paused", timeout=LIVE_S)
    await expect(bartek.locator('[data-f="reason"]')).to_have_text("Przerwa", timeout=LIVE_S)
    stream = await redis.xrange(Keys().events)
    assert any(f.get("ev") == "ADDMEMBER" and f.get("agent") == "a2" for _, f in stream)

    await page.screenshot(path=str(artifacts / "wall.png"), full_page=True)
    await page.context.close()


async def test_agent_cannot_open_the_wall(
    city: tuple[Cityline, str], browser: Any, artifacts: Path
) -> None:
    _, base = city
    context = await browser.new_context()
    page = await context.new_page()
    await log_in(page, base, "anna", "/login")
    await page.wait_for_url(f"{base}/agent")  # agents land on their desktop
    response = await page.goto(f"{base}/wall")
    assert response is not None and response.status == 403
    assert "may not open /wall" in (await page.text_content("#forbidden") or "")
    response = await page.goto(f"{base}/wall/data.json")
    assert response is not None and response.status == 403
    await page.screenshot(path=str(artifacts / "wall-agent-403.png"))
    await context.close()


async def test_report_page_in_the_browser(
    city: tuple[Cityline, str], browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    running, base = city
    # some traffic for the charts: one call answered and completed, one abandoned
    service = running.service
    assert service is not None
    answered = await accepted(service, "a1", "voice", "voice")
    await service.complete("a1", answered)
    left = (await service.create_interaction(IntakeRequest(channel="voice", queue="voice"))).id
    await service.resident_left(left)

    page = await logged_in_page(browser, base, "maria", "/wall", WALL_VIEW)
    await page.wait_for_url(f"{base}/wall")
    await page.click("#report-link")
    await page.wait_for_url(re.compile(r"/wall/report"))
    # the statistics worker folds the events within a moment: reload until the report has them
    total = page.locator("#totals tbody tr", has_text=re.compile(r"^all"))
    for _ in range(50):
        if (await total.locator("td").nth(1).text_content()) == "2":
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(total.locator("td").nth(1)).to_have_text("2")  # offered
    assert await page.locator("figure svg rect.bar").count() > 0
    assert await page.locator("figure svg").count() == 3
    await page.select_option("#scope", "queue:voice")
    await page.click("form.toolbar button[type=submit]")
    await page.wait_for_url(re.compile(r"scope=queue%3Avoice"))
    async with page.expect_download() as download_info:
        await page.click("#csv-link")
    download = await download_info.value
    path = artifacts / "report.csv"
    await download.save_as(str(path))
    assert path.read_text().startswith("interval_start,kind,name,")
    await page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    await page.context.close()
