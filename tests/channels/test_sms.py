"""The SMS channel end to end: the real aiohttp app with the SMS webhooks on a loopback server,
the real Redis, and a fake SMS gateway (a small aiohttp server of the test) for replies."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils, web

from channels.sms.adapter import (
    GENERIC_PATH,
    STATUS_PATH,
    TWILIO_PATH,
    TWILIO_STATUS_PATH,
    SmsAdapter,
)
from channels.sms.inbound import keyword, normalise_number, twilio_signature
from channels.sms.outbound import split_segments
from channels.sms.webhook_secret import SECRET_FILE
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_sms import SmsConfig
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.http.app import AppContext, create_app
from router.outbox import OutboundJob, submit
from router.service import RoutingService
from tests.routing_fixtures import eventually

SECRET = "generic-s3cret"
TWILIO_TOKEN = "twilio-t0ken"
GATEWAY_TOKEN = "gateway-t0ken"
PUBLIC_URL = "https://sms.city.example"
ENV = {
    "CITYLINE_SMS_WEBHOOK_SECRET": SECRET,
    "CITYLINE_SMS_TWILIO_TOKEN": TWILIO_TOKEN,
    "CITYLINE_SMS_GATEWAY_TOKEN": GATEWAY_TOKEN,
}
AGENT = "anna.nowak"


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})  # the packaged city: it has an `sms` queue


@dataclass
class FakeGateway:
    """Records every POST; answers 503 to the first `fail` of them, `refuse` (a status) to
    every one if set; `before_answer(body, id)` runs after a segment is taken and before the
    answer (a gateway that reports delivery at once)."""

    fail: int = 0
    refuse: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    before_answer: Callable[[dict[str, Any], str], Awaitable[None]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(asyncio.get_running_loop().time())
        self.auth.append(request.headers.get("Authorization", ""))
        if self.refuse:
            return web.json_response({"error": "no such number"}, status=self.refuse)
        if self.fail > 0:
            self.fail -= 1
            return web.json_response({"error": "try later"}, status=503)
        body = await request.json()
        self.requests.append(body)
        gw_id = f"gw-{len(self.requests)}"
        if self.before_answer is not None:
            await self.before_answer(body, gw_id)
        return web.json_response({"id": gw_id})


@dataclass
class Sms:
    client: test_utils.TestClient
    adapter: SmsAdapter
    gateway: FakeGateway
    service: RoutingService
    redis: aioredis.Redis
    cfg: SmsConfig

    async def generic(self, payload: Any, *, secret: str | None = SECRET,
                      raw: bytes | None = None, path: str = GENERIC_PATH) -> Any:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Cityline-Signature"] = f"sha256={sig}"
        return await self.client.post(path, data=body, headers=headers)

    async def status(self, payload: Any, *, secret: str | None = SECRET) -> Any:
        """A delivery receipt on the generic status webhook."""
        return await self.generic(payload, secret=secret, path=STATUS_PATH)

    async def twilio(self, form: dict[str, str], *, token: str | None = TWILIO_TOKEN,
                     path: str = TWILIO_PATH) -> Any:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if token is not None:
            headers["X-Twilio-Signature"] = twilio_signature(
                token, PUBLIC_URL + path, form.items())
        return await self.client.post(path, data=urlencode(form), headers=headers)

    def another_adapter(self, **changes: Any) -> SmsAdapter:
        """Another adapter instance on the same Redis and gateway (another process, or this
        one after a restart), its config changed by `changes`."""
        cfg = SmsConfig.model_validate({**self.cfg.model_dump(), **changes})
        return SmsAdapter(self.service, cfg, env=ENV, tick_s=0.05)

    async def deliveries(self, ix_id: str) -> dict[str, dict[str, Any]]:
        return await self.service.deliveries(ix_id)

    async def status_is(self, ix_id: str, item: str, want: str) -> dict[str, Any] | None:
        record = (await self.deliveries(ix_id)).get(item, {})
        return record if record.get("status") == want else None

    async def sms_interactions(self) -> list[dict[str, str]]:
        return await self.service.active_interactions("sms")

    async def connect_agent(self, ix_id: str) -> None:
        await self.service.agent_login(AGENT, ready=True)
        assert await Dispatcher(self.service.store, self.service.cfg).match_round() == 1
        await self.service.accept(AGENT, ix_id)


@pytest.fixture
async def sms(redis: aioredis.Redis, cfg: CitylineConfig) -> AsyncIterator[Sms]:
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    gateway = FakeGateway()
    gw_app = web.Application()
    gw_app.router.add_post("/send", gateway.handle)
    gw_server = test_utils.TestServer(gw_app, host="127.0.0.1", port=0)
    await gw_server.start_server()
    sms_cfg = SmsConfig(
        enabled=True, gateway_url=str(gw_server.make_url("/send")), sender="+48221234567",
        public_url=PUBLIC_URL, rate_limit=5, parts_timeout_s=0.3,
        retry={"attempts": 4, "backoff_s": 0.05, "backoff_max_s": 1.0},
    )
    adapter = SmsAdapter(service, sms_cfg, env=ENV, tick_s=0.05)
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                     extra_setup=[adapter.setup_routes])
    client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    await adapter.start()
    try:
        yield Sms(client, adapter, gateway, service, redis, sms_cfg)
    finally:
        await adapter.stop()
        await client.close()
        await gw_server.close()





async def agent_says(sms: Sms, ix_id: str, text: str, handler: Any = None) -> None:
    """The agent writes; the real event feed of the sms channel hands it to the adapter."""
    feed = EventFeed(sms.redis, Keys(), handler or sms.adapter, "test")
    await feed.ensure_group()
    await sms.service.agent_message(AGENT, ix_id, text)
    while await feed.read_once(block_ms=50):
        pass


# --- inbound -------------------------------------------------------------------------------


async def test_signed_json_webhook_queues_an_sms_interaction(sms: Sms) -> None:
    resp = await sms.generic({"id": "m1", "from": "600 100 200", "to": "+48221234567",
                              "text": "Dziura w jezdni na ul. Długiej"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "created"
    ix = await sms.service.store.interaction(body["interaction"])
    assert ix["channel"] == "sms" and ix["queue"] == "sms" and ix["state"] == "queued"
    assert ix["resident"] == "+48600100200"
    assert ix["body"] == "Dziura w jezdni na ul. Długiej"


async def test_twilio_form_signature_checked(sms: Sms, caplog: pytest.LogCaptureFixture) -> None:
    form = {"MessageSid": "SM1", "From": "+48600100201", "To": "+48221234567", "Body": "Hej"}
    assert (await sms.twilio(form, token=None)).status == 401
    assert (await sms.twilio(form, token="not-the-token")).status == 403
    assert await sms.sms_interactions() == []
    assert "refused" in caplog.text
    resp = await sms.twilio(form)
    assert resp.status == 200, await resp.text()
    assert "<Response>" in await resp.text()
    [ix] = await sms.sms_interactions()
    assert ix["resident"] == "+48600100201" and ix["body"] == "Hej"


async def test_generic_signature_checked(sms: Sms) -> None:
    msg = {"id": "m1", "from": "+48600100202", "text": "x"}
    assert (await sms.generic(msg, secret=None)).status == 401
    resp = await sms.generic(msg, secret="wrong")
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "bad_signature"
    assert await sms.sms_interactions() == []
    assert await sms.redis.keys("cl:cs:sms:*") == []


async def test_same_message_id_twice_is_one_interaction(sms: Sms) -> None:
    msg = {"id": "dup-1", "from": "+48600100203", "text": "Pytanie"}
    first = await (await sms.generic(msg)).json()
    again = await (await sms.generic(msg)).json()
    assert again == {"status": "duplicate", "interaction": first["interaction"]}
    assert len(await sms.sms_interactions()) == 1
    assert len(await sms.service.store.messages(first["interaction"])) == 0


async def test_two_messages_within_the_window_are_one_conversation(sms: Sms) -> None:
    a = await (await sms.generic({"id": "t1", "from": "+48600100204", "text": "one"})).json()
    b = await (await sms.generic({"id": "t2", "from": "600100204", "text": "two"})).json()
    assert b == {"status": "joined", "interaction": a["interaction"]}
    [ix] = await sms.sms_interactions()
    assert [m["text"] for m in await sms.service.store.messages(ix["id"])] == ["two"]
    # another number is another conversation
    c = await (await sms.generic({"id": "t3", "from": "+48600100299", "text": "x"})).json()
    assert c["status"] == "created" and c["interaction"] != a["interaction"]


async def test_multi_part_assembled_in_order(sms: Sms) -> None:
    parts = [(3, "end."), (1, "Start, "), (2, "middle, ")]
    answers = []
    for index, text in parts:
        resp = await sms.generic({"id": f"p{index}", "from": "+48600100205", "text": text,
                                  "parts": {"ref": "r1", "index": index, "total": 3}})
        answers.append((await resp.json())["status"])
    assert answers == ["part_stored", "part_stored", "created"]
    [ix] = await sms.sms_interactions()
    assert ix["body"] == "Start, middle, end."


async def test_incomplete_multi_part_taken_after_timeout(sms: Sms) -> None:
    await sms.generic({"id": "q1", "from": "+48600100206", "text": "first ",
                       "parts": {"ref": "r2", "index": 1, "total": 2}})
    [ix] = await eventually(sms.sms_interactions, within_s=3)
    assert ix["body"] == "first […]"


async def test_rate_limit_answers_429(sms: Sms, caplog: pytest.LogCaptureFixture) -> None:
    statuses = []
    for i in range(7):
        resp = await sms.generic({"id": f"f{i}", "from": "+48600100207", "text": f"spam {i}"})
        statuses.append(resp.status)
    assert statuses == [200] * 5 + [429] * 2
    assert "rate limit" in caplog.text
    [ix] = await sms.sms_interactions()
    assert len(await sms.service.store.messages(ix["id"])) == 4  # the first made the interaction


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b'{"id": "x", "from": ', "malformed_json"),
     (b'{"id": "x", "from": "+48600100208", "text": "\xff\xfe"}', "invalid_utf8"),
     (b'{"id": "x", "text": "no sender"}', "invalid_body"),
     (b'{"id": "x", "from": "not a number", "text": "t"}', "invalid_number")],
)
async def test_bad_bodies_answer_400(sms: Sms, caplog: pytest.LogCaptureFixture, raw: bytes,
                                     code: str) -> None:
    with caplog.at_level(logging.WARNING):
        resp = await sms.generic(None, raw=raw)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == code
    assert code in caplog.text
    assert await sms.sms_interactions() == []


# --- outbound ------------------------------------------------------------------------------


async def open_conversation(sms: Sms, msg_id: str, number: str) -> str:
    """A resident writes and an agent takes the conversation; returns its interaction id."""
    created = await (await sms.generic({"id": msg_id, "from": number, "text": "?"})).json()
    await sms.connect_agent(created["interaction"])
    return str(created["interaction"])


async def test_agent_reply_reaches_the_gateway_in_segments(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "o1", "+48600100209")
    reply = "Dzień dobry! " + "Zgłoszenie przyjęte, dziękujemy. " * 5
    await agent_says(sms, ix_id, reply)
    record = await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    assert record["attempts"] == 1 and record["error"] == "" and record["channel"] == "sms"
    assert record["to"] == "+48600100209"
    sent = sms.gateway.requests
    assert len(sent) == len(split_segments(reply, 6)[0]) > 1
    assert "".join(r["text"] for r in sent) == reply
    assert all(len(r["text"]) <= 67 for r in sent)  # Polish letters: UCS-2 parts
    assert {r["to"] for r in sent} == {"+48600100209"}
    assert {r["from"] for r in sent} == {"+48221234567"}
    assert [r["parts"]["index"] for r in sent] == list(range(1, len(sent) + 1))
    assert [r["reference"] for r in sent] == [f"{ix_id}:1:{i}" for i in range(1, len(sent) + 1)]
    assert set(sms.gateway.auth) == {f"Bearer {GATEWAY_TOKEN}"}


async def test_gateway_failures_retried_with_backoff(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "o2", "+48600100210")
    sms.gateway.fail = 2
    await agent_says(sms, ix_id, "Your case is registered.")
    record = await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    assert record["attempts"] == 3 and record["error"] == ""
    t = sms.gateway.times
    assert len(t) == 3
    assert t[1] - t[0] >= 0.05 and t[2] - t[1] >= 0.1  # backoff doubles
    assert [r["text"] for r in sms.gateway.requests] == ["Your case is registered."]
    # the gateway's message id leads back to the message, for its delivery receipt
    state = sms.service.channel_state("sms")
    assert (await state.link("sent", "gw-1"))["ix"] == ix_id


async def test_a_retry_sends_only_the_segments_not_yet_taken(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "o4", "+48600100213")
    reply = "x" * 200  # two GSM-7 segments
    taken: list[str] = []

    async def fail_after_first(body: dict[str, Any], gw_id: str) -> None:
        taken.append(body["text"])
        if len(taken) == 1:
            sms.gateway.fail = 1  # the second segment's first try fails

    sms.gateway.before_answer = fail_after_first
    await agent_says(sms, ix_id, reply)
    record = await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    assert record["attempts"] == 2
    assert "".join(taken) == reply and len(taken) == 2  # the first segment went once


async def test_gateway_refusal_fails_at_once(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "o5", "+48600100214")
    sms.gateway.refuse = 400
    await agent_says(sms, ix_id, "Hello")
    record = await eventually(lambda: sms.status_is(ix_id, "1", "failed"))
    assert record["attempts"] == 1 and "400" in record["error"]
    assert len(sms.gateway.times) == 1


async def test_no_gateway_configured_fails_the_reply(sms: Sms) -> None:
    await sms.adapter.stop()
    adapter = sms.another_adapter(gateway_url="")
    await adapter.start()
    try:
        assert await adapter.reply("ix-none", 1, "+48600100215", "Hello")
        record = await eventually(lambda: sms.status_is("ix-none", "1", "failed"))
    finally:
        await adapter.stop()
    assert record["error"] == "no SMS gateway configured" and record["attempts"] == 1


async def test_stop_opts_out_and_no_reply_is_sent(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "s1", "+48600100211")
    stop = await (await sms.generic({"id": "s2", "from": "+48600100211", "text": "stop"})).json()
    assert stop["status"] == "opted_out"
    await agent_says(sms, ix_id, "Are you still there?")
    msgs = await sms.service.store.messages(ix_id)
    assert [m["text"] for m in msgs] == ["stop", "Are you still there?"]  # the agent sees STOP
    record = await eventually(lambda: sms.status_is(ix_id, "2", "opted_out"))
    assert record["attempts"] == 1
    assert sms.gateway.requests == [] and sms.gateway.times == []
    # START undoes it
    start = await (await sms.generic({"id": "s3", "from": "+48600100211", "text": "START"})).json()
    assert start["status"] == "opted_in"
    await agent_says(sms, ix_id, "Welcome back")
    await eventually(lambda: sms.status_is(ix_id, "4", "sent"))
    assert [r["text"] for r in sms.gateway.requests] == ["Welcome back"]


async def test_event_redelivery_sends_once(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "o3", "+48600100212")
    await agent_says(sms, ix_id, "Once")
    await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    assert not await sms.adapter.reply(ix_id, 1, "+48600100212", "Once")  # a repeated event
    assert await sms.adapter.outbox.pending() == 0
    assert [r["text"] for r in sms.gateway.requests] == ["Once"]


async def test_a_redelivered_message_event_does_not_send_twice(sms: Sms) -> None:
    """The feed delivers at least once: the same MESSAGE event to this adapter twice and to
    another process's adapter, before and after it was sent."""
    ix_id = await open_conversation(sms, "o6", "+48600100216")
    other = sms.another_adapter()
    seen: list[tuple[Any, dict[str, str]]] = []

    class Twice:
        channel = "sms"

        async def handle_event(self, event: Any, interaction: dict[str, str]) -> None:
            seen.append((event, interaction))
            for adapter in (sms.adapter, sms.adapter, other):
                await adapter.handle_event(event, interaction)

    await agent_says(sms, ix_id, "Only once, please", handler=Twice())
    assert len(seen) == 1
    record = await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    for adapter in (sms.adapter, other):  # once more, after it was sent
        await adapter.handle_event(*seen[0])
    assert await sms.adapter.outbox.pending() == 0
    assert [r["text"] for r in sms.gateway.requests] == ["Only once, please"]
    assert record["attempts"] == 1 and (await sms.deliveries(ix_id))["1"]["status"] == "sent"


