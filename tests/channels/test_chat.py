"""The web chat end to end: the real app on a TestServer, aiohttp's WebSocket client, the real
Redis, the dispatcher and the routing service playing the agent, router events fed through a real
EventFeed to the adapter."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType, test_utils

from channels.chat.adapter import ChatAdapter
from channels.chat.session import token_hash
from queues.keys import Keys
from router.config import CitylineConfig
from router.config_chat import ChatConfig
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.http.app import AppContext, create_app
from router.metrics import LiveSnapshotCache
from router.models import IntakeRequest
from router.service import RoutingService
from router.stats import StatsAggregator
from router.waiting import WaitEstimator
from tests.routing_fixtures import events, eventually, ready

START = {"type": "start", "language": "pl", "topic": None, "name": "Jan"}


@dataclass
class Chat:
    adapter: ChatAdapter
    client: test_utils.TestClient
    feed: EventFeed
    service: RoutingService
    dispatcher: Dispatcher
    redis: aioredis.Redis

    async def ws(self) -> Any:
        return await self.client.ws_connect("/chat/ws")

    async def pump(self) -> None:
        """Deliver the router's new events to the adapter."""
        while await self.feed.read_once(block_ms=None):
            pass

    async def agent_takes(self, agent: str = "a1") -> str:
        await ready(self.service, agent)
        assert await self.dispatcher.match_round() == 1
        (offer,) = await self.service.offers(agent)
        await self.service.accept(agent, offer["id"])
        await self.pump()
        return offer["id"]


async def recv(ws: Any, within_s: float = 3.0) -> dict[str, Any]:
    return await asyncio.wait_for(ws.receive_json(), within_s)


async def recv_type(ws: Any, kind: str, within_s: float = 3.0) -> dict[str, Any]:
    """The next frame of `kind`, skipping periodic `waiting` updates."""
    while True:
        frame = await recv(ws, within_s)
        if frame["type"] == kind:
            return frame
        assert frame["type"] == "waiting", frame


async def until(check: Callable[[], Any], within_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


CHAT_CFG = {"reconnect_grace_s": 0.3, "waiting_update_every_s": 0.2, "max_message_chars": 100,
            "resident_idle_timeout_s": 30}


@contextlib.asynccontextmanager
async def chat_process(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
                       dispatcher: Dispatcher, consumer: str = "test",
                       **overrides: Any) -> AsyncIterator[Chat]:
    """One cityline process's chat: its own adapter, HTTP server and event consumer."""
    chat_cfg = ChatConfig(**{**CHAT_CFG, **overrides})
    estimator = WaitEstimator(service.store, LiveSnapshotCache(StatsAggregator(redis, Keys(),
                                                                               cfg)))
    adapter = ChatAdapter(service, cfg, chat_cfg, estimator, tick_s=0.05, sweep_every_s=0.05)
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=service.store),
                     extra_setup=[adapter.setup_routes])
    server = test_utils.TestServer(app, host="127.0.0.1", port=0)
    client = test_utils.TestClient(server)
    await client.start_server()
    feed = EventFeed(redis, Keys(), adapter, consumer)
    await feed.ensure_group()
    await adapter.start()
    try:
        yield Chat(adapter, client, feed, service, dispatcher, redis)
    finally:
        await adapter.stop()
        await client.close()


@pytest.fixture
async def chat(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
               dispatcher: Dispatcher) -> AsyncIterator[Chat]:
    async with chat_process(redis, cfg, service, dispatcher) as c:
        yield c


@pytest.fixture
async def chat2(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
                dispatcher: Dispatcher, chat: Chat) -> AsyncIterator[Chat]:
    """A second cityline process serving the same chat."""
    async with chat_process(redis, cfg, service, dispatcher, consumer="test2") as c:
        yield c


async def started(chat: Chat, ws: Any) -> tuple[str, str, str]:
    await ws.send_json(START)
    frame = await recv(ws)
    assert frame["type"] == "started" and frame["ref"] and len(frame["token"]) >= 40, frame
    (session,) = [s for s in chat.adapter.sessions.values() if s.ref == frame["ref"]]
    return session.ix_id, frame["ref"], frame["token"]


