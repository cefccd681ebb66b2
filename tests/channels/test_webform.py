"""The web form channel end to end: the real aiohttp app with the form routes on a loopback
server, the real Redis, the interactions it queues read back from the store, and an agent's
answer followed into the e-mail or SMS outbox (drained by a fake transport) and onto the
status page."""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import FormData, test_utils

from channels.webform.adapter import KEY_META, WebformAdapter
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_email import EmailConfig
from router.config_sms import SmsConfig
from router.config_webform import WebformConfig
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.http.app import AppContext, create_app
from router.models import Event, IntakeRequest
from router.outbox import OutboundJob, Outbox, RetryPolicy
from router.service import RoutingService

ENV = {"CITYLINE_WEBFORM_CSRF_SECRET": "form-s3cret"}
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
REF = re.compile(r'class="ref">([0-9]{4}-[0-9]{6})<')
LINK = re.compile(r'href="(/status/[0-9]{4}-[0-9]{6}\?key=[^"]+)"')
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
SCRIPT = b"#!/bin/sh\nrm -rf /\n" + b"x" * 100
EVIL = '<script>alert("x")</script> dziura na Długiej'


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})  # the packaged city: a `webform` queue, pl/en/uk


AGENT = "piotr.kowalski"  # general and road_damage: takes the form's default request


@dataclass
class Form:
    client: test_utils.TestClient
    adapter: WebformAdapter
    service: RoutingService
    redis: aioredis.Redis
    data_dir: Path

    async def token(self) -> str:
        resp = await self.client.get("/form?lang=pl")
        assert resp.status == 200
        match = TOKEN.search(await resp.text())
        assert match
        return match.group(1)

    async def post(self, token: str | None, photo: tuple[bytes, str] | None = None,
                   **fields: str) -> Any:
        data = FormData()
        if token is not None:
            data.add_field("csrf_token", token)
        values = {"category": "road_damage", "description": "Dziura w jezdni",
                  "address": "ul. Długa 5", "lat": "52.23", "lon": "21.01",
                  "contact": "Jan.Kowalski@Example.PL"} | fields
        for name, value in values.items():
            data.add_field(name, value)
        if photo is not None:
            data.add_field("photo", photo[0], filename="zdjecie.png", content_type=photo[1])
        return await self.client.post("/form", data=data)

    async def submit(self, **fields: str) -> tuple[str, str]:
        """Send the HTML form; (reference, the private status link of the thank-you page)."""
        resp = await self.post(await self.token(), **fields)
        assert resp.status == 200, await resp.text()
        page = await resp.text()
        ref, link = REF.search(page), LINK.search(page)
        assert ref and link
        return ref.group(1), html.unescape(link.group(1))

    async def stored(self) -> int:
        return int(await self.redis.hlen(Keys().ref_index))

    async def connect(self, ix_id: str, agent: str = AGENT) -> None:
        """The agent logs in ready, the dispatcher offers them the request, they accept."""
        await self.service.agent_login(agent, ready=True)
        assert await Dispatcher(self.service.store, self.service.cfg).match_round() == 1
        assert [o["id"] for o in await self.service.offers(agent)] == [ix_id]
        await self.service.accept(agent, ix_id)

    async def agent_says(self, ix_id: str, text: str, agent: str = AGENT) -> int:
        """The agent writes; the real event feed of the webform channel hands it to the
        adapter. Returns the message's index in the conversation."""
        feed = EventFeed(self.redis, Keys(), self.adapter, "test")
        await feed.ensure_group()
        index = await self.service.agent_message(agent, ix_id, text)
        while await feed.read_once(block_ms=50):
            pass
        return index


FormFactory = Callable[..., Any]