async def test_a_retrying_reply_is_sent_after_a_restart(sms: Sms) -> None:
    await sms.adapter.stop()  # this test's processes are `before` and `after`
    slow = {"attempts": 5, "backoff_s": 0.6, "backoff_max_s": 1.0}
    before = sms.another_adapter(retry=slow)
    await before.start()
    ix_id = await open_conversation(sms, "r1", "+48600100217")
    sms.gateway.fail = 100
    try:
        await agent_says(sms, ix_id, "Survives a restart", handler=before)
        record = await eventually(lambda: sms.status_is(ix_id, "1", "retrying"))
    finally:
        await before.stop()
    assert record["attempts"] == 1 and "503" in record["error"]
    assert sms.gateway.requests == [] and await before.outbox.pending() == 1
    sms.gateway.fail = 0
    after = sms.another_adapter(retry=slow)
    await after.start()
    try:
        record = await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    finally:
        await after.stop()
    assert record["attempts"] == 2
    assert [r["text"] for r in sms.gateway.requests] == ["Survives a restart"]
    assert len(sms.gateway.times) == 2


async def test_another_channel_may_hand_the_outbox_a_message(sms: Sms) -> None:
    """The web form answers a resident who left a phone number (as typed, with a payload of
    its own) through the SMS outbox: only `to` and `text` are used."""
    job = OutboundJob(ix_id="wf-ix-1", item="2", to="+48 600 100 218", text="Odpowiedź",
                      payload={"ref": "WF-1", "language": "pl"})
    assert await submit(sms.service.channel_state("sms"), job)
    record = await eventually(lambda: sms.status_is("wf-ix-1", "2", "sent"))
    assert record["channel"] == "sms"
    [sent] = sms.gateway.requests
    assert sent["to"] == "+48600100218" and sent["text"] == "Odpowiedź"
    assert sent["reference"] == "wf-ix-1:2:1"