async def test_conversation_end_to_end(chat: Chat) -> None:
    ws = await chat.ws()
    ix_id, ref, _token = await started(chat, ws)
    assert await recv(ws) == {"type": "waiting", "position": 1, "estimated_wait_s": 0}
    ix = await chat.service.store.interaction(ix_id)
    assert (ix["channel"], ix["queue"], ix["state"], ix["ref"]) == ("chat", "chat", "queued", ref)

    await ws.send_json({"type": "message", "text": "Dzień dobry, <script>x</script>"})
    await chat.agent_takes("a1")
    assert await recv_type(ws, "agent_joined") == {"type": "agent_joined", "name": "Anna"}
    msgs = await chat.service.store.messages(ix_id)
    assert [(m["from"], m["text"]) for m in msgs] == [
        ("resident", "Dzień dobry, <script>x</script>")]

    await chat.service.agent_message("a1", ix_id, "W czym mogę pomóc?")
    await chat.pump()
    assert await recv(ws) == {"type": "message", "from": "agent", "text": "W czym mogę pomóc?"}
    await chat.pump()  # a repeated delivery of the same event sends nothing twice

    await chat.service.complete("a1", ix_id)
    await chat.pump()
    assert await recv(ws) == {"type": "ended", "by": "agent"}
    assert (await ws.receive()).type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
    assert ix_id not in chat.adapter.sessions


async def test_resume_after_a_dropped_connection(chat: Chat) -> None:
    ws = await chat.ws()
    ix_id, ref, token = await started(chat, ws)
    await chat.agent_takes("a1")
    await recv_type(ws, "agent_joined")
    await ws.close()
    await until(lambda: _async(ix_id not in chat.adapter.sessions))
    assert (await _link(chat, token))["disconnected_wall_ms"] != "0"

    await chat.service.agent_message("a1", ix_id, "Jest Pan tam?")
    await chat.pump()  # nobody to deliver to: kept for the resumption

    ws2 = await chat.ws()
    await ws2.send_json({"type": "resume", "token": token})
    assert await recv(ws2) == {"type": "started", "ref": ref, "token": token}
    assert await recv(ws2) == {"type": "agent_joined", "name": "Anna"}
    assert await recv(ws2) == {"type": "message", "from": "agent", "text": "Jest Pan tam?"}
    await ws2.send_json({"type": "message", "text": "Tak, jestem"})
    await until(lambda: _count(chat, ix_id, 2))
    assert (await chat.service.store.messages(ix_id))[-1]["text"] == "Tak, jestem"

    # a wrong token resumes nothing
    ws3 = await chat.ws()
    await ws3.send_json({"type": "resume", "token": "x" * 43})
    assert (await recv(ws3))["code"] == "unknown_token"


async def test_leaving_while_connected_is_completecaller(chat: Chat) -> None:
    ws = await chat.ws()
    ix_id, _ref, _token = await started(chat, ws)
    await chat.agent_takes("a1")
    await recv_type(ws, "agent_joined")
    await ws.send_json({"type": "leave"})
    assert await recv(ws) == {"type": "ended", "by": "resident"}
    (ev,) = await events(chat.redis, "COMPLETECALLER")
    assert ev.ix == ix_id and ev.agent == "a1"
    assert (await chat.service.store.interaction(ix_id))["state"] in ("wrapup", "closed")


async def test_leave_while_waiting_is_abandon(chat: Chat) -> None:
    ws = await chat.ws()
    ix_id, _ref, _token = await started(chat, ws)
    await asyncio.sleep(0.1)
    await ws.send_json({"type": "leave"})
    assert await recv_type(ws, "ended") == {"type": "ended", "by": "resident"}
    (ev,) = await events(chat.redis, "ABANDON")
    assert ev.ix == ix_id and ev.wait_ms is not None and ev.wait_ms >= 100


async def test_closed_while_waiting_past_the_grace_is_abandon(chat: Chat) -> None:
    ws = await chat.ws()
    ix_id, _ref, token = await started(chat, ws)
    await asyncio.sleep(0.15)
    await ws.close()
    (ev,) = await eventually(lambda: events(chat.redis, "ABANDON"), within_s=3)
    entered = int((await chat.service.store.interaction(ix_id))["entered_ms"])
    # the exact wait: up to the drop, not up to the end of the grace period (0.3 s)
    assert ev.ix == ix_id and 150 <= ev.wait_ms < 300, ev
    assert ev.time_ms == entered + ev.wait_ms
    ws2 = await chat.ws()
    await ws2.send_json({"type": "resume", "token": token})
    assert (await recv(ws2))["code"] == "unknown_token"