@pytest.fixture
async def make_form(redis: aioredis.Redis, cfg: CitylineConfig,
                    tmp_path: Path) -> AsyncIterator[FormFactory]:
    clients: list[test_utils.TestClient] = []

    async def make(clock: Callable[[], float] = time.time, **overrides: Any) -> Form:
        store = RoutingStore(redis)
        await store.load_scripts()
        service = RoutingService(store, cfg)
        adapter = WebformAdapter(service, cfg, WebformConfig(**overrides), tmp_path, env=ENV,
                                 clock=clock)
        app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                         extra_setup=[adapter.setup_routes])
        client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return Form(client, adapter, service, redis, tmp_path)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def form(make_form: FormFactory) -> Form:
    return await make_form()


def enable_email(cfg: CitylineConfig) -> None:
    cfg.channels.email = EmailConfig(enabled=True, domains=["miasto.example.pl"])


def enable_sms(cfg: CitylineConfig) -> None:
    cfg.channels.sms = SmsConfig(enabled=True)


async def drain(service: RoutingService, channel: str) -> list[OutboundJob]:
    """Run the channel's outbox once with a transport that only records what it sends."""
    sent: list[OutboundJob] = []

    async def fake_send(job: OutboundJob) -> None:
        sent.append(job)

    await Outbox(service.channel_state(channel), fake_send, RetryPolicy()).run_once()
    return sent


async def test_form_lists_categories_in_the_residents_language(form: Form) -> None:
    pl = await (await form.client.get("/form?lang=pl")).text()
    uk = await (await form.client.get("/form?lang=uk")).text()
    assert 'value="road_damage">Dziury i uszkodzenia jezdni<' in pl
    assert 'value="driving_licences">Prawa jazdy<' in pl
    assert 'value="road_damage">Ями та пошкодження дороги<' in uk
    assert '<html lang="uk">' in uk
    # only information and intervention topics: no languages, no first/second line
    assert "lang_en" not in pl and 'value="general"' not in pl
    for name in ("description", "address", "lat", "lon", "photo", "contact", "phone"):
        assert f'name="{name}"' in pl
    assert TOKEN.search(pl)


async def test_consent_checkbox_is_unchecked_and_translated(form: Form) -> None:
    texts = {"pl": "Zapamiętaj mnie, aby urzędnicy widzieli moje wcześniejsze kontakty z urzędem",
             "en": "Remember me so agents can see my earlier contacts with the city",
             "uk": "Запам’ятати мене, щоб працівники бачили мої попередні звернення до міста"}
    for lang, text in texts.items():
        page = await (await form.client.get(f"/form?lang={lang}")).text()
        box = re.search(r'<input name="consent"[^>]*>', page)
        assert box and 'type="checkbox"' in box.group(0) and "checked" not in box.group(0)
        assert html.escape(text) in page


async def test_consent_and_second_contact_are_passed_to_the_router(form: Form) -> None:
    seen: list[IntakeRequest] = []
    create = form.service.create_interaction

    async def spy(req: IntakeRequest) -> Any:
        seen.append(req)
        return await create(req)

    form.service.create_interaction = spy  # type: ignore[method-assign]
    await form.submit()  # the box left unchecked, no phone
    await form.submit(consent="yes", phone="601 234 567")
    resp = await form.client.post("/api/v1/requests", json={
        "category": "road_damage", "description": "x", "contact": "a@b.pl", "consent": True,
        "phone": "+48 601 234 568"})
    assert resp.status == 201, await resp.text()
    resp = await form.client.post("/api/v1/requests", json={
        "category": "road_damage", "description": "x", "contact": "+48601234569",
        "phone": "601 234 569"})  # the same number twice is one contact
    assert resp.status == 201
    assert [(r.consent, r.contacts) for r in seen] == [
        (False, []), (True, ["+48601234567"]), (True, ["+48601234568"]), (False, [])]
    assert seen[1].resident == "jan.kowalski@example.pl"
    assert seen[1].meta["phone"] == "+48601234567"


async def test_json_consent_must_be_a_boolean(form: Form) -> None:
    resp = await form.client.post("/api/v1/requests", json={
        "category": "road_damage", "description": "x", "contact": "a@b.pl",
        "consent": "perhaps"})
    assert resp.status == 422
    resp = await form.client.post("/api/v1/requests", json={
        "category": "road_damage", "description": "x", "contact": "a@b.pl",
        "phone": "a@b.pl"})
    assert resp.status == 422
    assert await form.stored() == 0


