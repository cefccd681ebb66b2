"""The Telegram channel end to end: the real python-telegram-bot code against a loopback fake of
the Bot API (tests/fakes/telegram_api.py), the real aiohttp app with the webhook route, and the
real Redis. Any connection to something other than loopback or a unix socket fails the test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils

from channels.telegram.adapter import SECRET_HEADER, TelegramAdapter
from channels.telegram.errors import TelegramStartError
from channels.telegram.inbound import location_text
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_telegram import TelegramConfig
from router.dispatcher import Dispatcher
from router.http.app import AppContext, create_app
from router.models import Event, IntakeRequest
from router.service import RoutingService
from tests.fakes.telegram_api import FakeTelegramApi
from tests.routing_fixtures import eventually

TOKEN = "123456:TEST-token"
SECRET = "webhook-s3cret_token"
ENV = {"CITYLINE_TELEGRAM_TOKEN": TOKEN, "CITYLINE_TELEGRAM_SECRET": SECRET}
PATH = "/webhooks/telegram"
AGENT = "joanna.wozniak"  # the packaged city's agent with Telegram capacity
CHAT = 424242


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail loudly on any connection that is not to loopback or a unix socket."""
    contacted: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        contacted.append(address)
        if sock.family != socket.AF_UNIX and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return contacted


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})  # the packaged city: it has a `telegram` queue


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramApi]:
    fake = FakeTelegramApi(TOKEN)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def service(redis: aioredis.Redis, cfg: CitylineConfig) -> RoutingService:
    store = RoutingStore(redis)
    await store.load_scripts()
    return RoutingService(store, cfg)


_ids = itertools.count(1)


def message(text: str | None = None, *, chat: int = CHAT, lang: str = "pl",
            **extra: Any) -> dict[str, Any]:
    n = next(_ids)
    msg: dict[str, Any] = {
        "message_id": n, "date": 1_760_000_000 + n,
        "chat": {"id": chat, "type": "private", "first_name": "Olena"},
        "from": {"id": chat, "is_bot": False, "first_name": "Olena", "last_name": "K",
                 "language_code": lang},
        **extra,
    }
    if text is not None:
        msg["text"] = text
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0,
                                "length": len(text.split()[0])}]
    return {"update_id": 10_000 + n, "message": msg}


def location(lat: float, lon: float, **kw: Any) -> dict[str, Any]:
    return message(location={"latitude": lat, "longitude": lon}, **kw)


def callback(data: str, *, chat: int = CHAT) -> dict[str, Any]:
    n = next(_ids)
    return {"update_id": 10_000 + n, "callback_query": {
        "id": f"cb{n}", "chat_instance": "ci1", "data": data,
        "from": {"id": chat, "is_bot": False, "first_name": "Olena"},
        "message": {"message_id": 900, "date": 1_760_000_000,
                    "chat": {"id": chat, "type": "private"}, "text": "choose"},
    }}


@dataclass
class Tg:
    client: test_utils.TestClient
    adapter: TelegramAdapter
    api: FakeTelegramApi
    service: RoutingService

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> Any:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.client.post(PATH, json=update, headers=headers)

    async def interactions(self) -> list[dict[str, str]]:
        return await self.service.active_interactions("telegram")


@pytest.fixture
async def tg(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
             api: FakeTelegramApi) -> AsyncIterator[Tg]:
    async with tg_process(redis, cfg, service, api, public_url="https://tg.city.example") as t:
        yield t
    assert api.hosts() == {f"127.0.0.1:{api.port}"}


@contextlib.asynccontextmanager
async def tg_process(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
                     api: FakeTelegramApi, **overrides: Any) -> AsyncIterator[Tg]:
    """One cityline process's Telegram adapter with its webhook on its own HTTP server."""
    tg_cfg = TelegramConfig(**{"enabled": True, "base_url": api.base_url, "mode": "webhook",
                               "send_backoff_s": 0.05, **overrides})
    adapter = TelegramAdapter(service, cfg, tg_cfg, env=ENV)
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=service.store),
                     extra_setup=[adapter.setup_routes])
    client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
    await client.start_server()
    await adapter.start()
    try:
        yield Tg(client, adapter, api, service)
    finally:
        await adapter.stop()
        await client.close()





async def test_start_registers_the_webhook_with_its_secret(tg: Tg) -> None:
    assert [c.method for c in tg.api.calls] == ["getMe", "setWebhook"]
    (hook,) = tg.api.called("setWebhook")
    assert hook["url"] == "https://tg.city.example/webhooks/telegram"
    assert hook["secret_token"] == SECRET


