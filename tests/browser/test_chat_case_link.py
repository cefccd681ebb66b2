"""The chat link in a real browser: a resident chats on /chat, the agent makes a case of it,
and the page shows the city's message with the case number and a clickable status link (an
<a> element built from text nodes, never markup), apart from the agent's words. The packaged
city; the chat adapter of tests/channels/test_chat.py. Screenshot chat-case-link.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from router.auth import Role
from router.cases import Actor, CaseInput
from router.config import CitylineConfig, load_config
from router.dispatcher import Dispatcher
from router.service import RoutingService
from tests.channels.test_chat import Chat, chat_process
from tests.routing_fixtures import eventually

pytestmark = pytest.mark.browser

LIVE_S = 10_000
AGENT = "tomasz.wojcik"  # the packaged city: takes chats and road damage


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


@pytest.fixture
async def chat(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
               dispatcher: Dispatcher) -> AsyncIterator[Chat]:
    async with chat_process(redis, cfg, service, dispatcher) as c:
        yield c


async def test_the_resident_sees_the_case_number_and_a_link(
    chat: Chat, service: RoutingService, browser: Any, artifacts: Path
) -> None:
    from playwright.async_api import expect

    page = await (await browser.new_context()).new_page()
    await page.goto(str(chat.client.make_url("/chat?lang=en")))
    await page.fill("#name", "Ola")
    await page.click("#start")
    await eventually(lambda: list(chat.adapter.sessions.values()))
    [ix_id] = [s.ix_id for s in chat.adapter.sessions.values()]
    assert await chat.agent_takes(AGENT) == ix_id
    await page.fill("#text", "A pothole <b>here</b>")
    await page.click("#send")

    ix = await service.interaction(ix_id)
    made = await service.cases.create_from_interaction(
        ix, CaseInput(category="road_damage", address="ul. Długa 5"),
        Actor(AGENT, Role.agent, AGENT))
    link = page.locator("#log a", has_text=f"/cases/{made.number}?lang=en")
    await expect(link).to_be_visible(timeout=LIVE_S)
    href = await link.get_attribute("href") or ""
    assert href.startswith("http://127.0.0.1:") and href.endswith(f"/cases/{made.number}?lang=en")
    message = link.locator("xpath=..")  # the city's message the link sits in
    await expect(message).to_contain_text(made.number)
    # the resident's own words stayed text
    assert await page.locator("#log b").count() == 0
    await page.screenshot(path=str(artifacts / "chat-case-link.png"), full_page=True)
    await page.context.close()