async def test_a_job_without_a_phone_number_fails(sms: Sms) -> None:
    job = OutboundJob(ix_id="wf-ix-2", item="1", to="not a number", text="x")
    assert await submit(sms.service.channel_state("sms"), job)
    record = await eventually(lambda: sms.status_is("wf-ix-2", "1", "failed"))
    assert "no phone number" in record["error"] and sms.gateway.times == []


# --- delivery receipts ---------------------------------------------------------------------


async def test_delivery_receipts_update_the_status(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "d1", "+48600100219")
    await agent_says(sms, ix_id, "y" * 200)  # two segments: gw-1 and gw-2
    await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    on_the_way = await sms.status({"id": "gw-1", "status": "sent"})
    assert (await on_the_way.json())["status"] == "ignored"
    first = await sms.status({"id": "gw-1", "status": "delivered"})
    assert first.status == 200 and (await first.json())["status"] == "delivered"
    assert await sms.status_is(ix_id, "1", "sent")  # one segment of two so far
    # the second by our own reference, as a gateway without ids of its own would
    second = await sms.status({"id": f"{ix_id}:1:2", "status": "DELIVRD"})
    assert (await second.json())["status"] == "delivered"
    record = await sms.status_is(ix_id, "1", "delivered")
    assert record and record["attempts"] == 1 and record["receipt_at_ms"] > 0
    unknown = await sms.status({"id": "gw-999", "status": "delivered"})
    assert (await unknown.json())["status"] == "unknown"


