"""Case notices end to end on the channels tests/test_cases_loop.py does not cover.

(a) a web chat resident over the real WebSocket (/chat/ws): the agent holding the chat makes a
case over the API and the chat shows the number and the status link at once (whatever
`notify_on` says); the completion is posted into the chat while it is live; once the chat is
over, the notice's delivery record says so and when the link was shown, and nothing is sent.
(b) a Telegram resident (the real python-telegram-bot against the loopback fake Bot API) gets
the case-open and the completion notices from the bot, with the public note, never the internal
one. (c) web form residents: one with an e-mail contact is told by e-mail (our outbox to a local
SMTP sink), one with only a phone by SMS (the SMS adapter to a fake gateway). (d) a phone caller
(an E.164 caller ID) is told by SMS; a withheld caller ID is recorded as `no_channel`.
The packaged city: roads unit = grzegorz.krawczyk; tomasz.wojcik takes the chats.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils

from channels.chat.adapter import message_frame
from channels.webform.adapter import WebformAdapter
from queues.keys import Keys
from router.config import CitylineConfig, load_config
from router.config_cases import CasesConfig
from router.config_webform import WebformConfig
from router.dispatcher import Dispatcher
from router.http.app import AppContext, create_app
from router.models import Channel, IntakeRequest
from router.service import RoutingService
from tests import test_cases_loop as loop
from tests.api_helpers import ApiHarness
from tests.channels.test_chat import START, Chat, chat_process, recv_type
from tests.channels.test_telegram import CHAT as TG_CHAT
from tests.channels.test_telegram import TOKEN as TG_TOKEN
from tests.channels.test_telegram import Tg, message, tg_process
from tests.fakes.telegram_api import FakeTelegramApi
from tests.routing_fixtures import eventually

MEMBER = loop.MEMBER  # grzegorz.krawczyk, the roads unit
CHAT_AGENT = "tomasz.wojcik"  # general, lang_en, road_damage
PUBLIC = "https://kontakt.example.pl"

# the City of tests/test_cases_loop.py: SMS adapter + fake gateway, e-mail adapter + SMTP sink,
# the API; used here as it is
city = loop.city


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})  # the packaged city: units, chat and telegram queues


@pytest.fixture
async def chat(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
               dispatcher: Dispatcher) -> AsyncIterator[Chat]:
    async with chat_process(redis, cfg, service, dispatcher) as c:
        yield c


async def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def record(service: RoutingService, ix_id: str, item: str) -> dict[str, Any]:
    return (await service.deliveries(ix_id)).get(item, {})


# --- (a) the web chat -------------------------------------------------------------------------


async def chat_case(chat: Chat, api: ApiHarness, language: str) -> tuple[Any, str, str]:
    """A resident starts a chat, the pothole agent takes it and makes a case of it over the
    API. Returns (the resident's socket, the interaction, the case number)."""
    ws = await chat.ws()
    await ws.send_json({**START, "language": language})
    started = await recv_type(ws, "started")
    [ix_id] = [s.ix_id for s in chat.adapter.sessions.values() if s.ref == started["ref"]]
    assert await chat.agent_takes(CHAT_AGENT) == ix_id
    await recv_type(ws, "agent_joined")
    await ws.send_json({"type": "message", "text": "Dziura na Długiej 5"})
    agent = await api.session(CHAT_AGENT, "agent", CHAT_AGENT)
    made = await ok(await agent.post(f"/interactions/{ix_id}/case", {
        "category": "road_damage", "address": "ul. Długa 5"}), 201)
    return ws, ix_id, made["case"]["number"]


async def test_chat_resident_gets_the_link_and_the_outcome_in_the_live_chat(
    chat: Chat, api: ApiHarness, cfg: CitylineConfig
) -> None:
    cfg.cases.notify_on = ["completed", "rejected"]  # the link is posted whatever this says
    ws, ix_id, number = await chat_case(chat, api, "en")
    await chat.pump()
    link = await recv_type(ws, "message")
    assert link["from"] == "city"
    assert link["text"].startswith(f"Your report is registered as {number} (")
    # no public_url: the relative link to the status page this server serves
    assert link["link"] == f"/cases/{number}?lang=en" and link["link"] in link["text"]
    page = await (await api.client()).get(link["link"])
    assert page.status == 200 and number in await page.text()
    opened = f"case:{number}:open"
    assert await eventually(lambda: _status(chat.service, ix_id, opened, "delivered"))
    # the agent sees it in the conversation, not as their own answer
    [posted] = [m for m in await chat.service.messages(ix_id) if m["from"] == "system"]
    assert posted["agent"] == "" and posted["notice"] == opened

    member = await api.session(MEMBER, "agent", MEMBER)
    await ok(await member.put(f"/cases/{number}/status", {"status": "in_progress"}))
    done = await ok(await member.put(f"/cases/{number}/status", {
        "status": "completed", "note": "asfalt na zimno", "public_note": "Pothole filled."}))
    assert done["notices"] == [{"ix": ix_id, "via": "chat", "result": "queued"}]
    await chat.pump()
    told = await recv_type(ws, "message")  # in_progress is not in notify_on: nothing for it
    assert told["from"] == "city"
    assert told["text"].startswith(f"Your report {number} (")
    assert "has been dealt with" in told["text"] and "Pothole filled." in told["text"]
    assert "asfalt" not in told["text"]
    completed = f"case:{number}:completed"
    assert await eventually(lambda: _status(chat.service, ix_id, completed, "delivered"))


async def test_chat_over_before_the_outcome_is_recorded_honestly(
    chat: Chat, api: ApiHarness, cfg: CitylineConfig
) -> None:
    cfg.cases.public_url = PUBLIC
    ws, ix_id, number = await chat_case(chat, api, "pl")
    await chat.pump()
    link = await recv_type(ws, "message")
    assert link["from"] == "city" and number in link["text"]
    assert link["link"] == f"{PUBLIC}/cases/{number}?lang=pl"
    assert await eventually(lambda: _status(chat.service, ix_id, f"case:{number}:open",
                                            "delivered"))
    await ws.send_json({"type": "leave"})  # the resident closes the chat
    assert (await recv_type(ws, "ended"))["by"] == "resident"
    await ws.close()
    posted = len(await chat.service.messages(ix_id))

    member = await api.session(MEMBER, "agent", MEMBER)
    done = await ok(await member.put(f"/cases/{number}/status", {
        "status": "rejected", "public_note": "Droga prywatna."}))
    assert done["notices"] == [{"ix": ix_id, "via": "chat", "result": "no_channel"}]
    rejected = await record(chat.service, ix_id, f"case:{number}:rejected")
    assert rejected["status"] == "no_channel" and rejected["channel"] == "chat"
    assert re.fullmatch(
        r"the chat has ended: not told; the case number and status link were shown in the "
        r"chat at \d{4}-\d\d-\d\d \d\d:\d\d \(Europe/Warsaw\)", rejected["error"]), rejected
    assert len(await chat.service.messages(ix_id)) == posted  # nothing posted into it


async def _status(service: RoutingService, ix_id: str, item: str, status: str) -> bool:
    return (await record(service, ix_id, item)).get("status") == status


def test_every_report_gets_a_number_by_default(cfg: CitylineConfig) -> None:
    assert CasesConfig().notify_on == ["open", "completed", "rejected"]
    assert cfg.cases.notify_on == ["open", "completed", "rejected"]  # the packaged city


def test_only_a_status_link_goes_to_the_page() -> None:
    """The page makes a city message's `link` clickable: only a case status link is sent."""
    base = {"from": "system", "text": "x"}
    assert message_frame({**base, "link": "/cases/Z-2026-000001?lang=pl"})["link"]
    for bad in ("javascript:alert(1)//cases/x", "//evil.example/cases/x", "/cases/<b>",
                "https://x.pl/cases/Z-1\" onclick=\"x"):
        assert "link" not in message_frame({**base, "link": bad}), bad
    # an agent's message never carries one
    assert message_frame({"from": "agent", "text": "y", "link": "/cases/Z-1"}) == {
        "type": "message", "from": "agent", "text": "y"}


# --- (b) Telegram -----------------------------------------------------------------------------


@pytest.fixture
async def tg(redis: aioredis.Redis, cfg: CitylineConfig,
             service: RoutingService) -> AsyncIterator[Tg]:
    fake = FakeTelegramApi(TG_TOKEN)
    await fake.start()
    try:
        async with tg_process(redis, cfg, service, fake,
                              public_url="https://tg.city.example") as t:
            yield t
    finally:
        await fake.close()


async def test_telegram_resident_told_by_the_bot(tg: Tg, api: ApiHarness,
                                                 cfg: CitylineConfig) -> None:
    cfg.cases.public_url = PUBLIC
    assert (await tg.post(message("Dziura w jezdni na Długiej 5"))).status == 200
    [ix] = await tg.interactions()
    boss = await api.session("kierownik", "supervisor")
    made = await ok(await boss.post(f"/interactions/{ix['id']}/case", {
        "category": "road_damage", "address": "ul. Długa 5"}), 201)
    number = made["case"]["number"]

    def bot_texts() -> list[str]:
        return [str(p["text"]) for p in tg.api.called("sendMessage") if number in str(p["text"])]

    [opened] = await eventually(bot_texts)
    assert opened.startswith(f"Zgłoszenie przyjęto pod numerem {number}")
    assert f"{PUBLIC}/cases/{number}?lang=pl" in opened
    member = await api.session(MEMBER, "agent", MEMBER)
    await ok(await member.put(f"/cases/{number}/status", {"status": "in_progress"}))
    await ok(await member.put(f"/cases/{number}/status", {
        "status": "completed", "note": "asfalt na zimno, poprawka wiosną",
        "public_note": "Ubytek załatano."}))
    assert await eventually(lambda: len(bot_texts()) == 2)
    done = bot_texts()[1]
    assert f"Zgłoszenie {number}" in done and "załatwione" in done
    assert "Ubytek załatano." in done and "asfalt" not in done
    sends = [p for p in tg.api.called("sendMessage") if number in str(p["text"])]
    assert {p["chat_id"] for p in sends} == {TG_CHAT}
    assert await eventually(lambda: _status(tg.service, ix["id"], f"case:{number}:completed",
                                            "sent"))


# --- (c) the web form, (d) the phone --------------------------------------------------------

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
REF = re.compile(r'class="ref">([0-9]{4}-[0-9]{6})<')


async def form_report(city: loop.City, tmp_path: Path, **fields: str) -> str:
    """Send the real web form (its own app on the same Redis); the interaction id."""
    adapter = WebformAdapter(city.service, city.service.cfg, WebformConfig(), tmp_path,
                             env={"CITYLINE_WEBFORM_CSRF_SECRET": "form-s3cret"})
    app = create_app(AppContext(config=city.service.cfg, redis=city.service.store.redis,
                                keys=Keys(), store=city.service.store),
                     extra_setup=[adapter.setup_routes])
    client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    try:
        page = await (await client.get("/form?lang=pl")).text()
        token = TOKEN.search(page)
        assert token
        values = {"csrf_token": html.unescape(token.group(1)), "category": "road_damage",
                  "description": "Dziura w jezdni", "address": "ul. Długa 5"} | fields
        resp = await client.post("/form", data=values)
        assert resp.status == 200, await resp.text()
        ref = REF.search(await resp.text())
        assert ref
    finally:
        await client.close()
    return (await city.service.interaction_by_ref(ref.group(1)))["id"]


async def make_and_complete(city: loop.City, ix_id: str) -> str:
    """The supervisor makes a case of the report, the roads member completes it."""
    _agent, member, boss = await loop.staff(city)
    made = await ok(await boss.post(f"/interactions/{ix_id}/case",
                                    {"category": "road_damage"}), 201)
    number = made["case"]["number"]
    await ok(await member.put(f"/cases/{number}/status", {"status": "in_progress"}))
    await ok(await member.put(f"/cases/{number}/status", {
        "status": "completed", "note": "wewnętrzna uwaga", "public_note": "Ubytek załatano."}))
    return number


async def test_webform_resident_with_an_email_told_by_email(city: loop.City,
                                                            tmp_path: Path) -> None:
    ix_id = await form_report(city, tmp_path, contact="Jan.Kowalski@Example.PL")
    number = await make_and_complete(city, ix_id)
    mails = await eventually(lambda: [m for m in city.mails_to("jan.kowalski@example.pl")
                                      if "załatwione" in m["Subject"]])
    assert number in mails[0]["Subject"]
    body = mails[0].get_content()
    assert "Ubytek załatano." in body and "wewnętrzna" not in body
    assert await eventually(lambda: _status(city.service, ix_id, f"case:{number}:completed",
                                            "sent"))
    assert not [t for t in city.gateway.requests if number in t["text"]]  # no SMS


async def test_webform_resident_with_only_a_phone_told_by_sms(city: loop.City,
                                                              tmp_path: Path) -> None:
    ix_id = await form_report(city, tmp_path, contact="600 100 301")
    number = await make_and_complete(city, ix_id)
    texts = await eventually(lambda: [t for t in city.gateway.texts_to("+48600100301")
                                      if number in t and "załatwione" in t])
    assert "Ubytek załatano." in texts[0] and "wewnętrzna" not in texts[0]
    # and the number came first, when the case was made
    assert [t for t in city.gateway.texts_to("+48600100301") if "przyjęto" in t]
    assert not [m for m in city.sink.messages if number in str(m["Subject"])]  # no mail


async def test_phone_caller_told_by_sms_withheld_number_recorded(city: loop.City) -> None:
    # what the voice adapter makes of a call routed by the IVR (channels/voice on_outcome)
    async def call(caller: str) -> str:
        done = await city.service.create_interaction(IntakeRequest(
            channel=Channel.voice, queue="voice-interventions", resident=caller,
            meta={"asterisk_channel": "PJSIP/trunk-00000001", "uniqueid": "1760000000.1"}))
        return done.id

    ix_id = await call("+48600100302")
    number = await make_and_complete(city, ix_id)
    texts = await eventually(lambda: [t for t in city.gateway.texts_to("+48600100302")
                                      if number in t and "załatwione" in t])
    assert "Ubytek załatano." in texts[0] and "wewnętrzna" not in texts[0]
    hidden = await call("anonymous")
    other = await make_and_complete(city, hidden)
    gone = await record(city.service, hidden, f"case:{other}:completed")
    assert gone["status"] == "no_channel"
    assert not [t for t in city.gateway.requests if other in t["text"]]


# --- the resident's agreement -----------------------------------------------------------------


async def test_a_resident_who_does_not_want_to_be_told_is_not(city: loop.City) -> None:
    """Made with notify false: no route nor contact kept; the staff view says "declined"; no
    SMS at the case's making nor at its completion, and the delivery record says why. A second
    report linked with notify true is told as usual."""
    _agent, member, boss = await loop.staff(city)
    quiet = await city.text("q-1", "+48600100401", "Dziura, ale proszę nie pisać")
    made = await ok(await boss.post(f"/interactions/{quiet}/case", {
        "category": "road_damage", "notify": False}), 201)
    number = made["case"]["number"]
    assert made["case"]["residents"] == [{"ix": quiet, "channel": "sms", "told_by": "",
                                          "declined": True}]
    stored = await city.service.store.redis.hgetall(Keys().case_subscribers(made["case"]["id"]))
    assert "+48600100401" not in str(stored)  # the contact is not kept with the case
    loud = await city.text("q-2", "+48600100402", "Ta sama dziura")
    linked = await ok(await boss.post(f"/interactions/{loud}/case/link",
                                      {"case_number": number}))
    assert [r["told_by"] for r in linked["case"]["residents"]] == ["", "sms"]
    await ok(await member.put(f"/cases/{number}/status", {"status": "in_progress"}))
    done = await ok(await member.put(f"/cases/{number}/status", {
        "status": "completed", "public_note": "Załatano."}))
    assert sorted(n["result"] for n in done["notices"]) == ["declined", "queued"]
    await eventually(lambda: [t for t in city.gateway.texts_to("+48600100402")
                              if "Załatano." in t])
    assert not [r for r in city.gateway.requests if r["to"] == "+48600100401"]
    why = await record(city.service, quiet, f"case:{number}:completed")
    assert why["status"] == "declined" and "did not want" in why["error"]
