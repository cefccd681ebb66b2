"""Live queue figures for Prometheus: a custom collector over the latest `LiveSnapshot`.

`prometheus_client` collects synchronously while it renders /metrics, and reading the figures
needs Redis (async). So the collector only formats a snapshot that is already there:
`LiveSnapshotCache` keeps the latest one, refreshed at most every `max_age_s`. The /metrics
handler awaits `cache.get()` just before `generate_latest(registry)`; the collector is built
with `StatsCollector(cache.latest)`:

    cache = LiveSnapshotCache(aggregator)
    registry.register(StatsCollector(cache.latest))
    ...
    await cache.get()            # in the /metrics handler, then generate_latest(registry)

A figure that has no value (no answered contact yet: no ASA) is left out rather than exported as
NaN or 0, so dashboards show "no data" instead of a false number. Ratios are 0..1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from router.http.app import REGISTRY_KEY
from router.http.health import BEFORE_SCRAPE_KEY
from router.stats import LiveSnapshot, StatsAggregator

SnapshotProvider = Callable[[], LiveSnapshot | None]

_AGENT_STATES = ("ready", "busy", "paused", "offline")


class LiveSnapshotCache:
    """The latest live snapshot, refreshed from Redis when older than `max_age_s`."""

    def __init__(self, aggregator: StatsAggregator, max_age_s: float = 5.0) -> None:
        self.aggregator = aggregator
        self.max_age_s = max_age_s
        self._snapshot: LiveSnapshot | None = None
        self._taken = 0.0
        self._lock = asyncio.Lock()

    def latest(self) -> LiveSnapshot | None:
        return self._snapshot

    async def refresh(self) -> LiveSnapshot:
        snapshot = await self.aggregator.live_snapshot()
        self._snapshot, self._taken = snapshot, time.monotonic()
        return snapshot

    async def get(self) -> LiveSnapshot:
        # one refresh at a time: concurrent scrapes share it instead of each reading Redis
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._taken >= self.max_age_s:
                return await self.refresh()
            return self._snapshot


def _families() -> dict[str, GaugeMetricFamily]:
    q, qc = ["queue"], ["queue", "channel"]
    g = GaugeMetricFamily
    return {
        "waiting": g("cityline_queue_waiting", "Interactions waiting in the queue now", labels=qc),
        "longest": g(
            "cityline_queue_longest_wait_seconds",
            "Age of the oldest interaction waiting in the queue (0 when none waits)",
            labels=qc,
        ),
        "agents": g(
            "cityline_queue_agents",
            "Agents whose skills meet the queue's minimum levels, by state "
            "(busy = ready and holding work)",
            labels=["queue", "state"],
        ),
        "sl": g(
            "cityline_queue_service_level_ratio",
            "Service level today: answered within the threshold / (answered + abandoned after it)",
            labels=q,
        ),
        "sl_target": g(
            "cityline_queue_service_level_target_ratio", "Service-level target", labels=q
        ),
        "abandon": g(
            "cityline_queue_abandonment_ratio",
            "Abandonment rate today: (abandoned - short) / (offered - short)",
            labels=q,
        ),
        "asa": g("cityline_queue_asa_seconds", "Mean wait of the answered today", labels=q),
        "aht": g("cityline_queue_aht_seconds", "Mean talk + wrap-up time today", labels=q),
        "today": g(
            "cityline_queue_contacts_today",
            "Contacts today by outcome (offered, answered, abandoned, short_abandoned, timeouts)",
            labels=["queue", "outcome"],
        ),
        "rate": g(
            "cityline_queue_arrival_rate_per_hour",
            "Arrival rate over the staffing window",
            labels=q,
        ),
        "needed": g(
            "cityline_queue_agents_needed",
            "Agents needed now for the service-level target (model erlang_c or erlang_a)",
            labels=["queue", "model"],
        ),
        "ch_waiting": g(
            "cityline_channel_waiting",
            "Interactions waiting on the channel now",
            labels=["channel"],
        ),
        "ch_longest": g(
            "cityline_channel_longest_wait_seconds",
            "Age of the oldest interaction waiting on the channel",
            labels=["channel"],
        ),
        "taken": g(
            "cityline_stats_snapshot_timestamp_seconds",
            "Redis time at which these live figures were read",
        ),
    }


class StatsCollector(Collector):
    """Exposes the live per-queue gauges of the snapshot that `snapshot_provider` returns."""

    def __init__(self, snapshot_provider: SnapshotProvider) -> None:
        self.snapshot_provider = snapshot_provider

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # names only: lets the registry check for clashes without reading a snapshot
        return iter(_families().values())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot_provider()
        families = _families()
        if snapshot is not None:
            _fill(families, snapshot)
        return iter(families.values())


def _fill(m: dict[str, GaugeMetricFamily], snap: LiveSnapshot) -> None:
    def put(name: str, labels: list[str], value: float | None) -> None:
        if value is not None:
            m[name].add_metric(labels, float(value))

    for q in snap.queues:
        put("waiting", [q.name, q.channel], q.waiting)
        put("longest", [q.name, q.channel], q.longest_wait_s)
        for state in _AGENT_STATES:
            put("agents", [q.name, state], getattr(q.agents, state))
        put("sl", [q.name], q.today.service_level)
        put("sl_target", [q.name], None if q.target_pct is None else q.target_pct / 100)
        put("abandon", [q.name], q.today.abandonment_rate)
        put("asa", [q.name], q.today.asa_s)
        put("aht", [q.name], q.today.aht_s)
        for outcome in ("offered", "answered", "abandoned", "short_abandoned", "timeouts"):
            put("today", [q.name, outcome], getattr(q.today, outcome))
        put("rate", [q.name], q.staffing.arrival_rate_per_h)
        put("needed", [q.name, "erlang_c"], q.staffing.erlang_c_agents)
        put("needed", [q.name, "erlang_a"], q.staffing.erlang_a_agents)
    for c in snap.channels:
        put("ch_waiting", [c.name], c.waiting)
        put("ch_longest", [c.name], c.longest_wait_s)
    put("taken", [], snap.now_ms / 1000)


def setup_metrics(app: web.Application, aggregator: StatsAggregator) -> None:
    """Expose the live per-queue figures on the app's /metrics."""
    cache = LiveSnapshotCache(aggregator)
    app[REGISTRY_KEY].register(StatsCollector(cache.latest))
    app.setdefault(BEFORE_SCRAPE_KEY, []).append(cache.get)
