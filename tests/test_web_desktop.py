"""The agent desktop's server side: the page, who may open what, the agent's own live view and
its stream, on the real app, Redis and dispatcher (offers made by `Dispatcher.match_round()`).

Each client has its own cookie jar, so two agents are two browsers.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from queues.keys import Keys
from router.config import CitylineConfig, load_config
from router.dispatcher import Dispatcher
from router.web.desktop import _cases_config
from router.web.desktop_data import DEFAULT_DISPOSITIONS, DesktopHub, read_view, shown_state
from tests.api_helpers import ApiHarness, Bearer, Session
from tests.routing_fixtures import CONFIG, events
from tests.test_web_pages import form_login

# The test city with cases on: the roads unit, whose second line is the expert x1.
CASES = {
    "units": {
        "roads": {"labels": {"pl": "Zarząd Dróg", "en": "Roads Authority"}, "members": ["x1"]}
    },
    "categories": {"roads": {"unit": "roads", "resolution_target_hours": 72}},
}


@pytest.fixture
def cfg(tmp_path: Any) -> CitylineConfig:
    raw = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    raw["cases"] = CASES
    path = tmp_path / "cityline.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_config(path, env={})


XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


async def intake(h: ApiHarness) -> Bearer:
    return await h.bearer("portal", "intake")


async def create(portal: Bearer, **body: Any) -> str:
    resp = await portal.post("/interactions", {"channel": "chat", "queue": "chat", **body})
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["id"])


async def ready(session: Session, agent_id: str) -> None:
    resp = await session.post(f"/agents/{agent_id}/login", {"ready": True})
    assert resp.status == 200, await resp.text()


async def view_of(session: Session) -> dict[str, Any]:
    resp = await session.client.get("/agent/view.json")
    assert resp.status == 200, await resp.text()
    return await resp.json()


def page_json(html: str, element_id: str) -> Any:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html,
                      re.S)  # fmt: skip
    assert found, element_id
    return json.loads(found.group(1))


# --- the page and who may open it --------------------------------------------------------------


async def test_agent_logs_in_and_lands_on_the_desktop(h: ApiHarness) -> None:
    await h.user("anna", "agent", agent="a1")
    client = await h.client()
    resp = await client.get("/agent", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login?next=/agent"
    resp = await form_login(client, "anna")
    assert resp.status == 303 and resp.headers["Location"] == "/agent"
    page = await client.get("/agent")
    assert page.status == 200
    html = await page.text()
    assert re.search(r'<meta name="csrf-token" content="[^"]+">', html)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert html.index("/static/web/common.js?v=") < html.index("/static/web/desktop.js?v=")
    config = page_json(html, "desktop-config")
    assert config["agent"] == "a1" and config["api"] == "/api/v1"
    # reasons from the configuration, without the one only the router gives (missed offers)
    assert [r["code"] for r in config["reasons"]] == ["break"]
    assert [d["code"] for d in config["dispositions"]] == [c for c, _ in DEFAULT_DISPOSITIONS]
    assert config["experts"] == [{"id": "x1", "name": "Expert"}]
    assert config["history_url"] == "/api/v1/interactions/{ix_id}/history"
    chat = next(q for q in config["queues"] if q["name"] == "chat")
    assert chat["wrapup_s"] == 30 and chat["offer_timeout_s"] == 30
    initial = page_json(html, "desktop-initial")
    assert initial["agent"]["state"] == "offline" and initial["offers"] == []
    # the home page sends the agent to the desktop too
    home = await client.get("/", allow_redirects=False)
    assert home.status == 303 and home.headers["Location"] == "/agent"
    static = await client.get("/static/web/desktop.js")
    assert static.status == 200 and '"/agent/stream"' in await static.text()


async def test_supervisors_and_strangers_are_refused(h: ApiHarness) -> None:
    maria = await h.session("maria", "supervisor")
    resp = await maria.client.get("/agent", allow_redirects=False)
    assert resp.status == 403 and "may not open /agent" in await resp.text()
    for path in ("/agent/view.json", "/agent/stream"):
        resp = await maria.client.get(path)
        assert resp.status == 403, path
        assert (await resp.json())["error"]["code"] == "forbidden"
    stranger = await h.client()
    for path in ("/agent/view.json", "/agent/stream"):
        resp = await stranger.get(path)
        assert resp.status == 401, path
    resp = await stranger.get("/agent/interaction/abc", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=")


async def test_each_agent_sees_only_its_own_work(h: ApiHarness, dispatcher: Dispatcher) -> None:
    portal = await intake(h)
    anna = await h.session("anna", "agent", "a1")
    bartek = await h.session("bartek", "agent", "a2")
    await ready(anna, "a1")
    first = await create(portal, resident="+48600100200", subject="Odpady")
    assert await dispatcher.match_round() == 1
    await ready(bartek, "a2")
    # in English: only Bartek speaks it (Anna has room for more chats)
    second = await create(portal, resident="+48600100300", subject="Podatki", language="en")
    assert await dispatcher.match_round() == 1

    mine, theirs = await view_of(anna), await view_of(bartek)
    assert [o["id"] for o in mine["offers"]] == [first]
    assert [o["id"] for o in theirs["offers"]] == [second]
    offer = mine["offers"][0]
    assert offer["subject"] == "Odpady" and offer["channel"] == "chat" and offer["text"]
    assert offer["queue_label"] == "Czat"
    # the countdown's deadline: the chat queue's 30 s offer timeout from the offer time
    assert offer["deadline_ms"] - offer["offered_ms"] == 30_000
    assert mine["now_ms"] >= offer["offered_ms"]
    assert "Podatki" not in json.dumps(mine) and "Odpady" not in json.dumps(theirs)

    # Bartek opens Anna's interaction: the page, the API, the conversation: all 403
    resp = await bartek.client.get(f"/agent/interaction/{first}", allow_redirects=False)
    assert resp.status == 403 and "may not open" in await resp.text()
    for path in (f"/interactions/{first}", f"/interactions/{first}/messages",
                 f"/interactions/{first}/history"):  # fmt: skip
        assert (await bartek.get(path)).status == 403, path
    resp = await bartek.post(f"/agents/a1/interactions/{first}/accept")
    assert resp.status == 403
    resp = await bartek.post(f"/agents/a2/interactions/{first}/accept")
    assert resp.status == 403
    # ... and the wall
    assert (await bartek.client.get("/wall", allow_redirects=False)).status == 403
    # Anna opens her own: the desktop focused on it; an unknown one is a 404
    resp = await anna.client.get(f"/agent/interaction/{first}")
    assert resp.status == 200
    assert page_json(await resp.text(), "desktop-config")["focus"] == first
    resp = await anna.client.get("/agent/interaction/nope")
    assert resp.status == 404


async def test_a_chat_from_offer_to_wrap_up(
    h: ApiHarness, dispatcher: Dispatcher, redis: aioredis.Redis
) -> None:
    portal = await intake(h)
    anna = await h.session("anna", "agent", "a1")
    await ready(anna, "a1")
    view = await view_of(anna)
    assert view["agent"]["state"] == "ready" and view["agent"]["shown"] == "ready"
    assert view["agent"]["since_ms"] > 0
    ix = await create(portal, resident="+48600100200", resident_name=XSS)
    await dispatcher.match_round()
    assert (await anna.post(f"/agents/a1/interactions/{ix}/accept")).status == 200
    view = await view_of(anna)
    assert view["offers"] == [] and [w["id"] for w in view["work"]] == [ix]
    assert view["agent"]["shown"] == "busy" and view["agent"]["load"]["chat"] == 1
    assert view["agent"]["capacity"]["chat"] == 3
    before = view["work"][0]["msg_sig"]
    assert view["work"][0]["messages"] == 0

    resp = await portal.post(f"/interactions/{ix}/resident-messages", {"text": XSS})
    assert resp.status == 200
    view = await view_of(anna)
    assert view["work"][0]["messages"] == 1 and view["work"][0]["msg_sig"] != before
    # a delivery report changes the signature too (the page then re-reads the conversation)
    sig = view["work"][0]["msg_sig"]
    await redis.hset(Keys().deliveries(ix), "1", json.dumps({"status": "sent"}))
    assert (await view_of(anna))["work"][0]["msg_sig"] != sig

    # the page embeds the resident's data as JSON that can never close the script element
    html = await (await anna.client.get("/agent")).text()
    assert "<script>window.__xss" not in html and "<img src=x" not in html
    assert page_json(html, "desktop-initial")["work"][0]["resident_name"] == XSS

    assert (await anna.post(f"/agents/a1/interactions/{ix}/complete")).status == 200
    work = (await view_of(anna))["work"][0]
    assert work["state"] == "wrapup"
    assert work["wrapup_until_ms"] - work["talk_end_ms"] == 30_000  # the chat queue's wrapup_s
    assert (await view_of(anna))["agent"]["shown"] == "wrapup"
    resp = await anna.post(f"/agents/a1/interactions/{ix}/wrapup-end",
                           {"disposition": "resolved", "note": "Told the date"})  # fmt: skip
    assert resp.status == 200
    view = await view_of(anna)
    assert view["work"] == [] and view["agent"]["shown"] == "ready"
    done = (await events(redis, "WRAPUPEND"))[-1]
    assert (done.disposition, done.note) == ("resolved", "Told the date")  # type: ignore[attr-defined]


async def test_transfer_to_an_expert_carries_the_note(
    h: ApiHarness, dispatcher: Dispatcher
) -> None:
    portal = await intake(h)
    anna = await h.session("anna", "agent", "a1")
    expert = await h.session("xena", "agent", "x1")
    await ready(anna, "a1")
    ix = await create(portal, resident="+48600100200")
    await dispatcher.match_round()
    await anna.post(f"/agents/a1/interactions/{ix}/accept")
    resp = await anna.post(f"/agents/a1/interactions/{ix}/transfer",
                           {"agent": "x1", "note": "Needs the road department"})  # fmt: skip
    assert resp.status == 200, await resp.text()
    assert (await view_of(anna))["work"] == []
    await ready(expert, "x1")
    await dispatcher.match_round()
    offer = (await view_of(expert))["offers"][0]
    assert offer["id"] == ix and offer["transfer_note"] == "Needs the road department"
    assert offer["transfers"] == 1


async def test_a_call_shows_the_ivr_path_and_no_conversation(
    h: ApiHarness, dispatcher: Dispatcher
) -> None:
    portal = await intake(h)
    anna = await h.session("anna", "agent", "a1")
    await ready(anna, "a1")
    resp = await portal.post("/interactions", {
        "channel": "voice", "queue": "voice", "resident": "+48600100200",
        "resident_name": "Jan Kowalski", "meta": {"ivr_path": "main/taxes/pl"},
    })  # fmt: skip
    ix = (await resp.json())["id"]
    await dispatcher.match_round()
    offer = (await view_of(anna))["offers"][0]
    assert offer["id"] == ix and offer["channel"] == "voice" and not offer["text"]
    assert offer["ivr_path"] == "main/taxes/pl" and offer["resident_name"] == "Jan Kowalski"
    assert offer["deadline_ms"] - offer["offered_ms"] == 15_000
    await anna.post(f"/agents/a1/interactions/{ix}/accept")
    # hang-up is `complete`: the voice queue has no wrap-up, the call closes at once
    resp = await anna.post(f"/agents/a1/interactions/{ix}/complete")
    assert (await resp.json())["state"] == "closed"
    assert (await view_of(anna))["work"] == []


# --- the live stream --------------------------------------------------------------------------


async def next_event(resp: Any, timeout_s: float = 5.0) -> tuple[str, Any]:
    """The next SSE event (name, parsed data) of a stream, skipping comments."""

    async def read() -> tuple[str, Any]:
        name, data = "", ""
        while True:
            line = (await resp.content.readline()).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "" and name:
                return name, json.loads(data)

    return await asyncio.wait_for(read(), timeout_s)


async def test_the_stream_pushes_the_agents_own_changes(
    h: ApiHarness, dispatcher: Dispatcher
) -> None:
    portal = await intake(h)
    anna = await h.session("anna", "agent", "a1")
    bartek = await h.session("bartek", "agent", "a2")
    stream = await anna.client.get("/agent/stream")
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    name, view = await next_event(stream)
    assert name == "view" and view["agent"]["state"] == "offline"

    loop = asyncio.get_running_loop()
    await ready(anna, "a1")
    started = loop.time()
    name, view = await next_event(stream)
    assert view["agent"]["state"] == "ready"
    # woken by the ADDMEMBER event, well before the periodic refresh
    assert loop.time() - started < 1.5

    ix = await create(portal, subject="For Anna")
    assert await dispatcher.match_round() == 1
    while True:
        name, view = await next_event(stream)
        if view["offers"] or view["work"]:
            break
    assert [o["id"] for o in view["offers"]] == [ix]
    # another agent's work never reaches Anna's stream (in English: only Bartek speaks it)
    await ready(bartek, "a2")
    other = await create(portal, subject="Not for Anna", language="en")
    await dispatcher.match_round()
    resp = await bartek.get("/agents/a2/offers")
    assert [o["id"] for o in (await resp.json())["interactions"]] == [other]

    # the resident writes: Anna's stream (she holds it) shows the new message count
    await anna.post(f"/agents/a1/interactions/{ix}/accept")
    await portal.post(f"/interactions/{ix}/resident-messages", {"text": "hello"})
    for _ in range(5):
        name, view = await next_event(stream)
        if view["work"] and view["work"][0]["messages"] == 1:
            break
    assert view["work"][0]["messages"] == 1
    assert "Not for Anna" not in json.dumps(view)

    # logging out ends the stream
    resp = await anna.post("/auth/logout")
    assert resp.status == 200
    name, data = await next_event(stream, timeout_s=5.0)
    while name != "ended":
        name, data = await next_event(stream, timeout_s=5.0)
    assert data == {"reason": "session"}
    stream.close()


async def test_hub_wakes_only_the_desktops_concerned(redis: aioredis.Redis) -> None:
    keys = Keys()
    await redis.xadd(keys.events, {"ev": "UNPAUSE", "agent": "a0", "ix": ""})
    hub = DesktopHub(redis, keys)
    anna, bartek = hub.subscribe("a1"), hub.subscribe("a2")
    bartek.holds = {"ix-7"}
    await asyncio.sleep(0.1)  # the reader starts after the event already in the stream
    assert not anna.wake.is_set() and not bartek.wake.is_set()
    await redis.xadd(keys.events, {"ev": "PAUSE", "agent": "a1", "ix": ""})
    await asyncio.wait_for(anna.wake.wait(), 3)
    assert not bartek.wake.is_set()
    anna.wake.clear()
    await redis.xadd(keys.events, {"ev": "MESSAGE", "agent": "", "ix": "ix-7"})
    await asyncio.wait_for(bartek.wake.wait(), 3)
    assert not anna.wake.is_set()
    hub.unsubscribe(bartek)
    await hub.close()
    assert anna.wake.is_set()  # closing wakes the streams so they end


async def test_read_view_of_an_agent_never_logged_in(
    redis: aioredis.Redis, cfg: CitylineConfig
) -> None:
    view = await read_view(redis, Keys(), cfg, "a3")
    assert view["agent"]["state"] == "offline" and view["agent"]["name"] == "Celina"
    assert view["offers"] == [] and view["work"] == []
    assert shown_state("ready", [{"state": "wrapup"}, {"state": "connected"}]) == "busy"
    assert shown_state("not_ready", []) == "paused"


# --- cases ---------------------------------------------------------------------------------------


async def test_the_page_carries_the_case_categories_and_the_agents_units(h: ApiHarness) -> None:
    expert = await h.session("xavier", "agent", agent="x1")
    html = await (await expert.client.get("/agent")).text()
    cases = page_json(html, "desktop-config")["cases"]
    assert cases["categories"] == [{"id": "roads", "label": "Drogi"}]
    assert cases["units"] == [{"id": "roads", "label": "Zarząd Dróg"}]
    assert cases["my_units"] == ["roads"] and cases["refresh_s"] == 15
    assert 'id="unit-cases"' in html and "desktop_cases.js" in html
    assert html.index("/static/web/desktop.js?v=") < html.index("/static/web/desktop_cases.js?v=")
    static = await expert.client.get("/static/web/desktop_cases.js")
    assert static.status == 200 and "innerHTML" not in await static.text()
    # a first-line agent: the case form, but no unit of its own
    anna = await h.session("anna", "agent", agent="a1")
    html = await (await anna.client.get("/agent")).text()
    cases = page_json(html, "desktop-config")["cases"]
    assert cases["my_units"] == [] and cases["categories"][0]["id"] == "roads"
    assert 'id="unit-cases"' not in html and 'class="case-form"' in html


async def test_the_view_carries_the_case_of_an_interaction(
    h: ApiHarness, dispatcher: Dispatcher
) -> None:
    portal = await intake(h)
    anna = await h.session("anna", "agent", agent="a1")
    ix_id = await create(portal, subject="Dziura", body="Dziura na ul. Lipowej")
    await ready(anna, "a1")
    await dispatcher.match_round()
    resp = await anna.post(f"/agents/a1/interactions/{ix_id}/accept")
    assert resp.status == 200, await resp.text()
    resp = await anna.post(
        f"/interactions/{ix_id}/case", {"category": "roads", "address": "ul. Lipowa 3"}
    )
    assert resp.status == 201, await resp.text()
    number = (await resp.json())["case"]["number"]
    item = next(i for i in (await view_of(anna))["work"] if i["id"] == ix_id)
    assert item["case"] == number


def test_without_units_cases_are_off() -> None:
    off = load_config(CONFIG, env={})
    assert _cases_config(off, "x1") is None
