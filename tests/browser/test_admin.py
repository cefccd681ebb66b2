"""The admin page in a real browser against a real `cityline serve` (in-process).

An admin logs in, edits an agent's skill level and chat capacity in the page, sees a refused
change explained next to its field, and the saved change is what the API (and routing) use at
once. An agent gets 403 on /admin. Screenshots go to the artifacts directory.
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
from tests.browser.conftest import logged_in_page

pytestmark = pytest.mark.browser

LIVE_S = 10_000
USERS = (("root", "admin", None), ("anna", "agent", "a1"))


@pytest.fixture
def city_users() -> tuple[tuple[str, str, str | None], ...]:
    return USERS


async def login(browser: Any, base: str, username: str) -> Any:
    return await logged_in_page(browser, base, username, "/admin", {"width": 1500, "height": 1100})


async def test_admin_edits_an_agent(
    city: tuple[Cityline, str], browser: Any, redis: aioredis.Redis, artifacts: Path
) -> None:
    from playwright.async_api import expect

    running, base = city
    page = await login(browser, base, "root")
    await page.wait_for_url(f"{base}/admin")
    row = page.locator('#agents-table tr[data-id="a1"]')
    await expect(row.locator("td.skills")).to_have_text("general 5, taxes 3", timeout=LIVE_S)
    await expect(page.locator('#users-table tr[data-username="anna"]')).to_be_visible()
    await row.locator("button.edit").click()
    form = page.locator("#agent-form")
    await expect(form).to_be_visible()
    await expect(form.locator('input[name="id"]')).to_have_value("a1")

    # a refused change: the error sits next to the skills
    general = form.locator('.skill-row[data-skill="general"] .skill-level')
    await general.fill("12")
    await form.locator("button.save").click()
    await expect(form.locator('.field-error[data-for="skills"]')).to_contain_text(
        "general", timeout=LIVE_S
    )
    await expect(page.locator("#notice")).to_contain_text("not saved")
    await page.screenshot(path=str(artifacts / "admin-refused.png"), full_page=True)

    # the real change: level 7 and two chats at once
    await general.fill("7")
    await form.locator('input[name="cap-chat"]').fill("2")
    await form.locator("button.save").click()
    await expect(page.locator("#notice")).to_contain_text("Agent a1 saved", timeout=LIVE_S)
    await expect(form).to_be_hidden()
    await expect(row.locator("td.skills")).to_have_text("general 7, taxes 3")
    await expect(row.locator("td.origin")).to_have_text("changed")
    await page.screenshot(path=str(artifacts / "admin.png"), full_page=True)

    # the API (and the routing service behind it) has it now
    token = (await accounts.create_token(redis, Keys(), "root", label="browser test")).token
    async with aiohttp.ClientSession(base) as http:
        resp = await http.get("/api/v1/admin/agents/a1",
                              headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert resp.status == 200
        a1 = await resp.json()
    assert a1["config"]["skills"] == {"general": 7, "taxes": 3}
    assert a1["config"]["capacity"]["chat"] == 2
    assert running.config.agents["a1"].skills["general"] == 7
    stored = await redis.hgetall("cl:agent:a1")
    assert stored["cap:chat"] == "2"


async def test_an_agent_gets_403(city: tuple[Cityline, str], browser: Any,
                                 artifacts: Path) -> None:  # fmt: skip
    _, base = city
    page = await login(browser, base, "anna")
    await page.wait_for_url(re.compile(r"/(agent|admin)"))
    response = await page.goto(f"{base}/admin")
    assert response is not None and response.status == 403
    await page.screenshot(path=str(artifacts / "admin-agent-403.png"))


async def test_admin_resets_to_the_file_and_sees_a_refused_removal(
    city: tuple[Cityline, str], browser: Any, redis: aioredis.Redis, artifacts: Path
) -> None:
    from playwright.async_api import expect

    running, base = city
    page = await login(browser, base, "root")
    await page.wait_for_url(f"{base}/admin")
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before a reset or removal

    # a queue the web chat hands its chats to: the removal is refused, nothing changes
    queue_row = page.locator('#queues-table tr[data-name="chat"]')
    await queue_row.locator("button.edit").click()
    queue_form = page.locator("#queue-form")
    await expect(queue_form.locator("button.reset")).to_be_hidden()  # as the file has it
    await queue_form.locator("button.remove").click()
    await expect(queue_form.locator('.form-error[data-for=""]')).to_contain_text(
        "channels.chat.queue: the chat channel hands its contacts to queue 'chat'", timeout=LIVE_S
    )
    await expect(page.locator("#notice")).to_contain_text("not removed")
    assert "chat" in running.config.queues and not await redis.exists("cl:dir:version")
    await queue_form.locator("button.cancel").click()

    # change an agent, then reset it to the file's definition
    row = page.locator('#agents-table tr[data-id="a1"]')
    await row.locator("button.edit").click()
    form = page.locator("#agent-form")
    await form.locator('.skill-row[data-skill="general"] .skill-level').fill("2")
    await form.locator("button.save").click()
    await expect(row.locator("td.origin")).to_have_text("changed", timeout=LIVE_S)
    await row.locator("button.edit").click()
    await expect(form.locator("button.reset")).to_be_visible()
    await form.locator("button.reset").click()
    await expect(page.locator("#notice")).to_contain_text(
        "Agent a1 reset to the configuration file's definition", timeout=LIVE_S
    )
    await expect(row.locator("td.origin")).to_have_text("file")
    await expect(row.locator("td.skills")).to_have_text("general 5, taxes 3")
    assert running.config.agents["a1"].skills == {"general": 5, "taxes": 3}

    # a file's queue removed is listed under the table, with a button that brings it back
    await page.locator('#queues-table tr[data-name="voice-esc"] button.edit').click()
    await queue_form.locator("button.remove").click()
    removed = page.locator('#queues-removed .removed-entry[data-name="voice-esc"]')
    await expect(removed).to_be_visible(timeout=LIVE_S)
    assert "voice-esc" not in running.config.queues
    await page.screenshot(path=str(artifacts / "admin-reset.png"), full_page=True)
    await removed.locator("button.restore").click()
    await expect(page.locator("#notice")).to_contain_text("Queue voice-esc reset", timeout=LIVE_S)
    await expect(page.locator('#queues-table tr[data-name="voice-esc"] td.origin')).to_have_text(
        "file"
    )
    await expect(page.locator("#queues-removed")).to_be_hidden()
    assert "voice-esc" in running.config.queues