async def test_an_undelivered_receipt_records_the_error(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "d2", "+48600100220")
    await agent_says(sms, ix_id, "Hello")
    await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    resp = await sms.status({"id": "gw-1", "status": "failed", "error": "absent subscriber"})
    assert (await resp.json())["status"] == "undelivered"
    record = await sms.status_is(ix_id, "1", "undelivered")
    assert record and record["error"] == "absent subscriber"


async def test_twilio_status_callback_updates_the_status(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "d3", "+48600100221")
    await agent_says(sms, ix_id, "Hello")
    await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    form = {"MessageSid": "gw-1", "MessageStatus": "delivered", "AccountSid": "AC1"}
    assert (await sms.twilio(form, token=None, path=TWILIO_STATUS_PATH)).status == 401
    assert (await sms.twilio(form, token="nope", path=TWILIO_STATUS_PATH)).status == 403
    assert await sms.status_is(ix_id, "1", "sent")
    resp = await sms.twilio(form, path=TWILIO_STATUS_PATH)
    assert resp.status == 204, await resp.text()
    assert await sms.status_is(ix_id, "1", "delivered")


async def test_unsigned_or_badly_signed_receipts_change_nothing(sms: Sms) -> None:
    ix_id = await open_conversation(sms, "d4", "+48600100222")
    await agent_says(sms, ix_id, "Hello")
    await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    before = await sms.deliveries(ix_id)
    receipt = {"id": "gw-1", "status": "delivered"}
    unsigned = await sms.status(receipt, secret=None)
    assert unsigned.status == 401 and (await unsigned.json())["error"]["code"] == "unsigned"
    assert (await sms.status(receipt, secret="wrong")).status == 403
    bad = await sms.status({"status": "delivered"})
    assert bad.status == 400
    assert await sms.deliveries(ix_id) == before
    assert await sms.service.channel_state("sms").link("receipts", f"{ix_id}:1") == {}


