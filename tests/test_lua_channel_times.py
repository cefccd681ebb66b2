"""Transitions stamped with the channel's own time (Asterisk's event Timestamp): the recorded
waits and talk times equal the channel's to the millisecond, clamped into [previous, now]."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from router.service import RoutingService
from tests.routing_fixtures import call, events, ready


async def _offered(service: RoutingService, dispatcher) -> tuple[str, dict[str, str]]:
    await ready(service, "a1")
    ix = await call(service)
    await dispatcher.match_round()
    return ix, await service.store.interaction(ix)


async def test_accept_and_complete_take_the_channel_times(
    service: RoutingService, dispatcher, redis: aioredis.Redis
):
    ix, stored = await _offered(service, dispatcher)
    await asyncio.sleep(0.03)
    answered = int(stored["offered_ms"]) + 7  # the phone answered 7 ms after it started ringing
    wait = await service.accept("a1", ix, at_ms=answered)
    assert wait == answered - int(stored["entered_ms"])
    await asyncio.sleep(0.03)
    hung_up = answered + 20
    await service.resident_ended(ix, at_ms=hung_up)
    (conn,) = await events(redis, "CONNECT")
    (done,) = await events(redis, "COMPLETECALLER")
    assert (conn.time_ms, conn.wait_ms, conn.ring_ms) == (answered, wait, 7)
    assert (done.time_ms, done.talk_ms) == (hung_up, 20)


async def test_channel_times_are_clamped_between_the_previous_transition_and_now(
    service: RoutingService, dispatcher, redis: aioredis.Redis
):
    ix, stored = await _offered(service, dispatcher)
    await service.accept("a1", ix, at_ms=int(stored["offered_ms"]) - 5_000)  # before the offer
    future = await service.store.now_ms() + 60_000
    await service.complete("a1", ix, at_ms=future)  # after now
    (conn,) = await events(redis, "CONNECT")
    (done,) = await events(redis, "COMPLETEAGENT")
    assert conn.time_ms == int(stored["offered_ms"])
    assert conn.time_ms <= done.time_ms < future


async def test_ring_failure_reported_by_the_channel_is_a_miss_before_the_deadline(
    service: RoutingService, dispatcher, redis: aioredis.Redis
):
    ix, stored = await _offered(service, dispatcher)  # voice offer timeout: 15 s
    await asyncio.sleep(0.02)
    failed = int(stored["offered_ms"]) + 3
    await service.ring_failed(ix, at_ms=failed)
    (rona,) = await events(redis, "RINGNOANSWER")
    assert (rona.time_ms, rona.ring_ms, rona.reason) == (failed, 3, "timeout")
    assert (await service.store.interaction(ix))["state"] == "queued"
    assert (await service.agent_view("a1"))["misses"] == "1"


async def test_meta_is_attached_to_an_open_interaction_only(service: RoutingService) -> None:
    ix = await call(service)
    assert await service.attach_meta(ix, {"lat": 52.2, "lon": 21.0})
    meta = (await service.store.interaction(ix))["meta"]
    assert '"lat":52.2' in meta.replace(" ", "") and '"lon":21' in meta.replace(" ", "")
    await service.resident_left(ix)
    assert not await service.attach_meta(ix, {"lat": 1.0})  # ended: left as it was
    assert '"lat":52.2' in (await service.store.interaction(ix))["meta"].replace(" ", "")