async def test_start_offers_the_languages_and_the_choice_is_kept(tg: Tg) -> None:
    resp = await tg.post(message("/start"))
    assert resp.status == 200, await resp.text()
    (sent,) = tg.api.called("sendMessage")
    assert sent["chat_id"] == CHAT
    buttons = sent["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == ["lang:pl", "lang:en", "lang:uk"]

    assert (await tg.post(callback("lang:uk"))).status == 200
    assert len(tg.api.called("answerCallbackQuery")) == 1
    (edit,) = tg.api.called("editMessageText")
    assert edit["text"].startswith("Мова: українська")

    assert (await tg.post(message("Де отримати довідку?", lang="en"))).status == 200
    (ix,) = await tg.interactions()
    assert ix["language"] == "uk"


async def test_texts_open_and_join_one_interaction(tg: Tg) -> None:
    first = message("Dziura w jezdni na ul. Długiej")
    assert (await tg.post(first)).status == 200
    (ix,) = await tg.interactions()
    assert ix["queue"] == "telegram"
    assert ix["resident"] == f"tg:{CHAT}"
    assert ix["body"] == "Dziura w jezdni na ul. Długiej"
    ext = f"{CHAT}:{first['message']['message_id']}"
    assert await tg.service.find_external("telegram", ext) == ix["id"]
    (ack,) = await eventually(lambda: tg.api.called("sendMessage"))
    assert ack["chat_id"] == CHAT and ix["ref"] in ack["text"]
    assert await eventually(lambda: _record(tg, ix["id"], "sent", item="ack"))

    assert (await tg.post(message("Jest bardzo głęboka"))).status == 200
    assert [i["id"] for i in await tg.interactions()] == [ix["id"]]
    texts = [m["text"] for m in await tg.service.store.messages(ix["id"])]
    assert texts[-1] == "Jest bardzo głęboka"

    # a repeated delivery of the first update (a Telegram retry) opens nothing new
    assert (await tg.post(first)).status == 200
    assert [i["id"] for i in await tg.interactions()] == [ix["id"]]
    # nor does a repeated delivery of a joining message add it twice
    again = message("Na wysokości numeru 12")
    assert (await tg.post(again)).status == 200
    assert (await tg.post(again)).status == 200
    texts = [m["text"] for m in await tg.service.store.messages(ix["id"])]
    assert texts.count("Na wysokości numeru 12") == 1
    await asyncio.sleep(0.1)
    assert len(tg.api.called("sendMessage")) == 1  # one acknowledgement


def ix_chat(ix: dict[str, str]) -> int:
    return json.loads(ix["meta"])["chat_id"]


async def test_a_location_is_attached(tg: Tg) -> None:
    assert (await tg.post(location(52.2297, 21.0122))).status == 200
    (ix,) = await tg.interactions()
    assert '"lat": 52.2297' in ix["meta"] and '"lon": 21.0122' in ix["meta"]
    assert ix["body"] == location_text(52.2297, 21.0122)

    assert (await tg.post(location(52.23, 21.01))).status == 200
    texts = [m["text"] for m in await tg.service.store.messages(ix["id"])]
    assert texts[-1] == location_text(52.23, 21.01)
    meta = json.loads((await tg.service.store.interaction(ix["id"]))["meta"])
    assert (meta["lat"], meta["lon"], meta["chat_id"]) == (52.23, 21.01, ix_chat(ix))


@pytest.mark.parametrize("secret", [None, "wrong", ""])
async def test_a_wrong_or_missing_secret_is_refused(tg: Tg, secret: str | None,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    before = len(tg.api.calls)
    resp = await tg.post(message("/start"), secret=secret)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "bad_secret_token"
    assert (await tg.post(message("hello"), secret=secret)).status == 403
    assert await tg.interactions() == []
    assert len(tg.api.calls) == before
    assert "refused" in caplog.text


async def test_bad_bodies_are_refused(tg: Tg) -> None:
    resp = await tg.client.post(PATH, data=b"{nope", headers={SECRET_HEADER: SECRET})
    assert resp.status == 400
    resp = await tg.client.post(PATH, json={"message": {}}, headers={SECRET_HEADER: SECRET})
    assert resp.status == 400
    assert await tg.interactions() == []


async def test_the_agent_reply_reaches_the_chat(tg: Tg, redis: aioredis.Redis) -> None:
    assert (await tg.post(message("Where do I pay the dog tax?", lang="en"))).status == 200
    (ix,) = await tg.interactions()
    await tg.service.agent_login(AGENT, ready=True)
    assert await Dispatcher(tg.service.store, tg.service.cfg).match_round() == 1
    await tg.service.accept(AGENT, ix["id"])
    await tg.service.agent_message(AGENT, ix["id"], "At window 3, ground floor.")

    entries = await redis.xrange(Keys().events)
    (event,) = [e for e in (Event.from_stream(i, f) for i, f in entries)
                if e.type == "MESSAGE" and (e.model_extra or {}).get("from") == "agent"]
    interaction = await redis.hgetall(Keys().ix(ix["id"]))
    await tg.adapter.handle_event(event, interaction)
    await tg.adapter.handle_event(event, interaction)  # at-least-once: sent once only
    record = await eventually(lambda: _record(tg, ix["id"], "sent"))
    assert (record["channel"], record["attempts"], record["to"]) == ("telegram", 1, str(CHAT))
    await tg.adapter.handle_event(event, interaction)  # also after it was sent
    await asyncio.sleep(0.2)
    replies = [c for c in tg.api.called("sendMessage")
               if c["text"] == "At window 3, ground floor."]
    assert replies == [{"chat_id": CHAT, "text": "At window 3, ground floor."}]


async def _record(tg: Tg, ix_id: str, want: str, item: str = "") -> dict[str, Any] | None:
    """The delivery record of `item` (default: any agent reply) once its status is `want`."""
    records = await tg.service.deliveries(ix_id)
    found = [r for k, r in records.items()
             if (k == item if item else k != "ack") and r["status"] == want]
    return found[0] if found else None


async def _agent_replies(tg: Tg, redis: aioredis.Redis, text: str) -> str:
    """An agent takes the open chat and answers `text`; the MESSAGE event is handed to the
    adapter. Returns the interaction id."""
    (ix,) = await tg.interactions()
    await tg.service.agent_login(AGENT, ready=True)
    assert await Dispatcher(tg.service.store, tg.service.cfg).match_round() == 1
    await tg.service.accept(AGENT, ix["id"])
    await tg.service.agent_message(AGENT, ix["id"], text)
    entries = await redis.xrange(Keys().events)
    (event,) = [e for e in (Event.from_stream(i, f) for i, f in entries)
                if e.type == "MESSAGE" and (e.model_extra or {}).get("from") == "agent"]
    await tg.adapter.handle_event(event, await redis.hgetall(Keys().ix(ix["id"])))
    return ix["id"]


async def test_flood_control_and_server_errors_are_retried(
        tg: Tg, redis: aioredis.Redis) -> None:
    tg.api.fail("sendMessage", 429, retry_after=1)
    tg.api.fail("sendMessage", 502, "Bad Gateway")
    assert (await tg.post(message("Pytanie"))).status == 200
    (ix,) = await tg.interactions()
    ack = await eventually(lambda: _record(tg, ix["id"], "sent", item="ack"))
    assert ack["attempts"] == 3 and ack["error"] == ""
    ix_id = await _agent_replies(tg, redis, "Proszę przyjść w poniedziałek.")
    record = await eventually(lambda: _record(tg, ix_id, "sent"))
    assert record["attempts"] == 1
    texts = [c["text"] for c in tg.api.called("sendMessage")]
    assert texts.count("Proszę przyjść w poniedziałek.") == 1
    assert len(texts) == 4  # the ack three times, the reply once


async def test_a_blocked_bot_fails_for_good_and_the_agent_sees_it(
        tg: Tg, redis: aioredis.Redis) -> None:
    assert (await tg.post(message("Pytanie"))).status == 200
    (ix,) = await tg.interactions()
    await eventually(lambda: _record(tg, ix["id"], "sent", item="ack"))
    tg.api.fail("sendMessage", 403, times=5)
    await _agent_replies(tg, redis, "Dzień dobry")
    record = await eventually(lambda: _record(tg, ix["id"], "blocked"))
    assert record["attempts"] == 1 and "blocked" in record["error"]
    await asyncio.sleep(0.3)
    assert len(tg.api.called("sendMessage")) == 2  # the ack, one try of the reply


async def test_another_process_carries_on_the_conversation(
        tg: Tg, redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
        api: FakeTelegramApi) -> None:
    """A restart, or the next update reaching another process: the open interaction and the
    language chosen are known there too."""
    assert (await tg.post(message("Gdzie jest urząd skarbowy?"))).status == 200
    (ix,) = await tg.interactions()
    assert (await tg.post(callback("lang:en", chat=555))).status == 200
    async with tg_process(redis, cfg, service, api) as other:
        assert (await other.post(message("To pilne"))).status == 200
        texts = [m["text"] for m in await service.store.messages(ix["id"])]
        assert texts[-1] == "To pilne"
        assert (await other.post(message("Where do I pay?", chat=555, lang="pl"))).status == 200
        opened = {i["resident"]: i for i in await other.interactions()}
        assert set(opened) == {f"tg:{CHAT}", "tg:555"}
        assert opened["tg:555"]["language"] == "en"


async def test_an_own_shared_contact_is_remembered_with_consent(
        tg: Tg, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[IntakeRequest] = []
    real = tg.service.create_interaction

    async def spy(req: IntakeRequest) -> Any:
        seen.append(req)
        return await real(req)

    monkeypatch.setattr(tg.service, "create_interaction", spy)
    someone = {"phone_number": "+48 600 100 201", "first_name": "Ktoś", "user_id": 999}
    assert (await tg.post(message(contact=someone))).status == 200
    own = {"phone_number": "600100200", "first_name": "Olena", "user_id": CHAT}
    assert (await tg.post(message(contact=own))).status == 200
    (thanks,) = tg.api.called("sendMessage")
    assert "zapamiętamy" in thanks["text"].lower()
    assert (await tg.post(message("Zgłoszenie"))).status == 200
    (req,) = seen
    assert (req.contacts, req.consent) == (["+48600100200"], True)


async def test_polling_processes_a_queued_update(
    cfg: CitylineConfig, service: RoutingService, api: FakeTelegramApi
) -> None:
    tg_cfg = TelegramConfig(enabled=True, base_url=api.base_url, mode="polling",
                            poll_timeout_s=1)
    adapter = TelegramAdapter(service, cfg, tg_cfg, env={"CITYLINE_TELEGRAM_TOKEN": TOKEN})
    await adapter.start()
    try:
        api.queue_update(message("Zgłaszam awarię latarni", chat=777))

        async def opened() -> list[dict[str, str]]:
            return await service.active_interactions("telegram")

        (ix,) = await eventually(opened)
        assert ix["resident"] == "tg:777"
        assert api.called("deleteWebhook")
    finally:
        await adapter.stop()
    assert api.hosts() == {f"127.0.0.1:{api.port}"}


async def test_start_without_a_token_fails_cleanly(
    cfg: CitylineConfig, service: RoutingService, api: FakeTelegramApi
) -> None:
    adapter = TelegramAdapter(service, cfg, TelegramConfig(base_url=api.base_url), env={})
    with pytest.raises(TelegramStartError):
        await adapter.start()
    wrong = TelegramAdapter(service, cfg, TelegramConfig(base_url=api.base_url),
                            env={"CITYLINE_TELEGRAM_TOKEN": "999:other"})
    with pytest.raises(TelegramStartError):
        await wrong.start()
    assert wrong.application is None
    assert api.calls and api.calls[-1].method == "getMe"


async def test_the_guard_refuses_the_real_network(loopback_only: list[Any]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock, pytest.raises(AssertionError, match="network"):
        sock.connect(("149.154.167.220", 443))  # api.telegram.org


async def test_the_packaged_city_starts_its_bot_once_a_token_is_set(
        api: FakeTelegramApi, redis_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No config file: without CITYLINE_TELEGRAM_TOKEN the bot is off (a warning), with it the
    bot starts (long polling against the Bot API)."""
    from router.main import Cityline

    def city() -> CitylineConfig:
        cfg = load_config(None, env={})
        cfg.data_dir, cfg.http.port = tmp_path, 0
        cfg.channels.email.port = 0
        cfg.channels.telegram.base_url = api.base_url
        return cfg

    monkeypatch.delenv("CITYLINE_TELEGRAM_TOKEN", raising=False)
    async with Cityline(city(), redis_url=redis_url, embedded_redis=False) as running:
        assert "telegram" not in running.supervisor.names
    monkeypatch.setenv("CITYLINE_TELEGRAM_TOKEN", TOKEN)
    async with Cityline(city(), redis_url=redis_url, embedded_redis=False) as running:
        assert "telegram" in running.supervisor.names
        await eventually(lambda: bool(api.called("getUpdates")))
    assert api.called("getMe")
