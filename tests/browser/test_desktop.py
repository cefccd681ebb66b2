"""The agent desktop in a real browser against a real `cityline serve` (in-process).

An agent logs in through the page, goes ready, and a chat created through the intake API pops
up as an offer with its countdown and the resident's earlier contact; the agent accepts, the
resident's message carrying a script is shown as text and never runs, the agent replies (its
delivery status shows), ends the chat and wraps up with a disposition and a note. A call shows
the caller's data and the IVR path, is transferred to a second-line expert whose desktop shows
the note, and hung up. A second agent's browser gets 403 on the first agent's interaction, its
API and the wall. Screenshots go to the artifacts directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import users as accounts
from router.main import Cityline
from tests.browser.conftest import accepted, logged_in_page

pytestmark = pytest.mark.browser

LIVE_S = 10_000  # ms: how long a live change may take to show
XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
USERS = (
    ("anna", "agent", "a1"),
    ("bartek", "agent", "a2"),
    ("xena", "agent", "x1"),
    ("maria", "supervisor", None),
    ("portal", "intake", None),
)


@pytest.fixture
def city_users() -> tuple[tuple[str, str, str | None], ...]:
    return USERS


class Portal:
    """The intake API as a city portal or channel gateway calls it (API token)."""

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http, self.token = http, token

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        resp = await self.http.post(
            "/api/v1" + path, json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
        assert resp.status == status, await resp.text()
        return await resp.json()


@pytest.fixture
async def portal(city: tuple[Cityline, str], redis: aioredis.Redis) -> AsyncIterator[Portal]:
    _, base = city
    token = (await accounts.create_token(redis, Keys(), "portal", label="browser test")).token
    async with aiohttp.ClientSession(base) as http:
        yield Portal(http, token)


async def login(browser: Any, base: str, username: str) -> Any:
    """A new browser (context) logged in through the form; it lands on its home page."""
    return await logged_in_page(browser, base, username, "/agent", {"width": 1400, "height": 1000})


async def ready_desktop(browser: Any, base: str, username: str) -> Any:
    """An agent logged in on the desktop and gone ready there."""
    from playwright.async_api import expect

    page = await login(browser, base, username)
    await page.wait_for_url(f"{base}/agent")
    await page.click("#go-ready")
    await expect(page.locator("#state-badge")).to_have_text("ready", timeout=LIVE_S)
    return page


async def test_agent_works_a_chat_from_offer_to_wrap_up(
    city: tuple[Cityline, str], browser: Any, portal: Portal, redis: aioredis.Redis,
    artifacts: Path,
) -> None:  # fmt: skip
    from playwright.async_api import expect

    running, base = city
    # the resident called before and agreed to be recognised: the agent will see that call
    earlier = await portal.post("/interactions", {
        "channel": "voice", "queue": "voice", "resident": "+48600100200", "consent": True,
        "subject": "Street lamp",
    }, status=201)  # fmt: skip
    await portal.post(f"/interactions/{earlier['id']}/resident-left", {})

    page = await login(browser, base, "anna")
    await page.wait_for_url(f"{base}/agent")
    await expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_S)
    await expect(page.locator("#state-badge")).to_have_text("offline")
    await page.click("#go-ready")
    await expect(page.locator("#state-badge")).to_have_text("ready", timeout=LIVE_S)
    await expect(page.locator("#state-time")).to_have_text(re.compile(r"^0:0\d$"))

    chat = await portal.post("/interactions", {
        "channel": "chat", "queue": "chat", "resident": "+48600100200", "consent": True,
        "resident_name": "Jan Kowalski", "subject": "Waste collection", "language": "pl",
    }, status=201)  # fmt: skip
    ix = chat["id"]
    offer = page.locator(f'.offer[data-ix="{ix}"]')
    await expect(offer).to_be_visible(timeout=LIVE_S)
    await expect(offer.locator('[data-f="channel"]')).to_have_text("chat")
    await expect(offer.locator('[data-f="queue_label"]')).to_have_text("Czat")
    await expect(offer.locator('[data-f="language"]')).to_have_text("pl")
    await expect(offer.locator('[data-f="ref"]')).to_have_text(chat["ref"])
    await expect(offer.locator('[data-f="resident"]')).to_have_text("+48600100200")
    await expect(offer.locator('[data-f="waited"]')).to_have_text(re.compile(r"^0:\d\d$"))
    await expect(offer.locator(".history li")).to_contain_text(earlier["ref"], timeout=LIVE_S)
    countdown = offer.locator('[data-f="countdown"]')
    await expect(countdown).to_have_text(re.compile(r"^(30|2\d)$"))
    first = int(await countdown.text_content() or 0)
    await page.wait_for_timeout(2_200)
    assert int(await countdown.text_content() or 0) < first, "the countdown does not run"
    await expect(page).to_have_title(re.compile(r"^\(1\) New contact"))
    await page.screenshot(path=str(artifacts / "desktop-offer.png"), full_page=True)

    await offer.locator(".accept").click()
    await expect(offer).to_have_count(0, timeout=LIVE_S)
    panel = page.locator(f'.work[data-ix="{ix}"]')
    await expect(panel).to_be_visible(timeout=LIVE_S)
    await expect(page.locator("#state-badge")).to_have_text("busy")
    await expect(panel.locator('[data-f="resident_name"]')).to_have_text("Jan Kowalski")
    await expect(panel.locator(".hangup")).to_be_hidden()

    # the resident writes a script: it is shown as text and never runs
    await portal.post(f"/interactions/{ix}/resident-messages", {"text": XSS})
    resident_msg = panel.locator(".msg-resident .msg-text")
    await expect(resident_msg).to_have_text(XSS, timeout=LIVE_S)
    assert await panel.locator(".messages img, .messages script").count() == 0
    assert await page.evaluate("typeof window.__xss") == "undefined"

    # the agent replies through the resident's channel
    await panel.locator(".reply textarea").fill("Dzień dobry! Odbiór jest we wtorek.")
    await panel.locator(".send").click()
    mine = panel.locator(".msg-agent")
    await expect(mine.locator(".msg-text")).to_have_text("Dzień dobry! Odbiór jest we wtorek.",
                                                         timeout=LIVE_S)  # fmt: skip
    await expect(mine.locator(".msg-who")).to_have_text("You")
    await expect(panel.locator(".reply textarea")).to_have_value("")
    # the channel reports how sending it went (as the outbox does): the status shows next to it
    await redis.hset(Keys().deliveries(ix), "2", json.dumps({
        "channel": "chat", "status": "delivered", "attempts": 1, "at_ms": 1,
    }))  # fmt: skip
    await expect(mine.locator(".delivery")).to_have_text("delivered", timeout=LIVE_S)
    await page.screenshot(path=str(artifacts / "desktop-conversation.png"), full_page=True)

    # end the chat, wrap up with a disposition and a note, close
    await panel.locator(".complete").click()
    wrapup = panel.locator(".wrapup")
    await expect(wrapup).to_be_visible(timeout=LIVE_S)
    await expect(page.locator("#wrapup-info")).to_be_visible()
    await expect(page.locator("#wrapup-countdown")).to_have_text(re.compile(r"^0:(30|2\d)$"))
    await expect(page.locator("#state-badge")).to_have_text("wrapup")
    await expect(panel.locator(".reply")).to_be_hidden()
    await wrapup.locator(".disposition").select_option("information_given")
    await wrapup.locator(".wrapup-note").fill("Told the collection day")
    await page.screenshot(path=str(artifacts / "desktop-wrapup.png"), full_page=True)
    await wrapup.locator(".close-ix").click()
    await expect(panel).to_have_count(0, timeout=LIVE_S)
    await expect(page.locator("#work-empty")).to_be_visible()
    await expect(page.locator("#state-badge")).to_have_text("ready")
    stream = await redis.xrange(Keys().events)
    done = [f for _, f in stream if f.get("ev") == "WRAPUPEND" and f.get("ix") == ix]
    assert done and done[0]["disposition"] == "information_given"
    assert done[0]["note"] == "Told the collection day" and done[0]["by"] == "agent"
    assert await page.evaluate("typeof window.__xss") == "undefined"

    # not ready with a reason, then signing out of routing
    await page.select_option("#reason", "break")
    await page.click("#go-pause")
    await expect(page.locator("#state-badge")).to_have_text("not ready", timeout=LIVE_S)
    await expect(page.locator("#state-reason")).to_have_text("Przerwa")
    await page.click("#go-offline")
    await expect(page.locator("#state-badge")).to_have_text("offline", timeout=LIVE_S)
    assert running.service is not None
    await page.context.close()


async def test_a_call_transferred_to_an_expert_then_hung_up(
    city: tuple[Cityline, str], browser: Any, portal: Portal, artifacts: Path
) -> None:
    from playwright.async_api import expect

    _, base = city
    anna = await ready_desktop(browser, base, "anna")
    call = await portal.post("/interactions", {
        "channel": "voice", "queue": "voice", "resident": "+48600100999",
        "resident_name": "Ewa Nowak", "meta": {"ivr_path": "main>roads>pl"},
    }, status=201)  # fmt: skip
    offer = anna.locator(f'.offer[data-ix="{call["id"]}"]')
    await expect(offer.locator('[data-f="ivr_path"]')).to_have_text("main>roads>pl",
                                                                    timeout=LIVE_S)  # fmt: skip
    await expect(offer.locator('[data-f="countdown"]')).to_have_text(re.compile(r"^1[0-5]$"))
    await offer.locator(".accept").click()
    panel = anna.locator(f'.work[data-ix="{call["id"]}"]')
    await expect(panel).to_be_visible(timeout=LIVE_S)
    await expect(panel.locator('[data-f="resident_caption"]')).to_have_text("Caller number")
    await expect(panel.locator('[data-f="resident"]')).to_have_text("+48600100999")
    await expect(panel.locator('[data-f="resident_name"]')).to_have_text("Ewa Nowak")
    await expect(panel.locator('[data-f="ivr_path"]')).to_have_text("main>roads>pl")
    await expect(panel.locator(".hangup")).to_be_visible()
    await expect(panel.locator(".transfer-go")).to_be_visible()
    await expect(panel.locator(".conversation")).to_be_hidden()
    await anna.screenshot(path=str(artifacts / "desktop-call.png"), full_page=True)

    # transfer to the second-line expert with a note the expert sees
    await panel.locator(".transfer-target").select_option("agent:x1")
    await panel.locator(".transfer-note").fill("Pothole on Main St., needs roads dept.")
    await panel.locator(".transfer-go").click()
    await expect(panel).to_have_count(0, timeout=LIVE_S)
    xena = await login(browser, base, "xena")
    await xena.wait_for_url(f"{base}/agent")
    await xena.click("#go-ready")
    offer = xena.locator(f'.offer[data-ix="{call["id"]}"]')
    await expect(offer.locator('[data-f="transfer_note"]')).to_have_text(
        "Pothole on Main St., needs roads dept.", timeout=LIVE_S
    )
    await offer.locator(".accept").click()
    panel = xena.locator(f'.work[data-ix="{call["id"]}"]')
    await expect(panel.locator('[data-f="transfer_note"]')).to_have_text(
        "Pothole on Main St., needs roads dept.", timeout=LIVE_S
    )
    # hang up: the voice queue has no wrap-up time, so the outcome is chosen with the ending
    await panel.locator(".end-disposition").select_option("referred")
    await panel.locator(".end-note").fill("sent to the roads department")
    await panel.locator(".hangup").click()
    await expect(panel).to_have_count(0, timeout=LIVE_S)
    closed = await city[0].service.store.interaction(call["id"])
    assert (closed["state"], closed["disposition"], closed["note"]) == (
        "closed", "referred", "sent to the roads department")
    await expect(xena.locator("#state-badge")).to_have_text("ready")
    await anna.context.close()
    await xena.context.close()


async def test_another_agent_gets_403(
    city: tuple[Cityline, str], browser: Any, artifacts: Path
) -> None:
    running, base = city
    service = running.service
    assert service is not None
    ix = await accepted(service, "a1", "chat", "chat")

    page = await login(browser, base, "bartek")
    await page.wait_for_url(f"{base}/agent")
    # from the desktop, with the session's CSRF token: acting on Anna's chat is refused
    status = await page.evaluate(
        """async (ix) => (await fetch('/api/v1/agents/a1/interactions/' + ix + '/complete', {
            method: 'POST', headers: {'X-CSRF-Token':
              document.querySelector('meta[name="csrf-token"]').content}})).status""",
        ix,
    )
    assert status == 403
    response = await page.goto(f"{base}/agent/interaction/{ix}")
    assert response is not None and response.status == 403
    assert "may not open" in (await page.text_content("#forbidden") or "")
    await page.screenshot(path=str(artifacts / "desktop-403.png"))
    for path in (f"/api/v1/interactions/{ix}", f"/api/v1/interactions/{ix}/messages"):
        resp = await page.request.get(f"{base}{path}")
        assert resp.status == 403, path
    response = await page.goto(f"{base}/wall")
    assert response is not None and response.status == 403
    response = await page.goto(f"{base}/wall/data.json")
    assert response is not None and response.status == 403
    await page.context.close()


async def test_several_chats_at_once(
    city: tuple[Cityline, str], browser: Any, portal: Portal, artifacts: Path
) -> None:
    from playwright.async_api import expect

    _, base = city
    page = await ready_desktop(browser, base, "anna")
    ids = []
    for n in (1, 2):
        created = await portal.post("/interactions", {
            "channel": "chat", "queue": "chat", "resident_name": f"Resident {n}",
        }, status=201)  # fmt: skip
        ids.append(created["id"])
    await expect(page.locator(".offer")).to_have_count(2, timeout=LIVE_S)
    for ix in ids:
        await page.locator(f'.offer[data-ix="{ix}"] .accept').click()
        await expect(page.locator(f'.work[data-ix="{ix}"]')).to_be_visible(timeout=LIVE_S)
    await expect(page.locator("#work-list li")).to_have_count(2)
    await expect(page.locator("#load")).to_have_text("holding chat 2/3")
    # the resident of the chat not in view writes: its tab shows the unread message
    first_tab = page.locator(f'#work-list li[data-ix="{ids[0]}"]')
    await portal.post(f"/interactions/{ids[0]}/resident-messages", {"text": "Are you there?"})
    await expect(first_tab.locator(".unread")).to_have_text("1", timeout=LIVE_S)
    await first_tab.locator(".tab").click()
    first = page.locator(f'.work[data-ix="{ids[0]}"]')
    await expect(first).to_be_visible()
    await expect(page.locator(f'.work[data-ix="{ids[1]}"]')).to_be_hidden()
    await expect(first.locator(".msg-resident .msg-text")).to_have_text("Are you there?")
    await expect(first_tab.locator(".unread")).to_be_hidden()
    # each conversation keeps its own draft
    await first.locator(".reply textarea").fill("Yes, one moment")
    await page.locator(f'#work-list li[data-ix="{ids[1]}"] .tab').click()
    await first_tab.locator(".tab").click()
    await expect(first.locator(".reply textarea")).to_have_value("Yes, one moment")
    await first.locator(".reply textarea").press("Enter")  # Enter sends in a chat
    await expect(first.locator(".msg-agent .msg-text")).to_have_text("Yes, one moment",
                                                                     timeout=LIVE_S)  # fmt: skip
    await page.screenshot(path=str(artifacts / "desktop-two-chats.png"), full_page=True)
    await page.context.close()


async def test_a_late_refresh_does_not_take_back_an_offer_the_stream_showed(
    city: tuple[Cityline, str], browser: Any, portal: Portal
) -> None:
    """After an action the page reads /agent/view.json once; on a loaded machine that answer
    can arrive after the stream already pushed a newer view (here: an offer). The stream pushes
    only on change, so applying the late, older answer would take the offer off the page until
    the next change (the offer's timeout). The answer is held here until the offer is shown."""
    import asyncio

    from playwright.async_api import Route, expect

    from router.web.desktop_data import REFRESH_S

    _, base = city
    page = await login(browser, base, "anna")
    await page.wait_for_url(f"{base}/agent")
    await expect(page.locator("#conn")).to_have_text("live", timeout=LIVE_S)
    read, release, held = asyncio.Event(), asyncio.Event(), []

    async def hold_first(route: Route) -> None:
        response = await route.fetch()  # the server reads the view now
        if not held:
            held.append(await response.json())
            read.set()
            await release.wait()
        await route.fulfill(response=response)

    await page.route("**/agent/view.json", hold_first)
    await page.click("#go-ready")  # signs in, then refreshes: the view is read, and held
    await asyncio.wait_for(read.wait(), LIVE_S / 1000)
    assert held[0]["agent"]["state"] == "ready" and held[0]["offers"] == []
    chat = await portal.post("/interactions", {"channel": "chat", "queue": "chat"}, status=201)
    offer = page.locator(f'.offer[data-ix="{chat["id"]}"]')
    await expect(offer).to_be_visible(timeout=LIVE_S)  # pushed by the stream
    async with page.expect_response("**/agent/view.json"):
        release.set()  # the older view arrives now
    # longer than the server's refresh: nothing would bring the offer back
    await asyncio.sleep(REFRESH_S + 1)
    await expect(offer).to_be_visible(timeout=1)
    await expect(page.locator("#state-badge")).to_have_text("ready")
    await page.context.close()


async def test_a_late_read_of_the_conversation_does_not_take_back_a_message(
    city: tuple[Cityline, str], browser: Any, portal: Portal
) -> None:
    """The page reads a conversation again whenever its messages change; an earlier read that
    answers after a later one must not put back the conversation without the new message."""
    import asyncio

    from playwright.async_api import Route, expect

    from router.web.desktop_data import REFRESH_S

    _, base = city
    page = await ready_desktop(browser, base, "anna")
    read, release, held = asyncio.Event(), asyncio.Event(), []

    async def hold_first(route: Route) -> None:
        response = await route.fetch()  # the server reads the conversation now
        if not held:
            held.append(await response.json())
            read.set()
            await release.wait()
        await route.fulfill(response=response)

    await page.route("**/api/v1/interactions/*/messages", hold_first)
    chat = await portal.post("/interactions", {"channel": "chat", "queue": "chat"}, status=201)
    await page.locator(f'.offer[data-ix="{chat["id"]}"] .accept').click(timeout=LIVE_S)
    panel = page.locator(f'.work[data-ix="{chat["id"]}"]')
    await expect(panel).to_be_visible(timeout=LIVE_S)
    await asyncio.wait_for(read.wait(), LIVE_S / 1000)  # the first read, held: no message yet
    assert held[0]["messages"] == []
    await portal.post(f"/interactions/{chat['id']}/resident-messages", {"text": "Hello?"})
    message = panel.locator(".msg-resident .msg-text")
    await expect(message).to_have_text("Hello?", timeout=LIVE_S)  # read again on the push
    async with page.expect_response("**/api/v1/interactions/*/messages"):
        release.set()  # the first read answers now
    await asyncio.sleep(REFRESH_S + 1)
    await expect(message).to_have_text("Hello?", timeout=1)
    await page.context.close()
