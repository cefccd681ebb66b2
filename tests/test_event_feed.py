"""Events reach each channel's adapter once, also with several processes, and a failing handler
is retried (by another process too) and then given up, never blocking the channel."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from queues.keys import Keys
from router import event_feed
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.models import Channel, Event
from router.service import RoutingService
from tests.routing_fixtures import call, ready


class Recorder:
    def __init__(self, channel: str, fail_times: int = 0) -> None:
        self.channel = channel
        self.seen: list[tuple[str, str, str]] = []
        self.fail_times = fail_times

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("the PBX did not answer")
        self.seen.append((event.type, event.ix, interaction.get("state", "")))


async def test_each_event_of_a_channel_reaches_one_adapter_instance(
    service: RoutingService, dispatcher: Dispatcher, redis: aioredis.Redis
):
    voice = [Recorder("voice"), Recorder("voice")]
    chat = Recorder("chat")
    feeds = [EventFeed(redis, Keys(), r, f"proc-{i}") for i, r in enumerate([*voice, chat])]
    for feed in feeds:
        await feed.ensure_group()
    await ready(service, "a1", "a2")
    calls = [await call(service) for _ in range(2)]
    chat_ix = await call(service, "chat", channel=Channel.chat)
    await dispatcher.match_round()
    while sum([await asyncio.gather(*(f.read_once(block_ms=None) for f in feeds))][0]):
        pass
    voice_seen = voice[0].seen + voice[1].seen
    offers = sorted(ix for ev, ix, _ in voice_seen if ev == "OFFER")
    assert offers == sorted(calls)  # each offer once, to one of the two voice adapters
    assert {ev for ev, _, _ in voice_seen} == {"ENTERQUEUE", "OFFER"}
    assert chat.seen and all(ix == chat_ix for _, ix, _ in chat.seen)
    assert all(state == "offered" for ev, _, state in voice_seen if ev == "OFFER")


async def test_failed_handler_is_retried_by_another_process_then_given_up(
    service: RoutingService, redis: aioredis.Redis, monkeypatch
):
    monkeypatch.setattr(event_feed, "RETRY_IDLE_MS", 0)
    flaky = Recorder("voice", fail_times=1)
    healthy = Recorder("voice")
    first, second = EventFeed(redis, Keys(), flaky, "p1"), EventFeed(redis, Keys(), healthy, "p2")
    await first.ensure_group()
    ix = await call(service)
    assert await first.read_once(block_ms=None) == 1 and flaky.seen == []  # failed: pending
    await second._retry_pending()  # another process takes it over
    assert healthy.seen == [("ENTERQUEUE", ix, "queued")]
    assert (await redis.xpending("cl:events", "ch:voice"))["pending"] == 0

    doomed = Recorder("voice", fail_times=99)
    feed = EventFeed(redis, Keys(), doomed, "p3")
    await call(service)
    await feed.read_once(block_ms=None)
    for _ in range(event_feed.MAX_DELIVERIES):
        await feed._retry_pending()
    assert (await redis.xpending("cl:events", "ch:voice"))["pending"] == 0  # given up, logged