async def test_valid_form_queues_an_interaction(form: Form) -> None:
    resp = await form.post(await form.token(), photo=(PNG, "image/png"), description=EVIL)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    ref = REF.search(page).group(1)  # type: ignore[union-attr]
    link = LINK.search(page).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(rf"/status/{ref}\?key=[A-Za-z0-9_-]{{24}}&amp;lang=pl", link)
    ix = await form.service.store.by_ref(ref)
    assert ix["channel"] == "webform" and ix["queue"] == "webform" and ix["state"] == "queued"
    assert ix["topic"] == "road_damage"
    assert ix["body"] == EVIL  # stored as the text it is
    assert ix["resident"] == "jan.kowalski@example.pl"
    meta = json.loads(ix["meta"])
    assert meta["address"] == "ul. Długa 5"
    assert (meta["lat"], meta["lon"]) == (52.23, 21.01)
    assert meta["contact"] == "jan.kowalski@example.pl"
    assert re.fullmatch(r"photo-[0-9a-f]{24}\.png", meta["photo"])
    # only a digest of the status key is kept: the data alone opens no status page
    key = html.unescape(link).split("key=")[1].split("&")[0]
    assert re.fullmatch(r"[0-9a-f]{64}", meta[KEY_META]) and key not in ix["meta"]
    saved = form.data_dir / "uploads" / ix["id"] / meta["photo"]
    assert saved.read_bytes() == PNG
    assert not list((form.data_dir / "uploads" / ".incoming").iterdir())


async def test_the_same_form_sent_twice_is_one_request(form: Form) -> None:
    token = await form.token()
    first = await (await form.post(token)).text()
    second = await (await form.post(token)).text()
    assert REF.search(first).group(1) == REF.search(second).group(1)  # type: ignore[union-attr]
    # ... with the same private link, which opens it
    link = LINK.search(first).group(1)  # type: ignore[union-attr]
    assert link == LINK.search(second).group(1)  # type: ignore[union-attr]
    page = await (await form.client.get(html.unescape(link))).text()
    assert "Dziury i uszkodzenia jezdni" in page
    assert await form.stored() == 1


@pytest.mark.parametrize("kind", ["missing", "forged", "expired"])
async def test_bad_csrf_token_is_refused(form: Form, kind: str) -> None:
    good = await form.token()
    token = {
        "missing": None,
        "forged": good[:-4] + ("0000" if not good.endswith("0000") else "1111"),
        "expired": form.adapter.csrf.issue(now=time.time() - 3 * 3600),
    }[kind]
    resp = await form.post(token)
    assert resp.status == 403
    assert "text/html" in resp.content_type
    assert await form.stored() == 0


