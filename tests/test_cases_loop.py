"""Cases end to end, through two real channels and the real API.

(a) a resident texts (signed SMS webhook, the SMS adapter with a fake gateway), (b) another
e-mails (our SMTP server driven by smtplib, a local aiosmtpd sink as the smarthost). An agent
holding the report makes a case of it over the API; the unit's member moves it to in_progress
and completed with a note; the resident gets the notice on the channel they used, with the case
number. The second report of the same pothole is linked as a duplicate: both are told. The
public page and JSON show nothing personal. The packaged city: roads unit = grzegorz.krawczyk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils, web

from channels.email.adapter import EmailAdapter
from channels.sms.adapter import GENERIC_PATH, SmsAdapter
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_email import EmailConfig
from router.config_sms import SmsConfig
from router.dispatcher import Dispatcher
from router.http.app import AppContext, create_app
from router.models import Channel
from router.service import RoutingService
from tests.api_helpers import ApiHarness, Session, api_harness, error_of
from tests.channels.test_email import Sink, serve_sink
from tests.routing_fixtures import eventually

SECRET = "generic-s3cret"
ENV = {"CITYLINE_SMS_WEBHOOK_SECRET": SECRET, "CITYLINE_SMS_GATEWAY_TOKEN": "gw"}
CITY = "kontakt@nowygrod.example.pl"
PHONE = "+48600100200"
MAIL = "ola.nowak@example.org"
FIRST_LINE = "anna.nowak"
MEMBER = "grzegorz.krawczyk"
LAT, LON = 51.7592, 19.4560


@dataclass
class Gateway:
    requests: list[dict[str, Any]]

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(await request.json())
        return web.json_response({"id": f"gw-{len(self.requests)}"})

    def texts_to(self, number: str) -> list[str]:
        """Whole messages sent to `number` (the segments of a long one joined in order)."""
        whole: dict[str, list[tuple[int, str]]] = {}
        for r in self.requests:
            if r["to"] == number:
                parts = r.get("parts") or {"ref": r["reference"], "index": 1}
                whole.setdefault(parts["ref"], []).append((parts["index"], r["text"]))
        return ["".join(t for _i, t in sorted(segs)) for segs in whole.values()]


@dataclass
class City:
    service: RoutingService
    api: ApiHarness
    sms_client: test_utils.TestClient
    sms: SmsAdapter
    gateway: Gateway
    email: EmailAdapter
    sink: Sink
    dispatcher: Dispatcher  # one: a second would wait for the first's planning lease

    async def text(self, msg_id: str, sender: str, text: str) -> str:
        body = json.dumps({"id": msg_id, "from": sender, "to": "+48221234567",
                           "text": text}).encode()
        sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        resp = await self.sms_client.post(GENERIC_PATH, data=body, headers={
            "Content-Type": "application/json", "X-Cityline-Signature": f"sha256={sig}"})
        assert resp.status == 200, await resp.text()
        return (await resp.json())["interaction"]

    async def mail(self, sender: str, subject: str, body: str) -> tuple[str, str]:
        msg = EmailMessage()
        msg["From"] = f"Ola Nowak <{sender}>"
        msg["To"] = CITY
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg.set_content(body)

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.email.port, timeout=10) as client:
                client.sendmail(sender, [CITY], msg.as_bytes(policy=policy.SMTP))

        await asyncio.to_thread(send)
        ix_id = await self.service.find_external(Channel.email, msg["Message-ID"])
        assert ix_id is not None
        return ix_id, msg["Message-ID"]

    async def connect(self, agent_id: str, ix_id: str) -> None:
        """The dispatcher offers `ix_id` to the (only ready) agent, who accepts."""
        if (await self.service.store.redis.hget(Keys().agent(agent_id), "state")
                in (None, "offline")):
            await self.service.agent_login(agent_id, ready=True)
        else:
            await self.service.agent_state(agent_id, "ready")
        await self.dispatcher.match_round()
        ix = await self.service.store.interaction(ix_id)
        assert ix["state"] == "offered" and ix["agent"] == agent_id, ix
        await self.service.accept(agent_id, ix_id)
        await self.service.agent_state(agent_id, "not_ready", "break"
                                       if "break" in self.service.cfg.reason_codes else "rona")

    def mails_to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.sink.messages if m["To"] == address]


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


@pytest.fixture
async def city(redis: aioredis.Redis, cfg: CitylineConfig,
               tmp_path: Path) -> AsyncIterator[City]:
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    gateway = Gateway([])
    gw_app = web.Application()
    gw_app.router.add_post("/send", gateway.handle)
    gw_server = test_utils.TestServer(gw_app, host="127.0.0.1", port=0)
    await gw_server.start_server()
    sms_cfg = SmsConfig(enabled=True, gateway_url=str(gw_server.make_url("/send")),
                        sender="+48221234567",
                        retry={"attempts": 4, "backoff_s": 0.05, "backoff_max_s": 1.0})
    sms = SmsAdapter(service, sms_cfg, env=ENV, tick_s=0.05)
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                     extra_setup=[sms.setup_routes])
    sms_client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
    await sms_client.start_server()
    sink = Sink()
    smarthost = await serve_sink(sink)
    email_cfg = EmailConfig.model_validate({
        **cfg.channels.email.model_dump(), "port": 0,
        "smarthost": {"host": "127.0.0.1", "port": sink.port, "timeout_s": 5},
        "retry": {"attempts": 20, "backoff_s": 0.05, "backoff_max_s": 0.2}})
    await sms.start()
    try:
        async with EmailAdapter(service, email_cfg, tmp_path, env={},
                                outbox_tick_s=0.05) as email, \
                api_harness(redis, cfg, service) as api:
            yield City(service, api, sms_client, sms, gateway, email, sink,
                       Dispatcher(store, cfg))
    finally:
        await sms.stop()
        await sms_client.close()
        smarthost.close()
        await smarthost.wait_closed()
        await gw_server.close()


async def staff(city: City) -> tuple[Session, Session, Session]:
    agent = await city.api.session(FIRST_LINE, "agent", FIRST_LINE)
    member = await city.api.session(MEMBER, "agent", MEMBER)
    boss = await city.api.session("kierownik", "supervisor")
    return agent, member, boss


async def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_sms_and_email_reports_one_case_both_told(city: City) -> None:
    agent, member, _boss = await staff(city)
    # (a) the first report, by SMS; the agent holding it makes a case of it
    sms_ix = await city.text("m1", "600 100 200", "Dziura w jezdni, ul. Długa 5")
    await city.connect(FIRST_LINE, sms_ix)
    made = await ok(await agent.post(f"/interactions/{sms_ix}/case", {
        "category": "road_damage", "description": "Głęboka dziura w prawym pasie",
        "address": "ul. Długa 5", "lat": LAT, "lon": LON}), 201)
    number = made["case"]["number"]
    assert made["case"]["unit"] == "roads" and made["case"]["status"] == "open"
    assert made["duplicates"] == []
    assert (await city.api.ix(sms_ix))["case"] == number
    await city.service.complete(FIRST_LINE, sms_ix)
    # (b) the same pothole, by e-mail, 20 m away: shown as a likely duplicate, and linked
    mail_ix, message_id = await city.mail(MAIL, "Dziura na Długiej", "Ogromna dziura!")
    await city.connect(FIRST_LINE, mail_ix)
    found = await ok(await agent.get("/cases/duplicates", params={
        "category": "road_damage", "lat": str(LAT + 0.00018), "lon": str(LON)}))
    [dup] = found["duplicates"]
    assert dup["number"] == number and 15 < dup["distance_m"] < 25
    linked = await ok(await agent.post(f"/interactions/{mail_ix}/case/link",
                                       {"case_number": number}))
    assert linked["linked"] and linked["case"]["reports"] == 2
    # the unit's member sees it in the unit's queue and works it
    queue = await ok(await member.get("/units/roads/cases"))
    assert [c["number"] for c in queue["cases"]] == [number]
    await ok(await member.put(f"/cases/{number}/status", {"status": "in_progress",
                                                          "note": "ekipa w drodze"}))
    done = await ok(await member.put(f"/cases/{number}/status", {
        "status": "completed", "note": "asfalt na zimno, do poprawki wiosną",
        "public_note": "Ubytek załatano."}))
    assert done["case"]["status"] == "completed"
    assert sorted(n["via"] for n in done["notices"]) == ["email", "sms"]
    assert {n["result"] for n in done["notices"]} == {"queued"}
    # each notice is recorded on the interaction the resident used, where the agent sees it
    item = f"case:{number}:completed"

    async def sent(ix_id: str) -> bool:
        return (await city.service.deliveries(ix_id)).get(item, {}).get("status") == "sent"

    assert await eventually(lambda: sent(sms_ix)) and await eventually(lambda: sent(mail_ix))
    # the SMS resident got two texts through the gateway: the number, then the outcome ...
    texts = [t for t in city.gateway.texts_to(PHONE) if number in t]
    assert [t for t in texts if t.startswith(f"Zgłoszenie przyjęto pod numerem {number}")]
    [text] = [t for t in texts if "załatwione" in t]
    assert len(texts) == 2 and "Ubytek załatano." in text and "asfalt" not in text
    # ... the e-mail resident, linked, two mails through the smarthost, in their own thread
    mails = [m for m in city.mails_to(MAIL) if number in m["Subject"]]
    [linked_mail] = [m for m in mails if "przyjęte" in m["Subject"]]
    [mail] = [m for m in mails if "załatwione" in m["Subject"]]
    assert len(mails) == 2
    assert mail["In-Reply-To"] == linked_mail["In-Reply-To"] == message_id
    assert "Ubytek załatano." in mail.get_content() and "asfalt" not in mail.get_content()
    assert await ok(await member.get("/units/roads/cases")) == {"unit": "roads", "cases": []}
    # asked again (another process, a retry): nobody is told twice
    again = await city.service.cases.resend_notices(done["case"] | {"id": done["case"]["id"]},
                                                    "completed", "")
    assert {n["result"] for n in again} == {"already"}


async def test_email_report_rejected_resident_told(city: City) -> None:
    agent, member, _boss = await staff(city)
    mail_ix, message_id = await city.mail(MAIL, "Lampa nie świeci", "Przy ul. Krótkiej 3")
    await city.connect(FIRST_LINE, mail_ix)
    made = await ok(await agent.post(f"/interactions/{mail_ix}/case", {
        "category": "street_lighting", "address": "ul. Krótka 3"}), 201)
    number = made["case"]["number"]
    assert made["case"]["description"] == "Przy ul. Krótkiej 3"  # from the mail
    resp = await member.put(f"/cases/{number}/status", {
        "status": "rejected", "public_note": "Latarnia należy do zarządcy osiedla."})
    assert (await ok(resp))["case"]["status"] == "rejected"
    mails = await eventually(lambda: [m for m in city.mails_to(MAIL)
                                      if number in m["Subject"] and "odrzucone" in m["Subject"]])
    assert mails[0]["In-Reply-To"] == message_id
    assert "odrzucone" in mails[0].get_content() and "zarządcy" in mails[0].get_content()
    # the number came first, when the case was made (notify_on's default has `open`)
    [opened] = [m for m in city.mails_to(MAIL) if "przyjęte" in m["Subject"]]
    assert number in opened.get_content()


async def test_permissions(city: City) -> None:
    agent, member, boss = await staff(city)
    sms_ix = await city.text("m2", PHONE, "Dziura")
    # an agent not holding the interaction may not make a case of it
    resp = await agent.post(f"/interactions/{sms_ix}/case", {"category": "road_damage"})
    assert resp.status == 403
    made = await ok(await boss.post(f"/interactions/{sms_ix}/case",
                                    {"category": "road_damage"}), 201)
    number = made["case"]["number"]
    stream = await city.api.stream_len()
    # an agent outside the unit: 403 on status, unit, the unit's queue and the case itself
    for resp in (await agent.put(f"/cases/{number}/status", {"status": "in_progress"}),
                 await agent.put(f"/cases/{number}/unit", {"unit": "sanitation"}),
                 await agent.get("/units/roads/cases"),
                 await agent.get(f"/cases/{number}")):
        assert resp.status == 403, await resp.text()
        assert (await error_of(resp))["code"] == "forbidden"
    assert await city.api.stream_len() == stream
    assert (await city.api.ix(sms_ix))["case"] == number
    # a wrong transition: 409 invalid_state; an unknown case: 404
    resp = await member.put(f"/cases/{number}/status", {"status": "completed"})
    assert resp.status == 409 and (await error_of(resp))["code"] == "invalid_state"
    resp = await member.get("/cases/Z-2026-999999")
    assert resp.status == 404
    resp = await member.get("/cases/duplicates", params={"category": "road_damage"})
    assert resp.status == 422
    # the member reads it; the supervisor hands it on
    assert (await ok(await member.get(f"/cases/{number}")))["number"] == number
    moved = await ok(await boss.put(f"/cases/{number}/unit", {"unit": "sanitation"}))
    assert moved["unit"] == "sanitation"
    assert (await member.put(f"/cases/{number}/status", {"status": "in_progress"})).status == 403


async def test_public_views_show_nothing_personal(city: City) -> None:
    _agent, member, boss = await staff(city)
    sms_ix = await city.text("m3", PHONE, "Jan Kowalski, tel. 600100200: dziura przy szkole")
    await city.service.store.redis.hset(Keys().ix(sms_ix), "resident_name", "Jan Kowalski")
    made = await ok(await boss.post(f"/interactions/{sms_ix}/case", {
        "category": "road_damage", "address": "ul. Szkolna 1", "lat": 51.759234,
        "lon": 19.456789, "contact": "jan.kowalski@example.org",
        "note": "dzwonił Jan Kowalski"}), 201)
    number = made["case"]["number"]
    await ok(await member.put(f"/cases/{number}/status", {
        "status": "in_progress", "note": "Kowalski prosi o telefon 600100200",
        "public_note": "Zlecono naprawę."}))
    client = await city.api.client()
    page = await client.get(f"/cases/{number}?lang=en")
    assert page.status == 200
    html = await page.text()
    data = await ok(await client.get(f"/api/v1/public/cases/{number}"))
    assert data["number"] == number and data["status"] == "in_progress"
    assert data["lat"] == 51.759 and data["lon"] == 19.457  # ~100 m
    assert [h["note"] for h in data["history"]] == ["", "Zlecono naprawę."]
    assert number in html and "Zlecono naprawę." in html and "ul. Szkolna 1" in html
    assert "in progress" in html
    for text in (html, json.dumps(data, ensure_ascii=False)):
        for secret in ("Kowalski", "600100200", "600 100 200", "jan.kowalski", "@",
                       "example.org", "szkole", "51.759234", "19.456789", sms_ix):
            assert secret not in text, secret
    assert (await client.get("/cases/Z-2026-999999")).status == 404
    assert (await client.get("/cases/<script>")).status == 404
    assert (await client.get("/api/v1/public/cases/Z-2026-999999")).status == 404