async def test_a_receipt_before_the_outbox_recorded_sent_is_kept(sms: Sms) -> None:
    """The first segment's receipt comes while the second is still being posted, before the
    outbox records "sent": it is applied at once, and the later "sent" does not overwrite it."""
    ix_id = await open_conversation(sms, "d5", "+48600100223")
    answers: list[str] = []
    at_once: list[dict[str, Any]] = []

    async def report_the_first(body: dict[str, Any], gw_id: str) -> None:
        if gw_id == "gw-2":
            assert await sms.status_is(ix_id, "1", "queued")
            resp = await sms.status({"id": "gw-1", "status": "undelivered"})
            answers.append((await resp.json())["status"])
            at_once.append((await sms.deliveries(ix_id))["1"])

    sms.gateway.before_answer = report_the_first
    await agent_says(sms, ix_id, "z" * 200)
    await eventually(lambda: sms.adapter.outbox.sent == 1)  # the outbox recorded "sent"
    record = await sms.status_is(ix_id, "1", "undelivered")
    assert record, await sms.deliveries(ix_id)
    assert answers == ["undelivered"] and at_once[0]["status"] == "undelivered"
    assert record["attempts"] == 1 and record["error"] == "the gateway reported undelivered"


async def test_a_delivered_receipt_before_sent_is_not_stepped_back(sms: Sms) -> None:
    """Every segment's receipt comes after the gateway took it but before the outbox records
    "sent" (after a failed try): the message is delivered at once and stays so once the
    outbox is done; the record tells the try that took it, not the failure before."""
    ix_id = await open_conversation(sms, "d6", "+48600100224")
    sms.gateway.fail = 1
    receipts = sms.adapter.receipts
    linked = receipts.sent
    seen: list[dict[str, Any]] = []

    async def report_each_segment(*args: Any, **kwargs: Any) -> None:
        await linked(*args, **kwargs)  # the link is written
        keys = kwargs.get("keys", args[4])
        assert (await sms.deliveries(ix_id))["1"]["status"] == "retrying"
        resp = await sms.status({"id": keys[0], "status": "delivered"})
        assert (await resp.json())["status"] == "delivered"
        resp = await sms.status({"id": keys[0], "status": "delivered"})  # twice: no harm
        seen.append((await sms.deliveries(ix_id))["1"])

    receipts.sent = report_each_segment  # type: ignore[method-assign]
    await agent_says(sms, ix_id, "w" * 200)  # two segments
    await eventually(lambda: sms.adapter.outbox.sent == 1)  # the outbox recorded "sent"
    assert [r["status"] for r in seen] == ["retrying", "delivered"]
    record = await sms.status_is(ix_id, "1", "delivered")
    assert record, await sms.deliveries(ix_id)
    assert record["attempts"] == 2 and record["error"] == "" and record["receipt_at_ms"] > 0
    assert "retry_in_s" not in record


