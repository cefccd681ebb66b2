"""The knowledge base on the agent desktop, in a real browser against a real `cityline serve`.

An agent working a chat searches "prawo jazdy", opens the driving-licence card, and uses its
answer: the answer text goes into the reply box, the interaction is recorded as answered from
the card (KBANSWER), and the reply reaches the conversation. Card text is shown as text only.
The screenshot knowledge.png goes to the artifacts directory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import users as accounts
from router.config import CitylineConfig, load_config
from router.main import Cityline
from tests.api_helpers import PASSWORD, cheap_hasher
from tests.browser.conftest import accepted, logged_in_page
from tests.routing_fixtures import CONFIG

pytestmark = pytest.mark.browser

LIVE_S = 10_000  # ms: how long a live change may take to show


@pytest.fixture
async def kb_city(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Cityline, str]]:
    """The test city with the driving-licence topic, so the packaged driving-licence cards
    (in its languages, Polish and English) are in its knowledge base."""
    cfg: CitylineConfig = load_config(CONFIG, env={})
    skills = dict(cfg.skills)
    skills["driving_licences"] = skills["taxes"].model_copy(
        update={"labels": {"pl": "Prawa jazdy", "en": "Driving licences"}}
    )
    cfg = cfg.model_copy(update={
        "skills": skills, "http": cfg.http.model_copy(update={"port": 0}), "data_dir": tmp_path,
    })  # fmt: skip
    await accounts.add_user(redis, Keys(), "anna", "agent", agent_id="a1", password=PASSWORD,
                            hasher=cheap_hasher())  # fmt: skip
    async with Cityline(cfg, redis_url=redis_url, channels=False) as running:
        assert running.http_url
        yield running, running.http_url


async def test_agent_answers_a_chat_from_a_knowledge_card(
    kb_city: tuple[Cityline, str], browser: Any, redis: aioredis.Redis, artifacts: Path
) -> None:
    from playwright.async_api import expect

    running, base = kb_city
    assert running.service is not None
    page = await logged_in_page(browser, base, "anna", "/agent", {"width": 1400, "height": 1000})
    await page.wait_for_url(f"{base}/agent")
    await expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_S)
    ix = await accepted(running.service, "a1", "chat", "chat")
    panel = page.locator(f'.work[data-ix="{ix}"]')
    await expect(panel).to_be_visible(timeout=LIVE_S)

    # search: Polish words without their accents still find the card, best first
    await page.fill("#kb-q", "prawo jazdy")
    await page.click("#kb-search")
    hits = page.locator("#kb-results .kb-hit")
    await expect(hits.first).to_contain_text("Jak uzyskać pierwsze prawo jazdy?", timeout=LIVE_S)
    await expect(page.locator("#kb-results")).to_contain_text("Wymiana prawa jazdy")
    await expect(hits.first.locator(".kb-topic")).to_have_text("Prawa jazdy")

    # open the card: the whole answer and its links, as text
    await hits.first.click()
    card = page.locator("#kb-card")
    await expect(card).to_be_visible(timeout=LIVE_S)
    await expect(card.locator("#kb-card-title")).to_have_text("Jak uzyskać pierwsze prawo jazdy?")
    await expect(card.locator("#kb-card-answer")).to_contain_text("Profilu Kandydata na Kierowcę")
    link = card.locator("#kb-card-links a").first
    await expect(link).to_have_attribute("href", "https://info-car.pl/")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")

    # use it: the answer goes into the reply box and the answer is recorded as from the card
    await card.locator("#kb-use").click()
    reply = panel.locator(".reply textarea")
    await expect(reply).to_have_value(
        re.compile(r"^Przed kursem należy uzyskać w Wydziale Komunikacji"),
        timeout=LIVE_S,
    )
    await expect(page.locator("#notice")).to_contain_text("driving-licence-first",
                                                         timeout=LIVE_S)  # fmt: skip
    ix_hash = await redis.hgetall(Keys().ix(ix))
    assert ix_hash.get("kb_card") == "driving-licence-first"
    marks = [f for _, f in await redis.xrange(Keys().events) if f.get("ev") == "KBANSWER"]
    assert [(m["ix"], m["card"], m["during"]) for m in marks] == [
        (ix, "driving-licence-first", "connected")]
    await page.screenshot(path=str(artifacts / "knowledge.png"), full_page=True)

    await panel.locator(".send").click()
    mine = panel.locator(".msg-agent .msg-text")
    await expect(mine).to_contain_text("Profilu Kandydata na Kierowcę", timeout=LIVE_S)
    await expect(reply).to_have_value("")
    await page.context.close()
