"""A supervisor raising a waiting interaction's priority (reprioritise.lua)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from router.dispatcher import Dispatcher
from router.errors import CitylineError
from router.service import RoutingService
from tests.routing_fixtures import call, events, offered_to, ready


async def test_raised_priority_is_served_first_and_keeps_its_time(
        service: RoutingService, dispatcher: Dispatcher, redis: aioredis.Redis) -> None:
    first = await call(service, resident="+48600000001")
    await asyncio.sleep(0.002)
    second = await call(service, resident="+48600000002")
    before = await service.store.interaction(second)
    assert await service.set_priority(second, 5, by="maria") == 1
    after = await service.store.interaction(second)
    assert after["priority"] == "5" and after["state"] == "queued"
    assert after["enqueued_ms"] == before["enqueued_ms"]  # its place in time is kept
    assert after["max_at"] == before["max_at"] and after["esc_at"] == before["esc_at"]
    assert await service.store.position(second) == 1
    assert await service.store.position(first) == 2
    (ev,) = await events(redis, "PRIORITY")
    assert (ev.ix, ev.queue) == (second, "voice")
    assert (ev.model_extra or {})["from_priority"] == "0"
    assert (ev.model_extra or {})["priority"] == "5" and (ev.model_extra or {})["by"] == "maria"
    await ready(service, "a1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [second]


async def test_only_a_waiting_interaction_changes_priority(
        service: RoutingService, dispatcher: Dispatcher, redis: aioredis.Redis) -> None:
    ix = await call(service)
    await ready(service, "a1")
    await dispatcher.match_round()
    stream_before = await redis.xlen("cl:events")
    with pytest.raises(CitylineError) as err:
        await service.set_priority(ix, 5, by="maria")
    assert err.value.code == "invalid_state"
    assert await redis.xlen("cl:events") == stream_before  # a refusal changes nothing