async def test_a_drop_within_the_grace_keeps_the_place(chat: Chat) -> None:
    ws = await chat.ws()
    ix_id, _ref, token = await started(chat, ws)
    await ws.close()
    ws2 = await chat.ws()
    await ws2.send_json({"type": "resume", "token": token})
    assert (await recv(ws2))["type"] == "started"
    assert await recv(ws2) == {"type": "waiting", "position": 1, "estimated_wait_s": 0}
    await asyncio.sleep(0.5)  # past the grace: connected again, so still waiting
    assert (await chat.service.store.interaction(ix_id))["state"] == "queued"
    assert (await recv(ws2))["type"] == "waiting"  # periodic updates


async def test_bad_frames_get_error_frames(chat: Chat) -> None:
    ws = await chat.ws()
    await ws.send_str("{not json")
    assert (await recv(ws))["code"] == "invalid_json"
    await ws.send_json({"type": "teleport"})
    assert (await recv(ws))["code"] == "unknown_type"
    await ws.send_json({"type": "message", "text": "hi"})
    assert (await recv(ws))["code"] == "no_conversation"
    await ws.send_json({"type": "start", "language": "xx"})
    assert (await recv(ws))["code"] == "unknown_language"
    ix_id, _ref, _token = await started(chat, ws)
    await recv(ws)  # waiting
    await ws.send_json({"type": "message", "text": "a" * 101})
    frame = await recv_type(ws, "error")
    assert frame["code"] == "too_long" and frame["message"]
    await ws.send_json({"type": "message", "text": 5})
    assert (await recv_type(ws, "error"))["code"] == "invalid_frame"
    await ws.send_json(START)
    assert (await recv_type(ws, "error"))["code"] == "already_started"
    # the socket is kept: a good message still goes through
    await ws.send_json({"type": "message", "text": "ok"})
    await until(lambda: _count(chat, ix_id, 1))
    assert [m["text"] for m in await chat.service.store.messages(ix_id)] == ["ok"]


async def test_a_flood_closes_the_socket_with_1008(chat: Chat) -> None:
    ws = await chat.ws()
    for _ in range(40):
        await ws.send_str(json.dumps({"type": "teleport"}))
    while True:
        msg = await asyncio.wait_for(ws.receive(), 3)
        if msg.type != WSMsgType.TEXT:
            break
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1008


async def test_the_page_renders_text_safely(chat: Chat) -> None:
    resp = await chat.client.get("/chat")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "innerHTML" not in page and "textContent" in page
    assert "new WebSocket" in page and "sessionStorage" in page and "/chat/ws" in page
    for code in ("pl", "en"):  # the city's languages (the test city serves pl and en)
        assert f'<option value="{code}"' in page
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp.split("script-src")[1][:40]


async def _async(value: bool) -> bool:
    return value


async def _count(chat: Chat, ix_id: str, n: int) -> bool:
    return len(await chat.service.store.messages(ix_id)) >= n


async def test_an_idle_resident_is_ended_by_timeout(chat: Chat) -> None:
    chat.adapter.chat.resident_idle_timeout_s = 0.3
    ws = await chat.ws()
    ix_id, _ref, _token = await started(chat, ws)
    await asyncio.sleep(0.4)  # waiting does not count as idle
    await chat.agent_takes("a1")
    await recv_type(ws, "agent_joined")
    assert ix_id in chat.adapter.sessions
    assert await recv_type(ws, "ended", within_s=3) == {"type": "ended", "by": "timeout"}
    (ev,) = await events(chat.redis, "COMPLETECALLER")
    assert ev.ix == ix_id


async def _link(chat: Chat, token: str) -> dict[str, str]:
    return await chat.service.channel_state("chat").link("token", token_hash(token))


# --- several processes ------------------------------------------------------------------