async def test_a_receipt_before_its_id_is_linked_is_applied_by_the_sender(sms: Sms) -> None:
    """The gateway reports a segment before its answer (with the id) reached the sender, to
    another process: the receipt is kept and applied when the sender links the id."""
    ix_id = await open_conversation(sms, "d7", "+48600100225")
    other = sms.another_adapter()  # another process, same Redis
    answers: list[str] = []

    async def report_at_once(body: dict[str, Any], gw_id: str) -> None:
        for _ in range(2):  # the gateway repeats itself
            answers.append(await other.receipts.receive(gw_id, "DELIVRD"))

    sms.gateway.before_answer = report_at_once
    await agent_says(sms, ix_id, "Hello")
    await eventually(lambda: sms.adapter.outbox.sent == 1)
    assert answers == ["unknown", "unknown"]  # not linked yet
    record = await sms.status_is(ix_id, "1", "delivered")
    assert record, await sms.deliveries(ix_id)
    assert record["attempts"] == 1 and record["error"] == ""
    state = sms.service.channel_state("sms")
    assert await state.link("early", "gw-1") == {}  # taken
    # the webhook that keeps a receipt and then finds the link applies it itself
    assert await other.receipts.receive("gw-1", "delivered") == "delivered"


async def test_an_early_receipt_found_linked_by_the_webhook_is_applied(sms: Sms) -> None:
    """The sender links the id while the webhook keeps the receipt: the webhook looks again
    after keeping it, so the receipt is applied though the sender found nothing kept."""
    ix_id = await open_conversation(sms, "d8", "+48600100226")
    await agent_says(sms, ix_id, "Hello")
    await eventually(lambda: sms.status_is(ix_id, "1", "sent"))
    state = sms.service.channel_state("sms")
    linked = await state.link("sent", "gw-1")
    await state.drop_link("sent", "gw-1")
    keep = state.set_link

    async def sender_links_meanwhile(kind: str, key: str, fields: dict[str, str],
                                     ttl_s: float) -> None:
        await keep(kind, key, fields, ttl_s)
        if kind == "early":
            await keep("sent", "gw-1", linked, 60)  # the sender, which finds nothing kept

    state.set_link = sender_links_meanwhile  # type: ignore[method-assign]
    receipts = sms.adapter.receipts
    receipts.state = state
    resp = await sms.status({"id": "gw-1", "status": "undelivered", "error": "no such phone"})
    assert (await resp.json())["status"] == "undelivered"
    record = await sms.status_is(ix_id, "1", "undelivered")
    assert record and record["error"] == "no such phone"
    assert await state.link("early", "gw-1") == {}


