"""Cases on the agent desktop, in a real browser against a real `cityline serve`.

A first-line agent working a chat makes a case of it from the panel's "Case" form (the number
shows on the panel); a second-line agent who is a member of the case's unit sees it under
"My unit's cases", opens its history, moves it to in_progress and then to completed with a
note for the resident. The case is completed in Redis. The screenshot cases-desktop.png goes
to the artifacts directory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from queues.keys import Keys
from router import users as accounts
from router.config import CitylineConfig, load_config
from router.main import Cityline
from router.models import IntakeRequest
from tests.api_helpers import PASSWORD, cheap_hasher
from tests.browser.conftest import accepted, logged_in_page
from tests.routing_fixtures import CONFIG, eventually, offered_to
from tests.test_case_photos import png

pytestmark = pytest.mark.browser

LIVE_S = 10_000  # ms: how long a live change may take to show
VIEWPORT = {"width": 1400, "height": 1100}
CASES = {
    "units": {
        "roads": {"labels": {"pl": "Zarząd Dróg", "en": "Roads Authority"}, "members": ["x1"]},
        "lights": {"labels": {"pl": "Oświetlenie", "en": "Street lighting"}, "members": []},
    },
    "categories": {"roads": {"unit": "roads", "resolution_target_hours": 72}},
}


@pytest.fixture
async def cases_city(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Cityline, str]]:
    """The test city with cases on: the roads unit, whose member is the expert x1."""
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    raw["cases"] = CASES
    path = tmp_path / "cityline.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    cfg: CitylineConfig = load_config(path, env={})
    cfg = cfg.model_copy(
        update={"http": cfg.http.model_copy(update={"port": 0}), "data_dir": tmp_path}
    )
    for name, agent in (("anna", "a1"), ("xavier", "x1")):
        await accounts.add_user(redis, Keys(), name, "agent", agent_id=agent, password=PASSWORD,
                                hasher=cheap_hasher())  # fmt: skip
    async with Cityline(cfg, redis_url=redis_url, channels=False) as running:
        assert running.http_url
        yield running, running.http_url


async def test_a_case_from_the_first_line_to_completed_by_the_unit(
    cases_city: tuple[Cityline, str], browser: Any, redis: aioredis.Redis, artifacts: Path
) -> None:
    from playwright.async_api import expect

    running, base = cases_city
    assert running.service is not None
    page = await logged_in_page(browser, base, "anna", "/agent", VIEWPORT)
    await page.wait_for_url(f"{base}/agent")
    await expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_S)
    assert await page.locator("#unit-cases").count() == 0  # not a member of any unit
    ix = await accepted(running.service, "a1", "chat", "chat")
    panel = page.locator(f'.work[data-ix="{ix}"]')
    await expect(panel).to_be_visible(timeout=LIVE_S)

    # the first line: the case form on the panel
    form = panel.locator(".case-form")
    await expect(form).to_be_visible(timeout=LIVE_S)
    await expect(form.locator(".case-category option")).to_have_text(["Drogi"])
    await form.locator(".case-description").fill("Dziura w jezdni <b>głęboka</b>")
    await form.locator(".case-address").fill("ul. Lipowa 3")
    await form.locator(".case-lat").fill("51.7592")
    await form.locator(".case-lon").fill("19.4560")
    await form.locator(".case-check").click()
    await expect(page.locator("#notice")).to_have_text("No likely duplicate nearby.",
                                                       timeout=LIVE_S)  # fmt: skip
    await form.locator(".case-create").click()
    number_el = panel.locator('[data-f="case"]')
    await expect(number_el).to_have_text(re.compile(r"^Z-\d{4}-\d+$"), timeout=LIVE_S)
    number = await number_el.text_content()
    assert number
    await expect(form).to_be_hidden()
    assert (await redis.hgetall(Keys().ix(ix))).get("case") == number

    # a second report of the same place: the form finds the open case and links to it
    service = running.service
    second = (await service.create_interaction(IntakeRequest(channel="chat", queue="chat"))).id
    await eventually(lambda: offered_to(service, "a1"))
    await service.accept("a1", second)
    other = page.locator(f'.work[data-ix="{second}"]')
    await page.locator(f'#work-list li[data-ix="{second}"] .tab').click()
    await expect(other).to_be_visible(timeout=LIVE_S)
    await other.locator(".case-lat").fill("51.75925")
    await other.locator(".case-lon").fill("19.45605")
    await other.locator(".case-check").click()
    dup = other.locator(".case-dups li")
    await expect(dup).to_contain_text(number, timeout=LIVE_S)
    await expect(dup).to_contain_text("open · ul. Lipowa 3")
    await dup.locator(".case-link").click()
    await expect(other.locator('[data-f="case"]')).to_have_text(number, timeout=LIVE_S)
    await expect(other.locator(".case-form")).to_be_hidden()
    assert (await redis.hgetall(Keys().ix(second))).get("case") == number

    # the second line: the unit's member sees it, works it and completes it
    expert = await logged_in_page(browser, base, "xavier", "/agent", VIEWPORT)
    await expert.wait_for_url(f"{base}/agent")
    section = expert.locator("#unit-cases")
    await expect(section).to_be_visible(timeout=LIVE_S)
    row = section.locator(f'tr[data-number="{number}"]')
    await expect(row).to_contain_text("Drogi", timeout=LIVE_S)
    await expect(row).to_contain_text("open")
    await expect(row).to_contain_text("ul. Lipowa 3")
    await row.locator(".uc-open").click()
    detail = expert.locator("#uc-case")
    await expect(detail).to_be_visible(timeout=LIVE_S)
    await expect(expert.locator("#uc-desc")).to_have_text("Dziura w jezdni <b>głęboka</b>")
    await expect(expert.locator("#uc-next option")).to_have_text(
        ["assigned", "in_progress", "rejected", "duplicate"]
    )
    await expect(expert.locator("#uc-unit option")).to_have_text(["Zarząd Dróg", "Oświetlenie"])
    # both chat residents hear of the outcome in their chat (while it lasts), no address shown
    await expect(expert.locator("#uc-residents")).to_have_text(
        "Residents told of the outcome: chat; chat")

    # the crew adds a photo: its thumbnail loads from the API with the session (CSP img-src)
    await expect(expert.locator("#uc-media img")).to_have_count(0)
    await expert.set_input_files("#uc-photo", files=[
        {"name": "po.png", "mimeType": "image/png", "buffer": png(16, 12)}])
    await expert.click("#uc-photo-go")
    thumb = expert.locator("#uc-media img.uc-thumb")
    await expect(thumb).to_have_count(1, timeout=LIVE_S)
    await expect(thumb).to_be_visible()
    await expect(expert.locator("#uc-history")).to_contain_text("photo added")
    assert await eventually(lambda: thumb.evaluate("img => img.complete && img.naturalWidth"))
    assert await thumb.evaluate("img => img.naturalWidth") == 16

    await expert.select_option("#uc-next", "in_progress")
    await expert.fill("#uc-note", "ekipa wysłana")
    await expert.click("#uc-status-go")
    await expect(expert.locator("#uc-status")).to_have_text("in_progress", timeout=LIVE_S)
    await expect(expert.locator("#uc-next option")).to_have_text(["completed", "rejected"])
    await expect(row).to_contain_text("in_progress", timeout=LIVE_S)

    await expert.select_option("#uc-next", "completed")
    await expert.fill("#uc-public-note", "Naprawione, dziękujemy za zgłoszenie.")
    await expert.click("#uc-status-go")
    await expect(expert.locator("#uc-status")).to_have_text("completed", timeout=LIVE_S)
    await expect(expert.locator("#uc-history")).to_contain_text(
        "For the resident: Naprawione, dziękujemy za zgłoszenie."
    )
    await expect(expert.locator("#uc-history")).to_contain_text("Note: ekipa wysłana")
    await expect(expert.locator("#uc-status-form")).to_be_hidden()
    await expect(row).to_have_count(0, timeout=LIVE_S)  # no longer open
    await expert.screenshot(path=str(artifacts / "cases-desktop.png"), full_page=True)

    case = await running.service.cases.get(number)
    assert case["status"] == "completed"
    assert await page.evaluate("window.__xss") is None
    await expert.context.close()
    await page.context.close()
