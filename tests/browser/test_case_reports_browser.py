"""The city's case pictures in a real browser against a real `cityline serve` (the packaged
city): a supervisor's /wall/cases (tables and the map of open cases), and what a resident sees
without logging in: /stats/cases in their language, and the look-up that leads from a number to
the case's public page. Screenshots cases-report.png, cases-public-stats.png and
case-public-page.png go to the artifacts directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import users as accounts
from router.auth import Role
from router.cases import Actor, CaseInput
from router.config import CitylineConfig, load_config
from router.main import Cityline
from tests.api_helpers import PASSWORD, cheap_hasher
from tests.browser.conftest import logged_in_page

pytestmark = pytest.mark.browser

LIVE_S = 10_000
VIEWPORT = {"width": 1300, "height": 1500}
BOSS = Actor("kierownik", Role.supervisor)
DESCRIPTION = "Jan Kowalski spod 12: głęboka dziura"
LAT, LON = 51.7592, 19.4560


@pytest.fixture
async def packaged_city(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Cityline, str]]:
    cfg: CitylineConfig = load_config(None, env={})
    cfg = cfg.model_copy(
        update={"http": cfg.http.model_copy(update={"port": 0}), "data_dir": tmp_path}
    )
    await accounts.add_user(redis, Keys(cfg.redis.prefix), "maria", "supervisor",
                            password=PASSWORD, hasher=cheap_hasher())
    async with Cityline(cfg, redis_url=redis_url, channels=False) as running:
        assert running.http_url
        yield running, running.http_url


async def _cases(running: Cityline) -> str:
    """Three cases: two open potholes with places, a street lamp completed. Returns the
    lamp's number."""
    assert running.service is not None
    cases = running.service.cases
    for i in range(2):
        await cases.create_standalone(CaseInput(
            category="road_damage", description=DESCRIPTION, address=f"ul. Lipowa {i + 1}",
            lat=LAT + i * 0.01, lon=LON + i * 0.01, contact="jan.kowalski@example.org"),
            language="pl", actor=BOSS)
    lamp = await cases.create_standalone(CaseInput(
        category="street_lighting", description=DESCRIPTION, address="ul. Ogrodowa 5",
        lat=LAT - 0.01, lon=LON), language="pl", actor=BOSS)
    await cases.set_status(lamp.number, "in_progress", BOSS)
    await cases.set_status(lamp.number, "completed", BOSS, public_note="Wymieniono żarnik.")
    return lamp.number


async def test_supervisor_report_and_the_residents_pages(
    packaged_city: tuple[Cityline, str], browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    running, base = packaged_city
    lamp = await _cases(running)

    page = await logged_in_page(browser, base, "maria", "/wall/cases", VIEWPORT)
    await page.wait_for_url(f"{base}/wall/cases")
    await expect(page.locator("h1")).to_have_text("Cases report", timeout=LIVE_S)
    await expect(page.locator("#case-map circle.case-point")).to_have_count(2)
    total = page.locator("#by-category tr.total td")
    await expect(total.nth(0)).to_have_text("3")  # opened
    await expect(total.nth(1)).to_have_text("1")  # completed
    await expect(total.nth(3)).to_have_text("2")  # open now
    box = await page.locator("#case-map svg").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 200  # drawn, visible
    await page.screenshot(path=str(artifacts / "cases-report.png"), full_page=True)

    # a resident: no login, the city's language first, then Ukrainian by its link
    context = await browser.new_context(viewport=VIEWPORT)
    anon = await context.new_page()
    await anon.goto(f"{base}/stats/cases")
    await expect(anon.locator("h1")).to_have_text("Statystyka zgłoszeń", timeout=LIVE_S)
    await expect(anon.locator("#case-map circle.case-point")).to_have_count(2)
    body = await anon.locator("body").inner_text()
    for secret in ("Kowalski", "example.org", "Lipowa", "dziura", lamp):
        assert secret not in body, secret
    await anon.screenshot(path=str(artifacts / "cases-public-stats.png"), full_page=True)
    await anon.locator('a[hreflang="uk"]').click()
    await expect(anon.locator("h1")).to_have_text("Статистика повідомлень", timeout=LIVE_S)

    # the look-up: the number typed loosely leads to the case's public page
    await anon.goto(f"{base}/stats/cases?lang=en")
    await anon.locator("#lookup-link").click()
    await anon.locator('input[name="number"]').fill(lamp.lower())
    await anon.locator("form button").click()
    await anon.wait_for_url(f"{base}/cases/{lamp}?lang=en")
    await expect(anon.locator("h1")).to_have_text(f"Report {lamp}", timeout=LIVE_S)
    text = await anon.locator("body").inner_text()
    assert "completed" in text and "Wymieniono żarnik." in text
    assert "Kowalski" not in text and "Ogrodowa 5" in text
    await anon.screenshot(path=str(artifacts / "case-public-page.png"), full_page=True)
    await context.close()