async def test_resume_on_another_process_delivers_what_was_missed_once(
        chat: Chat, chat2: Chat) -> None:
    ws = await chat.ws()
    ix_id, ref, token = await started(chat, ws)
    await chat.agent_takes("a1")
    await recv_type(ws, "agent_joined")
    await chat.service.agent_message("a1", ix_id, "Dzień dobry")
    await chat.pump()
    assert await recv(ws) == {"type": "message", "from": "agent", "text": "Dzień dobry"}
    await ws.close()
    await until(lambda: _async(ix_id not in chat.adapter.sessions))

    await chat.service.agent_message("a1", ix_id, "Jest Pan tam?")
    await chat.service.agent_message("a1", ix_id, "Halo?")
    await chat.pump()  # the first process has no socket: nothing delivered

    ws2 = await chat2.ws()  # the resident comes back through the other process
    await ws2.send_json({"type": "resume", "token": token})
    assert await recv(ws2) == {"type": "started", "ref": ref, "token": token}
    assert await recv(ws2) == {"type": "agent_joined", "name": "Anna"}
    assert await recv(ws2) == {"type": "message", "from": "agent", "text": "Jest Pan tam?"}
    assert await recv(ws2) == {"type": "message", "from": "agent", "text": "Halo?"}
    assert ix_id in chat2.adapter.sessions and ix_id not in chat.adapter.sessions

    # the event reaches the first process (no socket there); the second catches up on its tick
    await chat.service.agent_message("a1", ix_id, "Proszę napisać adres")
    await chat.pump()
    assert await recv(ws2) == {"type": "message", "from": "agent",
                               "text": "Proszę napisać adres"}
    await chat2.pump()  # at least once: the same events again deliver nothing twice
    await chat.pump()
    with pytest.raises(TimeoutError):
        await recv(ws2, within_s=0.3)

    await ws2.send_json({"type": "message", "text": "ul. Długa 1"})
    await until(lambda: _count(chat, ix_id, 4))
    await chat.service.complete("a1", ix_id)
    await chat.pump()
    assert await recv(ws2) == {"type": "ended", "by": "agent"}
    assert await _link(chat, token) == {}


async def test_a_drop_noticed_by_another_process_after_the_first_stopped(
        chat: Chat, chat2: Chat) -> None:
    """The process that held the socket is gone (stopped): another one ends the wait."""
    ws = await chat.ws()
    ix_id, _ref, token = await started(chat, ws)
    await asyncio.sleep(0.1)
    await chat.adapter.stop()  # closes the socket: the grace starts; no more sweeps there
    (ev,) = await eventually(lambda: events(chat.redis, "ABANDON"), within_s=3)
    assert ev.ix == ix_id and 100 <= ev.wait_ms < 300, ev  # up to the drop
    assert await _link(chat, token) == {}


async def test_the_sockets_of_a_crashed_process_count_as_dropped(
        chat: Chat, chat2: Chat) -> None:
    ws = await chat.ws()
    ix_id, _ref, token = await started(chat, ws)
    # the first process freezes: no ticks, no heartbeat (its socket stays open, unheard of)
    frozen = chat.adapter._loop_task
    assert frozen is not None
    chat.adapter._stopping = True
    await frozen
    await chat.service.channel_state("chat").drop_link("process", chat.adapter.instance)
    await until(lambda: _dropped(chat, token), within_s=3)
    (ev,) = await eventually(lambda: events(chat.redis, "ABANDON"), within_s=3)
    assert ev.ix == ix_id
    assert (await chat.service.store.interaction(ix_id))["state"] == "abandoned"


async def _dropped(chat: Chat, token: str) -> bool:
    return (await _link(chat, token)).get("disconnected_wall_ms", "0") != "0"


# --- the agent's side -------------------------------------------------------------------


async def test_an_unanswered_message_is_acknowledged_once(
        redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
        dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture) -> None:
    async with chat_process(redis, cfg, service, dispatcher,
                            agent_reply_timeout_s=0.3) as chat:
        ws = await chat.ws()
        ix_id, _ref, _token = await started(chat, ws)
        await chat.agent_takes("a1")
        await recv_type(ws, "agent_joined")
        with pytest.raises(TimeoutError):  # nothing to answer yet: no notice
            await recv_type(ws, "notice", within_s=0.5)
        await ws.send_json({"type": "message", "text": "Ile kosztuje karta parkingowa?"})
        notice = await recv_type(ws, "notice")
        assert notice["code"] == "reply_pending" and "odczytana" in notice["text"]
        assert "waits" in caplog.text and "a1" in caplog.text
        await ws.send_json({"type": "message", "text": "Halo?"})  # the same stretch
        with pytest.raises(TimeoutError):
            await recv_type(ws, "notice", within_s=0.6)
        await chat.service.agent_message("a1", ix_id, "50 zł")
        await chat.pump()
        assert (await recv_type(ws, "message"))["text"] == "50 zł"
        await ws.send_json({"type": "message", "text": "A na rok?"})  # a new stretch
        assert (await recv_type(ws, "notice"))["code"] == "reply_pending"
        assert (await chat.service.store.interaction(ix_id))["state"] == "connected"