# --- the generic webhooks' secret ----------------------------------------------------------


async def test_without_the_variable_a_secret_is_generated_once_into_the_data_dir(
        sms: Sms, tmp_path: Path, caplog: pytest.LogCaptureFixture, cfg: CitylineConfig) -> None:
    no_secret = {k: v for k, v in ENV.items() if k != "CITYLINE_SMS_WEBHOOK_SECRET"}
    first = SmsAdapter(sms.service, sms.cfg, tmp_path / "data", env=no_secret, tick_s=0.05)
    with caplog.at_level(logging.INFO):
        await first.start()
    await first.stop()
    path = tmp_path / "data" / SECRET_FILE
    secret = path.read_text().strip()
    assert len(secret) >= 40 and first.webhook_secret == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in caplog.text and secret not in caplog.text
    # a later start reuses it, and the generic webhook takes what it signs
    again = SmsAdapter(sms.service, sms.cfg, tmp_path / "data", env=no_secret, tick_s=0.05)
    app = create_app(AppContext(config=cfg, redis=sms.redis, keys=Keys(),
                                store=sms.service.store), extra_setup=[again.setup_routes])
    client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    await again.start()
    try:
        assert again.webhook_secret == secret and path.read_text().strip() == secret
        other = Sms(client, again, sms.gateway, sms.service, sms.redis, sms.cfg)
        msg = {"id": "k1", "from": "+48600100224", "text": "hi"}
        assert (await other.generic(msg)).status == 403  # the test's SECRET is not it
        resp = await other.generic(msg, secret=secret)
        assert resp.status == 200 and (await resp.json())["status"] == "created"
    finally:
        await again.stop()
        await client.close()


