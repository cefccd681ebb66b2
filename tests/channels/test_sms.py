"""The SMS channel end to end: the real aiohttp app with the SMS webhooks on a loopback server,
the real Redis, and a fake SMS gateway (a small aiohttp server of the test) for replies."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils, web

from channels.sms.adapter import GENERIC_PATH, TWILIO_PATH, SmsAdapter
from channels.sms.inbound import keyword, normalise_number, twilio_signature
from channels.sms.outbound import split_segments
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_sms import SmsConfig
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.http.app import AppContext, create_app
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
    """Records every POST; answers 503 to the first `fail` of them."""

    fail: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(asyncio.get_running_loop().time())
        self.auth.append(request.headers.get("Authorization", ""))
        if self.fail > 0:
            self.fail -= 1
            return web.json_response({"error": "try later"}, status=503)
        self.requests.append(await request.json())
        return web.json_response({"id": f"gw-{len(self.requests)}"})


@dataclass
class Sms:
    client: test_utils.TestClient
    adapter: SmsAdapter
    gateway: FakeGateway
    service: RoutingService
    redis: aioredis.Redis

    async def generic(self, payload: Any, *, secret: str | None = SECRET,
                      raw: bytes | None = None) -> Any:
        body = raw if raw is not None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Cityline-Signature"] = f"sha256={sig}"
        return await self.client.post(GENERIC_PATH, data=body, headers=headers)

    async def twilio(self, form: dict[str, str], *, token: str | None = TWILIO_TOKEN) -> Any:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if token is not None:
            headers["X-Twilio-Signature"] = twilio_signature(
                token, PUBLIC_URL + TWILIO_PATH, form.items())
        return await self.client.post(TWILIO_PATH, data=urlencode(form), headers=headers)

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
        yield Sms(client, adapter, gateway, service, redis)
    finally:
        await adapter.stop()
        await client.close()
        await gw_server.close()





async def agent_says(sms: Sms, ix_id: str, text: str) -> None:
    """The agent writes; the real event feed of the sms channel hands it to the adapter."""
    feed = EventFeed(sms.redis, Keys(), sms.adapter, "test")
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
    assert await sms.redis.keys("cl:sms:*") == []


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


async def test_agent_reply_reaches_the_gateway_in_segments(sms: Sms) -> None:
    created = await (await sms.generic({"id": "o1", "from": "+48600100209", "text": "?"})).json()
    ix_id = created["interaction"]
    await sms.connect_agent(ix_id)
    reply = "Dzień dobry! " + "Zgłoszenie przyjęte, dziękujemy. " * 5
    await agent_says(sms, ix_id, reply)
    status = await eventually(lambda: sms.adapter.delivery_status(ix_id))
    assert status[1]["status"] == "delivered"
    sent = sms.gateway.requests
    assert len(sent) == len(split_segments(reply, 6)[0]) > 1
    assert "".join(r["text"] for r in sent) == reply
    assert all(len(r["text"]) <= 67 for r in sent)  # Polish letters: UCS-2 parts
    assert {r["to"] for r in sent} == {"+48600100209"}
    assert {r["from"] for r in sent} == {"+48221234567"}
    assert [r["parts"]["index"] for r in sent] == list(range(1, len(sent) + 1))
    assert set(sms.gateway.auth) == {f"Bearer {GATEWAY_TOKEN}"}


async def test_gateway_failures_retried_with_backoff(sms: Sms) -> None:
    created = await (await sms.generic({"id": "o2", "from": "+48600100210", "text": "?"})).json()
    ix_id = created["interaction"]
    await sms.connect_agent(ix_id)
    sms.gateway.fail = 2
    await agent_says(sms, ix_id, "Your case is registered.")

    async def delivered() -> bool:
        return (await sms.adapter.delivery_status(ix_id)).get(1, {}).get("status") == "delivered"

    await eventually(delivered)
    record = (await sms.adapter.delivery_status(ix_id))[1]
    assert record["attempts"] == 3 and record["gateway_ids"] == ["gw-1"]
    t = sms.gateway.times
    assert len(t) == 3
    assert t[1] - t[0] >= 0.05 and t[2] - t[1] >= 0.1  # backoff doubles
    assert [r["text"] for r in sms.gateway.requests] == ["Your case is registered."]


async def test_stop_opts_out_and_no_reply_is_sent(sms: Sms) -> None:
    created = await (await sms.generic({"id": "s1", "from": "+48600100211", "text": "?"})).json()
    ix_id = created["interaction"]
    await sms.connect_agent(ix_id)
    stop = await (await sms.generic({"id": "s2", "from": "+48600100211", "text": "stop"})).json()
    assert stop["status"] == "opted_out"
    await agent_says(sms, ix_id, "Are you still there?")
    msgs = await sms.service.store.messages(ix_id)
    assert [m["text"] for m in msgs] == ["stop", "Are you still there?"]  # the agent sees STOP
    status = await eventually(lambda: sms.adapter.delivery_status(ix_id))
    assert status[2]["status"] == "opted_out"
    assert sms.gateway.requests == [] and sms.gateway.times == []
    # START undoes it
    start = await (await sms.generic({"id": "s3", "from": "+48600100211", "text": "START"})).json()
    assert start["status"] == "opted_in"
    await agent_says(sms, ix_id, "Welcome back")
    await eventually(lambda: asyncio.sleep(0, sms.gateway.requests))
    assert [r["text"] for r in sms.gateway.requests] == ["Welcome back"]


async def test_event_redelivery_sends_once(sms: Sms) -> None:
    created = await (await sms.generic({"id": "o3", "from": "+48600100212", "text": "?"})).json()
    ix_id = created["interaction"]
    await sms.connect_agent(ix_id)
    await agent_says(sms, ix_id, "Once")
    await sms.adapter.reply(ix_id, 1, "+48600100212", "Once")  # a repeated event
    assert [r["text"] for r in sms.gateway.requests] == ["Once"]


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