async def test_json_request(form: Form) -> None:
    resp = await form.client.post("/api/v1/requests", json={
        "category": "local_taxes", "description": "Jak zapłacić podatek?",
        "contact": "601 234 567", "language": "en"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == {"ref", "status_url", "likely_duplicates"}
    assert body["likely_duplicates"] == []
    assert re.fullmatch(r"[0-9]{4}-[0-9]{6}", body["ref"])
    assert re.fullmatch(rf"/status/{body['ref']}\?key=[A-Za-z0-9_-]{{24}}", body["status_url"])
    ix = await form.service.store.by_ref(body["ref"])
    assert ix["queue"] == "webform" and ix["topic"] == "local_taxes"
    assert ix["language"] == "en" and ix["resident"] == "+48601234567"
    assert "Local taxes and fees" in await (await form.client.get(body["status_url"])).text()


@pytest.mark.parametrize(("extra", "code"), [
    ({"admin": True}, "invalid_request"),
    ({"lat": 91, "lon": 21}, "invalid_request"),
    ({"lat": 52, "lon": -181}, "invalid_request"),
    ({"category": "lang_en"}, "invalid_request"),
    ({"contact": "not a contact"}, "invalid_request"),
])
async def test_json_bad_input_is_422(form: Form, extra: dict[str, Any], code: str) -> None:
    payload = {"category": "road_damage", "description": "x", "contact": "a@b.pl"} | extra
    resp = await form.client.post("/api/v1/requests", json=payload)
    assert resp.status == 422
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert await form.stored() == 0


async def test_out_of_range_coordinates_in_the_form(form: Form) -> None:
    resp = await form.post(await form.token(), lat="95", lon="21")
    assert resp.status == 422
    assert await form.stored() == 0


async def test_script_posing_as_png_is_refused(form: Form) -> None:
    resp = await form.post(await form.token(), photo=(SCRIPT, "image/png"))
    assert resp.status == 422
    assert await form.stored() == 0
    assert not (form.data_dir / "uploads").exists()


async def test_oversized_photo_is_413(make_form: FormFactory) -> None:
    form = await make_form(max_photo_bytes=2048)
    resp = await form.post(await form.token(), photo=(PNG + b"\x00" * 4096, "image/png"))
    assert resp.status == 413
    assert await form.stored() == 0


async def test_rate_limit_per_ip(make_form: FormFactory) -> None:
    form = await make_form(rate_limit_per_ip=2, clock=lambda: 6000.0)
    payload = {"category": "road_damage", "description": "x", "contact": "a@b.pl"}
    for _ in range(2):
        assert (await form.client.post("/api/v1/requests", json=payload)).status == 201
    resp = await form.client.post("/api/v1/requests", json=payload)
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "too_many_requests"
    assert (await form.post(await form.token())).status == 429
    assert await form.stored() == 2


async def test_rate_limit_is_shared_by_every_process(make_form: FormFactory) -> None:
    """Two adapters (two cityline processes behind one balancer) count one limit."""
    now = [6000.0]
    one = await make_form(rate_limit_per_ip=3, clock=lambda: now[0])
    two = await make_form(rate_limit_per_ip=3, clock=lambda: now[0])
    payload = {"category": "road_damage", "description": "x", "contact": "a@b.pl"}
    assert (await one.client.post("/api/v1/requests", json=payload)).status == 201
    assert (await two.client.post("/api/v1/requests", json=payload)).status == 201
    assert (await one.client.post("/api/v1/requests", json=payload)).status == 201
    assert (await two.client.post("/api/v1/requests", json=payload)).status == 429
    assert (await one.client.post("/api/v1/requests", json=payload)).status == 429
    now[0] += 60  # the next minute
    assert (await two.client.post("/api/v1/requests", json=payload)).status == 201
    assert await one.stored() == 4


# --- the status page --------------------------------------------------------------------------


async def test_status_page_without_the_key_shows_only_the_state(form: Form) -> None:
    resp = await form.post(await form.token(), description=EVIL, contact="+48 601 234 567")
    ref = REF.search(await resp.text()).group(1)  # type: ignore[union-attr]
    for url in (f"/status/{ref}", f"/status/{ref}?key=" + "A" * 24, f"/status/{ref}?key=x"):
        page = await (await form.client.get(url)).text()
        assert ref in page
        assert "przyjęte, czeka na obsługę" in page
        for private in ("<script>", "&lt;script&gt;", "alert", "Długiej", "601", "ul. Długa",
                        "Dziury i uszkodzenia jezdni", "Odpowiedzi</h2>"):
            assert private not in page
    en = await (await form.client.get(f"/status/{ref}?lang=en")).text()
    assert "received, waiting" in en and "Potholes" not in en


async def test_status_page_with_the_key_shows_no_personal_data(form: Form) -> None:
    ref, link = await form.submit(description=EVIL, contact="+48 601 234 567")
    resp = await form.client.get(link)
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    assert ref in page and "Dziury i uszkodzenia jezdni" in page
    assert "Nie ma jeszcze odpowiedzi." in page
    for private in ("<script>", "&lt;script&gt;", "alert", "Długiej", "601", "ul. Długa"):
        assert private not in page


async def test_status_of_unknown_ref_is_404(form: Form) -> None:
    assert (await form.client.get("/status/2026-999999")).status == 404
    resp = await form.client.get("/status/%3Cscript%3E")
    assert resp.status == 404
    assert "<script>" not in await resp.text()


# --- the agent's answer -----------------------------------------------------------------------


async def test_answer_to_an_email_contact_goes_to_the_email_outbox(
        form: Form, cfg: CitylineConfig) -> None:
    enable_email(cfg)
    ref, link = await form.submit()
    ix = await form.service.store.by_ref(ref)
    await form.connect(ix["id"])
    answer = "Dziurę załatamy w przyszłym tygodniu.\n<script>alert(1)</script>"
    index = await form.agent_says(ix["id"], answer)
    record = (await form.service.deliveries(ix["id"]))[str(index)]
    assert record["status"] == "queued" and record["channel"] == "email"
    assert record["to"] == "jan.kowalski@example.pl"
    sent = await drain(form.service, "email")
    assert len(sent) == 1
    job = sent[0]
    assert (job.ix_id, job.item, job.to, job.text) == (
        ix["id"], str(index), "jan.kowalski@example.pl", answer)
    assert job.payload == {"ref": ref, "language": "pl",
                           "subject": f"[{ref}] Odpowiedź na zgłoszenie: "
                                      "Dziury i uszkodzenia jezdni"}
    assert (await form.service.deliveries(ix["id"]))[str(index)]["status"] == "sent"
    # the status page: the answer as text, never markup
    page = await (await form.client.get(link)).text()
    assert "w trakcie obsługi" in page
    assert html.escape(answer) in page
    assert "<script>alert(1)</script>" not in page
    assert "alert(1)" not in await (await form.client.get(f"/status/{ref}")).text()


async def test_answer_events_delivered_again_queue_one_message(
        form: Form, cfg: CitylineConfig) -> None:
    enable_email(cfg)
    ref, _ = await form.submit()
    ix_id = (await form.service.store.by_ref(ref))["id"]
    await form.connect(ix_id)
    feed = EventFeed(form.redis, Keys(), form.adapter, "test")
    await feed.ensure_group()
    await form.service.agent_message(AGENT, ix_id, "Odpowiedź")
    await feed.read_once(block_ms=50)
    entries = await form.redis.xrange(Keys().events)
    message = [e for e in entries if e[1].get("ev") == "MESSAGE"]
    assert len(message) == 1
    event = Event.from_stream(message[0][0], message[0][1])
    interaction = await form.service.store.interaction(ix_id)
    await form.adapter.handle_event(event, interaction)  # at least once: again
    sent = await drain(form.service, "email")
    assert [job.text for job in sent] == ["Odpowiedź"]
    await form.adapter.handle_event(event, interaction)  # ... even after it was sent
    assert await drain(form.service, "email") == []
    assert (await form.service.deliveries(ix_id))[sent[0].item]["status"] == "sent"


async def test_answer_to_a_phone_contact_goes_to_the_sms_outbox(
        form: Form, cfg: CitylineConfig) -> None:
    enable_sms(cfg)
    resp = await form.client.post("/api/v1/requests", json={
        "category": "residence_registration", "description": "Jak się zameldować?",
        "contact": "601 234 567", "language": "uk"})
    assert resp.status == 201
    body = await resp.json()
    ix_id = (await form.service.store.by_ref(body["ref"]))["id"]
    agent = "oksana.melnyk"  # lang_uk and residence_registration
    await form.connect(ix_id, agent)
    first = await form.agent_says(ix_id, "Потрібен паспорт.", agent)
    second = await form.agent_says(ix_id, "Офіс відкритий з 8:00.", agent)
    sent = await drain(form.service, "sms")
    assert [(j.item, j.to, j.text, j.payload) for j in sent] == [
        (str(first), "+48601234567", "Потрібен паспорт.", {"ref": body["ref"], "language": "uk"}),
        (str(second), "+48601234567", "Офіс відкритий з 8:00.",
         {"ref": body["ref"], "language": "uk"})]
    assert await drain(form.service, "email") == []
    # the status page in the resident's language, the answers oldest first, then closed
    page = await (await form.client.get(body["status_url"])).text()
    assert '<html lang="uk">' in page and "опрацьовується" in page
    assert page.index("Потрібен паспорт.") < page.index("Офіс відкритий з 8:00.")
    assert await form.service.complete(agent, ix_id) == "closed"  # no wrap-up on this queue
    page = await (await form.client.get(body["status_url"])).text()
    assert "завершене" in page and "Потрібен паспорт." in page
    # without the key: the city's language, whatever the resident's was
    public = await (await form.client.get(f"/status/{body['ref']}")).text()
    assert '<html lang="pl">' in public and "zakończone" in public
    assert "паспорт" not in public


@pytest.mark.parametrize(("channel", "contact", "error"), [
    ("email", "jan@example.pl", "the e-mail channel is not enabled"),
    ("sms", "+48 601 234 567", "the SMS channel is not enabled"),
])
async def test_answer_through_a_channel_not_enabled_is_a_failed_delivery(
        form: Form, cfg: CitylineConfig, caplog: pytest.LogCaptureFixture,
        channel: str, contact: str, error: str) -> None:
    cfg.channels.email.enabled = cfg.channels.sms.enabled = False  # the city runs only the form
    ref, link = await form.submit(contact=contact)
    ix_id = (await form.service.store.by_ref(ref))["id"]
    await form.connect(ix_id)
    with caplog.at_level(logging.WARNING, logger="channels.webform.adapter"):
        index = await form.agent_says(ix_id, "Załatwione.")
    record = (await form.service.deliveries(ix_id))[str(index)]
    assert record["status"] == "failed" and record["error"] == error
    assert record["channel"] == "webform" and record["via"] == channel
    assert any(error in r.getMessage() for r in caplog.records)
    assert await drain(form.service, channel) == []
    assert "Załatwione." in await (await form.client.get(link)).text()


async def test_a_report_near_an_open_case_is_told_it_may_be_a_duplicate(form: Form) -> None:
    """A pothole reported 20 m from an open case of the same category: the answer names that
    case (number, status, address: what its public page shows); far away or another category,
    nothing."""
    from router.auth import Role
    from router.cases import Actor, CaseInput

    made = await form.service.cases.create_standalone(
        CaseInput(category="road_damage", description="Dziura", address="ul. Długa 5",
                  lat=52.2297, lon=21.0122),
        language="pl", actor=Actor("maria", Role.supervisor))
    number = made.number
    near = {"category": "road_damage", "description": "Głęboka dziura <b>tu</b>",
            "contact": "jan@example.pl", "lat": 52.22985, "lon": 21.0122}
    body = await (await form.client.post("/api/v1/requests", json=near)).json()
    assert body["likely_duplicates"] == [
        {"number": number, "status": "open", "address": "ul. Długa 5"}]
    far = {**near, "lat": 52.2400}
    assert (await (await form.client.post("/api/v1/requests", json=far)).json())[
        "likely_duplicates"] == []
    other = {**near, "category": "street_lighting"}
    assert (await (await form.client.post("/api/v1/requests", json=other)).json())[
        "likely_duplicates"] == []



async def test_the_thank_you_page_links_a_likely_duplicate(form: Form) -> None:
    from router.auth import Role
    from router.cases import Actor, CaseInput

    made = await form.service.cases.create_standalone(
        CaseInput(category="road_damage", description="Dziura", address="ul. <i>Długa</i> 5",
                  lat=52.2297, lon=21.0122),
        language="pl", actor=Actor("maria", Role.supervisor))
    resp = await form.post(await form.token(), category="road_damage", description="Dziura",
                           contact="jan@example.pl", lat="52.22985", lon="21.0122")
    page = await resp.text()
    assert resp.status == 200 and f'href="/cases/{made.number}?lang=pl"' in page
    assert "ul. &lt;i&gt;Długa&lt;/i&gt; 5" in page  # the address is text, never markup