async def test_an_inactive_agent_hands_the_chat_back_keeping_its_place(
        redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
        dispatcher: Dispatcher) -> None:
    async with chat_process(redis, cfg, service, dispatcher,
                            agent_idle_timeout_s=0.5) as chat:
        ws = await chat.ws()
        ix_id, _ref, _token = await started(chat, ws)
        enqueued = (await chat.service.store.interaction(ix_id))["enqueued_ms"]
        await chat.agent_takes("a1")
        await recv_type(ws, "agent_joined")
        await chat.service.agent_message("a1", ix_id, "Dzień dobry, w czym pomóc?")
        await chat.pump()
        await recv_type(ws, "message")
        await asyncio.sleep(0.7)  # the agent spoke last: the resident waits for nothing
        assert (await chat.service.store.interaction(ix_id))["state"] == "connected"

        await ws.send_json({"type": "message", "text": "Chcę zgłosić dziurę"})
        left = await recv_type(ws, "agent_left", within_s=3)
        assert left["reason"] == "agent_inactive" and "innego konsultanta" in left["text"]
        assert (await recv(ws))["type"] == "waiting"
        ix = await chat.service.store.interaction(ix_id)
        assert (ix["state"], ix["queue"], ix["agent"]) == ("queued", "chat", "")
        assert ix["enqueued_ms"] == enqueued  # its place in the queue is kept
        (tr,) = await events(chat.redis, "TRANSFER")
        extra = tr.model_extra or {}
        assert (tr.agent, extra.get("by"), extra.get("note")) == ("a1", "system",
                                                                   "agent inactive")
        await chat.pump()

        # another agent takes it; a1 (who let it wait) is not offered it again
        await ready(chat.service, "a2")
        assert await chat.dispatcher.match_round() == 1
        assert await chat.service.offers("a1") == []
        (offer,) = await chat.service.offers("a2")
        await chat.service.accept("a2", offer["id"])
        await chat.pump()
        assert await recv_type(ws, "agent_joined") == {"type": "agent_joined", "name": "Bartek"}
        await chat.service.agent_message("a2", ix_id, "Gdzie jest ta dziura?")
        await chat.pump()
        assert (await recv_type(ws, "message"))["text"] == "Gdzie jest ta dziura?"


# --- the start form ---------------------------------------------------------------------


async def test_a_contact_and_consent_go_to_the_intake(
        chat: Chat, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[IntakeRequest] = []
    real = chat.service.create_interaction

    async def spy(req: IntakeRequest) -> Any:
        seen.append(req)
        return await real(req)

    monkeypatch.setattr(chat.service, "create_interaction", spy)
    ws = await chat.ws()
    await ws.send_json({**START, "contact": "600 100 200", "consent": True})
    assert (await recv(ws))["type"] == "started"
    ws2 = await chat.ws()
    await ws2.send_json({**START, "contact": " Jan.Kowalski@Example.PL "})
    assert (await recv(ws2))["type"] == "started"
    assert [(r.contacts, r.consent) for r in seen] == [
        (["+48600100200"], True), (["jan.kowalski@example.pl"], False)]
    # kept with the conversation either way, for the notices of a case made of it
    assert [r.meta.get("contact") for r in seen] == ["+48600100200", "jan.kowalski@example.pl"]
    ws3 = await chat.ws()
    await ws3.send_json({**START, "contact": "not a contact", "consent": True})
    assert (await recv(ws3))["code"] == "invalid_contact"
    assert len(seen) == 2
    await ws3.send_json(START)  # the form may be sent again, without the contact
    assert (await recv(ws3))["type"] == "started"


async def test_the_page_offers_an_unchecked_consent(chat: Chat) -> None:
    page = await (await chat.client.get("/chat")).text()
    assert 'id="contact"' in page and 'id="consent" type="checkbox">' in page
    assert "checked>" not in page
    assert "Remember me so agents can see my earlier contacts with the city" in page
