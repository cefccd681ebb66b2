"""A waiting resident's place in line and estimated wait, and the promise being recorded."""

from __future__ import annotations

import redis.asyncio as aioredis

from queues.keys import Keys
from router.config import CitylineConfig
from router.metrics import LiveSnapshotCache
from router.service import RoutingService
from router.stats import StatsAggregator
from router.waiting import DEFAULT_AHT_S, WaitEstimator
from tests.routing_fixtures import call, events, ready


async def test_position_counts_higher_priority_and_earlier_arrivals_across_buckets(
    service: RoutingService,
):
    first = await call(service)
    english = await call(service, language="en")  # another bucket of the same queue
    urgent = await call(service, priority=2)  # later, but ahead of everyone
    last = await call(service)
    pos = {ix: await service.store.position(ix) for ix in (first, english, urgent, last)}
    assert pos == {urgent: 1, first: 2, english: 3, last: 4}


async def test_estimate_is_announced_and_the_first_promise_kept(
    service: RoutingService, redis: aioredis.Redis, cfg: CitylineConfig
):
    await ready(service, "a1", "a2")  # two agents for the queue, nobody answers here
    ixs = [await call(service) for _ in range(5)]
    estimator = WaitEstimator(service.store, LiveSnapshotCache(StatsAggregator(redis, Keys(), cfg)))
    est = await estimator.estimate(ixs[4], "voice")
    assert est is not None and est.position == 5
    assert est.wait_s == 2 * DEFAULT_AHT_S  # four ahead, served two at a time
    await service.resident_left(ixs[0])
    again = await estimator.estimate(ixs[4], "voice")
    assert again is not None and again.position == 4
    stored = await service.store.interaction(ixs[4])
    assert (stored["promised_pos"], stored["announced_pos"], stored["announcements"]) == (
        "5", "4", "2")
    assert stored["promised_wait_ms"] == str(int(2 * DEFAULT_AHT_S * 1000))
    await service.resident_left(ixs[4])
    assert await estimator.estimate(ixs[4], "voice") is None  # gone: nothing recorded


async def test_the_promise_is_measured_when_the_resident_is_answered(
    service: RoutingService, redis: aioredis.Redis, cfg: CitylineConfig, dispatcher
):
    ix = await call(service)
    estimator = WaitEstimator(service.store, LiveSnapshotCache(StatsAggregator(redis, Keys(), cfg)))
    est = await estimator.estimate(ix, "voice")
    assert est is not None and est.wait_s == 0  # first in line: "you are next"
    await ready(service, "a1")
    await dispatcher.match_round()
    await service.accept("a1", ix)
    (conn,) = [e for e in await events(redis, "CONNECT")]
    extra = conn.model_extra or {}
    promised_at = int((await service.store.interaction(ix))["promised_at_ms"])
    assert extra["promised_wait_ms"] == "0"
    assert int(extra["waited_after_promise_ms"]) == conn.time_ms - promised_at
    agg = StatsAggregator(redis, Keys(), cfg)
    await agg.fold_once()
    report = await agg.period_report(conn.time_ms - 1, conn.time_ms + 1)
    voice = next(q.counters for q in report.queues if q.name == "voice")
    assert voice["promises"] == 1
    assert voice.get("promises_broken", 0) == (1 if conn.time_ms > promised_at else 0)
