"""The web chat end to end: the real app on a TestServer, aiohttp's WebSocket client, the real
Redis, the dispatcher and the routing service playing the agent, router events fed through a real
EventFeed to the adapter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import WSMsgType, test_utils

from channels.chat.adapter import ChatAdapter
from queues.keys import Keys
from router.config import CitylineConfig
from router.config_chat import ChatConfig
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.http.app import AppContext, create_app
from router.metrics import LiveSnapshotCache
from router.service import RoutingService
from router.stats import StatsAggregator
from router.waiting import WaitEstimator
from tests.routing_fixtures import events, ready

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


@pytest.fixture
async def chat(redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService,
               dispatcher: Dispatcher) -> AsyncIterator[Chat]:
    chat_cfg = ChatConfig(reconnect_grace_s=0.3, waiting_update_every_s=0.2,
                          max_message_chars=100, resident_idle_timeout_s=30)
    estimator = WaitEstimator(service.store, LiveSnapshotCache(StatsAggregator(redis, Keys(),
                                                                               cfg)))
    adapter = ChatAdapter(service, cfg, chat_cfg, estimator, tick_s=0.05)
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=service.store),
                     extra_setup=[adapter.setup_routes])
    server = test_utils.TestServer(app, host="127.0.0.1", port=0)
    client = test_utils.TestClient(server)
    await client.start_server()
    feed = EventFeed(redis, Keys(), adapter, "test")
    await feed.ensure_group()
    await adapter.start()
    try:
        yield Chat(adapter, client, feed, service, dispatcher, redis)
    finally:
        await adapter.stop()
        await client.close()


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
    await until(lambda: _async(chat.adapter.sessions[ix_id].ws is None))

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
    await until(lambda: _async(chat.adapter.sessions.get(ix_id) is None), within_s=3)
    (ev,) = await events(chat.redis, "ABANDON")
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
