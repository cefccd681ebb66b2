"""The Prometheus collector of live queue figures (router/metrics.py)."""

from __future__ import annotations

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from queues.keys import Keys
from router.metrics import LiveSnapshotCache, StatsCollector
from router.stats import StatsAggregator
from tests.stats_events import Events, abandon, connect, enterqueue
from tests.test_stats import make_config


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_no_snapshot_yet_gives_no_samples() -> None:
    registry = CollectorRegistry()
    registry.register(StatsCollector(lambda: None))
    assert samples(registry) == {}


async def test_live_gauges(redis: aioredis.Redis) -> None:
    keys, cfg = Keys(), make_config()
    agg = StatsAggregator(redis, keys, cfg)
    seconds, micros = await redis.time()
    now = seconds * 1000 + micros // 1000
    await redis.sadd(keys.queue_buckets("info"), "b1")
    await redis.zadd(keys.bucket("b1"), {"w1": now - 12_000})
    await redis.sadd(keys.agents, "anna")
    await redis.hset(keys.agent("anna"), mapping={
        "state": "ready", "skills": '{"general": 5}', "cap:voice": "1", "load:voice": "1",
        "state_since": str(now)})  # fmt: skip
    await Events(redis).add_all(
        enterqueue(now - 3000, "a", "info"),
        connect(now - 2000, "a", "info", "anna", 1000),
        enterqueue(now - 1500, "b", "info"),
        abandon(now - 1000, "b", "info", 500),  # short
    )
    while await agg.fold_once():
        pass
    cache = LiveSnapshotCache(agg, max_age_s=60)
    registry = CollectorRegistry()
    registry.register(StatsCollector(cache.latest))
    assert samples(registry) == {}
    first = await cache.get()
    assert await cache.get() is first  # fresh enough: no second read
    got = samples(registry)
    info = ("queue", "info")
    assert got[("cityline_queue_waiting", (("channel", "voice"), info))] == 1
    assert got[("cityline_queue_longest_wait_seconds", (("channel", "voice"), info))] >= 12
    assert got[("cityline_queue_agents", (info, ("state", "busy")))] == 1
    assert got[("cityline_queue_agents", (info, ("state", "ready")))] == 0
    assert got[("cityline_queue_service_level_ratio", (info,))] == 1.0
    assert got[("cityline_queue_service_level_target_ratio", (info,))] == 0.8
    assert got[("cityline_queue_asa_seconds", (info,))] == 1.0
    assert got[("cityline_queue_contacts_today", (("outcome", "short_abandoned"), info))] == 1
    assert got[("cityline_channel_waiting", (("channel", "voice"),))] == 1
    # no handled contact yet: no AHT sample rather than 0 or NaN; the short abandon leaves the
    # abandonment rate without a denominator... except the answered one: 0 / (2 - 1)
    assert ("cityline_queue_aht_seconds", (info,)) not in got
    assert got[("cityline_queue_abandonment_ratio", (info,))] == 0.0
    assert ("cityline_queue_asa_seconds", (("queue", "mail"),)) not in got
    # no handle time known: the staffing figures are absent too, the arrival rate is there
    assert ("cityline_queue_agents_needed", (("model", "erlang_c"), info)) not in got
    assert ("cityline_queue_agents_needed", (("model", "erlang_c"), ("queue", "mail"))) in got
    assert got[("cityline_queue_arrival_rate_per_hour", (info,))] > 0
    assert got[("cityline_queue_agents_needed", (("model", "erlang_a"), ("queue", "mail")))] == 0
    assert got[("cityline_stats_snapshot_timestamp_seconds", ())] == first.now_ms / 1000