async def test_the_variable_wins_over_a_generated_secret(sms: Sms, tmp_path: Path) -> None:
    adapter = SmsAdapter(sms.service, sms.cfg, tmp_path, env=ENV, tick_s=0.05)
    await adapter.start()
    await adapter.stop()
    assert adapter.webhook_secret == SECRET and not (tmp_path / SECRET_FILE).exists()


async def test_without_variable_or_data_dir_the_generic_webhook_refuses(sms: Sms) -> None:
    adapter = SmsAdapter(sms.service, sms.cfg, env={}, tick_s=0.05)
    await adapter.start()
    await adapter.stop()
    assert adapter.webhook_secret == ""

# --- pieces --------------------------------------------------------------------------------


def test_segments() -> None:
    assert split_segments("a" * 160, 6) == (["a" * 160], False)
    parts, cut = split_segments("a" * 161, 6)
    assert [len(p) for p in parts] == [153, 8] and not cut
    assert split_segments("ą" * 70, 6) == (["ą" * 70], False)
    assert [len(p) for p in split_segments("ą" * 71, 6)[0]] == [67, 4]
    # an extension character costs two septets and is never split
    parts, _ = split_segments("€" * 81, 6)
    assert [len(p) for p in parts] == [76, 5]
    parts, cut = split_segments("word " * 400, 3)
    assert cut and len(parts) == 3 and parts[-1].endswith("...")


def test_twilio_signature_documented_example() -> None:
    # the example of Twilio's "Validating requests" documentation
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_keywords_and_numbers() -> None:
    assert keyword(" Stop ") == "stop" and keyword("STOP ALL") == "stop"
    assert keyword("unsubscribe") == "stop" and keyword("start") == "start"
    assert keyword("please stop the noise") is None
    assert normalise_number("600 100 200", "PL") == "+48600100200"
    assert normalise_number("+380 44 123 4567", "PL") == "+380441234567"
    assert normalise_number("hello", "PL") is None
