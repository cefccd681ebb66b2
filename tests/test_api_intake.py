"""Contacts coming in over the API: creation, bad input of every kind, resident events, reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from router.config import CitylineConfig
from router.dispatcher import Dispatcher
from router.service import RoutingService
from tests.api_helpers import API, ApiHarness, Bearer, api_harness, error_of
from tests.routing_fixtures import events

MAX_BODY = 16 * 1024  # above the largest valid message (10 000 chars)


@pytest.fixture
async def api(
    redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService
) -> AsyncIterator[ApiHarness]:
    cfg.http.max_body_bytes = MAX_BODY
    async with api_harness(redis, cfg, service) as harness:
        yield harness


@pytest.fixture
async def intake(api: ApiHarness) -> Bearer:
    return await api.bearer("sms-gateway", "intake")


VOICE = {"channel": "voice", "queue": "voice", "resident": "+48600100200"}


async def test_create_interaction(api: ApiHarness, intake: Bearer, redis: aioredis.Redis):
    resp = await intake.post(
        "/interactions",
        {**VOICE, "topic": "taxes", "language": "en", "subject": "Property tax",
         "meta": {"ivr_path": "1-2"}},
    )  # fmt: skip
    assert resp.status == 201, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) == {"id", "ref", "state", "created", "enqueued_ms"}
    assert body["state"] == "queued" and body["created"] is True
    assert body["ref"].count("-") == 1
    stored = await api.ix(body["id"])
    assert stored["queue"] == "voice" and stored["language"] == "en"
    (enter,) = await events(redis, "ENTERQUEUE")
    assert enter.ix == body["id"] and enter.queue == "voice"

    boss = await api.bearer("boss", "supervisor")
    view = await (await boss.get(f"/interactions/{body['id']}")).json()
    assert view["topic"] == "taxes" and view["meta"] == {"ivr_path": "1-2"}
    assert view["skills"] == {"general": 3, "taxes": 1, "lang_en": 1}
    by_ref = await (await boss.get(f"/references/{body['ref']}")).json()
    assert by_ref["id"] == body["id"]
    resp = await boss.get("/references/1999-000001")
    assert resp.status == 404


async def test_channel_default_queue_and_repeat_external_id(api: ApiHarness, intake: Bearer):
    first = await intake.post("/interactions", {"channel": "chat", "external_id": "w-1"})
    assert first.status == 201
    again = await intake.post("/interactions", {"channel": "chat", "external_id": "w-1"})
    assert again.status == 200
    a, b = await first.json(), await again.json()
    assert b["id"] == a["id"] and b["ref"] == a["ref"] and b["created"] is False
    assert (await api.ix(a["id"]))["queue"] == "chat"
    assert await api.stream_len() == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"channel": "voice",', {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b'{"channel": NaN}', {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b"\xff\xfe{}", {"Content-Type": "application/json"}, 400, "invalid_json"),
        (b'{"channel": "voice"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        (b"channel=voice", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
         "unsupported_media_type"),
        (b'["voice"]', {"Content-Type": "application/json"}, 422, "validation_error"),
    ],
)  # fmt: skip
async def test_malformed_bodies(
    api: ApiHarness, intake: Bearer, body: bytes, headers: dict[str, str], status: int, code: str
):
    resp = await intake.post("/interactions", data=body, headers=headers)
    assert resp.status == status
    assert (await error_of(resp))["code"] == code
    assert await api.stream_len() == 0


async def test_unknown_and_invalid_fields(api: ApiHarness, intake: Bearer):
    resp = await intake.post("/interactions", {**VOICE, "urgency": "high", "priority": 99})
    assert resp.status == 422
    error = await error_of(resp)
    assert error["code"] == "validation_error"
    locs = sorted(tuple(d["loc"]) for d in error["details"])
    assert locs == [("priority",), ("urgency",)]
    assert all(set(d) == {"loc", "msg"} for d in error["details"])
    resp = await intake.post("/interactions", {"queue": "voice"})
    error = await error_of(resp)
    assert resp.status == 422 and error["details"][0]["loc"] == ["channel"]
    resp = await intake.post("/interactions", None)  # empty body: {} -> channel missing
    assert resp.status == 422
    assert await api.stream_len() == 0


async def test_oversized_body(api: ApiHarness, intake: Bearer):
    big = {**VOICE, "body": "x" * (MAX_BODY + 10)}
    resp = await intake.post("/interactions", big)
    assert resp.status == 413
    assert (await error_of(resp))["code"] == "request_too_large"

    async def chunks():  # no Content-Length: refused while being read
        payload = json.dumps(big).encode()
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    resp = await intake.post(
        "/interactions", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert await api.stream_len() == 0


async def test_unknown_queue_and_mismatch(api: ApiHarness, intake: Bearer):
    resp = await intake.post("/interactions", {"channel": "voice", "queue": "nowhere"})
    assert resp.status == 404
    assert (await error_of(resp))["code"] == "unknown_queue"
    resp = await intake.post("/interactions", {"channel": "chat", "queue": "voice"})
    assert resp.status == 422
    assert (await error_of(resp))["code"] == "channel_mismatch"
    resp = await intake.post("/interactions", {"channel": "email"})
    assert resp.status == 422
    assert (await error_of(resp))["code"] == "no_queue_for_channel"
    resp = await intake.post("/interactions", {**VOICE, "language": "de"})
    assert (await error_of(resp))["code"] == "unknown_language"
    resp = await intake.post("/interactions", {**VOICE, "topic": "parking"})
    assert (await error_of(resp))["code"] == "unknown_topic"
    assert await api.stream_len() == 0


async def test_resident_left_while_waiting(api: ApiHarness, intake: Bearer, redis: aioredis.Redis):
    created = await (await intake.post("/interactions", VOICE)).json()
    ix = created["id"]
    resp = await intake.post(f"/interactions/{ix}/resident-left", {})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["short"] is True and body["wait_ms"] >= 0
    assert (await api.ix(ix))["state"] == "abandoned"
    (ab,) = await events(redis, "ABANDON")
    assert ab.ix == ix and ab.wait_ms == body["wait_ms"]
    resp = await intake.post(f"/interactions/{ix}/resident-left")
    assert resp.status == 409
    resp = await intake.post(f"/interactions/{ix}/resident-messages", {"text": "hello?"})
    assert resp.status == 409 and (await error_of(resp))["code"] == "invalid_state"


async def test_resident_left_with_time(api: ApiHarness, intake: Bearer):
    # the channel's own time of hang-up counts (the script clamps it to [entered, now])
    created = await (await intake.post("/interactions", VOICE)).json()
    at = created["enqueued_ms"]
    resp = await intake.post(f"/interactions/{created['id']}/resident-left", {"at_ms": at})
    body = await resp.json()
    assert body == {"wait_ms": 0, "short": True, "ended_ms": at}
    resp = await intake.post(f"/interactions/{created['id']}/resident-left", {"at_ms": -1})
    assert resp.status == 422


async def test_resident_left_while_offered(api: ApiHarness, intake: Bearer, dispatcher: Dispatcher):
    ix = (await (await intake.post("/interactions", VOICE)).json())["id"]
    await api.service.agent_login("a1", ready=True)
    assert await dispatcher.match_round() == 1
    resp = await intake.post(f"/interactions/{ix}/resident-left")
    assert resp.status == 200
    assert (await api.ix(ix))["state"] == "abandoned"
    assert int((await api.agent_hash("a1"))["load:voice"]) == 0


async def test_resident_messages(api: ApiHarness, intake: Bearer):
    ix = (await (await intake.post("/interactions", {"channel": "chat"})).json())["id"]
    resp = await intake.post(f"/interactions/{ix}/resident-messages", {"text": "first"})
    assert resp.status == 200 and (await resp.json()) == {"index": 1}
    resp = await intake.post(f"/interactions/{ix}/resident-messages", {"text": "x" * 10_001})
    assert resp.status == 422
    resp = await intake.post(f"/interactions/{ix}/resident-messages", {"text": ""})
    assert resp.status == 422
    resp = await intake.post("/interactions/nope/resident-messages", {"text": "hi"})
    assert resp.status == 404 and (await error_of(resp))["code"] == "not_found"


async def test_who_may_create_and_read(api: ApiHarness, intake: Bearer):
    anna = await api.session("anna", "agent", "a1")
    resp = await anna.post("/interactions", VOICE)
    assert resp.status == 403 and (await error_of(resp))["code"] == "forbidden"
    boss = await api.bearer("boss", "supervisor")
    assert (await boss.post("/interactions", VOICE)).status == 403
    admin = await api.bearer("root", "admin")
    resp = await admin.post("/interactions", VOICE)
    assert resp.status == 201
    ix = (await resp.json())["id"]
    # the intake account writes contacts but reads nothing back
    for path in (f"/interactions/{ix}", f"/interactions/{ix}/messages", "/queues", "/agents"):
        resp = await intake.get(path)
        assert resp.status == 403, path
    resp = await intake.post("/agents/a1/login", {"ready": True})
    assert resp.status == 403
    # an agent reads an interaction only while holding it
    resp = await anna.get(f"/interactions/{ix}")
    assert resp.status == 403
    resp = await (await api.client()).post(f"{API}/interactions", json=VOICE)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_messages_show_how_sending_them_went(api: ApiHarness, intake: Bearer,
                                                   service: RoutingService,
                                                   dispatcher: Dispatcher):
    """The delivery record a channel's outbox keeps is shown next to the message it sent."""
    ix = (await (await intake.post("/interactions", {"channel": "chat"})).json())["id"]
    await intake.post(f"/interactions/{ix}/resident-messages", {"text": "first"})
    agent = next(a for a, p in api.cfg.agents.items() if p.capacity.get("chat"))
    await service.agent_login(agent, ready=True)
    assert await dispatcher.match_round() == 1
    await service.accept(agent, ix)
    await service.agent_message(agent, ix, "answer")
    sms = service.channel_state("sms")
    await sms.set_delivery(ix, "2", {"status": "retrying", "attempts": 2, "error": "503",
                                     "at_ms": 5})
    await service.channel_state("email").set_delivery(ix, "ack", {"status": "sent",
                                                                  "attempts": 1, "at_ms": 4})
    boss = await api.bearer("boss", "supervisor")
    body = await (await boss.get(f"/interactions/{ix}/messages")).json()
    first, answer = body["messages"]
    assert first["delivery"] is None
    assert answer["delivery"] == {"channel": "sms", "status": "retrying", "attempts": 2,
                                  "error": "503", "at_ms": 5}
    assert body["acknowledgement"]["status"] == "sent"
