"""What the supervisor wall shows, as one JSON-ready payload: tiles, agent grid, waiting list.

The numbers come from the live snapshot (router/stats_live.py, the figures of
router/stats_figures.py) and are formatted here, once, with the helpers `cityline stats` uses;
the page's script only copies strings into place. The on/off-target judgement is made here too,
so it can be tested without a browser:

- service level: "off" below the queue's target, "ok" at or above it, "none" without data;
- abandonment rate: "off" above the queue's `abandon_target_pct`;
- staffing: "off" when fewer agents are signed in (ready or busy) than Erlang C says are needed.

First-contact resolution and the knowledge base's part of it (`kb_resolved`: its count, its share
of the first-contact resolutions and of the handled contacts) have no target: shown, not judged.

`WallFeed` keeps the latest payload for `max_age_s`, so any number of open walls cost one set
of Redis reads per second, not one each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from queues.keys import Keys
from router.config import CitylineConfig
from router.stats import AgentLive, LiveSnapshot, QueueFigures, QueueLive, StatsAggregator
from router.stats_format import pct, secs

__all__ = ["WAITING_PER_QUEUE", "WallFeed", "build_payload", "read_waiting"]

# How many waiting interactions of each queue the wall lists (the first in line): enough to act
# on, and the cost of a refresh stays bounded however long the queue grows.
WAITING_PER_QUEUE = 10
SUBJECT_CHARS = 80
_IX_FIELDS = ("id", "ref", "queue", "channel", "state", "priority", "enqueued_ms", "language",
              "subject", "resident_name")  # fmt: skip


def label(labels: Mapping[str, str], cfg: CitylineConfig, fallback: str) -> str:
    return labels.get(cfg.city.default_language) or fallback


def _sl_state(value: float | None, target_pct: float | None) -> str:
    if value is None or target_pct is None:
        return "none"
    return "ok" if value * 100 >= target_pct else "off"


def _abandon_state(value: float | None, target_pct: float | None) -> str:
    if value is None or target_pct is None:
        return "none"
    return "ok" if value * 100 <= target_pct else "off"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _figures(prefix: str, f: QueueFigures, q: QueueLive) -> tuple[dict[str, str], dict[str, str]]:
    fields = {
        f"{prefix}_offered": str(f.offered),
        f"{prefix}_answered": str(f.answered),
        f"{prefix}_abandoned": str(f.abandoned),
        f"{prefix}_sl": pct(f.service_level),
        f"{prefix}_abandon": pct(f.abandonment_rate),
        # first-contact resolution, and how many of those a knowledge card settled
        f"{prefix}_fcr": pct(f.fcr_rate),
        f"{prefix}_kb": str(f.kb_resolved),
        f"{prefix}_kb_share": pct(f.kb_fcr_share),
        f"{prefix}_kb_rate": pct(f.kb_rate),
    }
    states = {
        f"{prefix}_sl": _sl_state(f.service_level, q.target_pct),
        f"{prefix}_abandon": _abandon_state(f.abandonment_rate, q.abandon_target_pct),
    }
    return fields, states


def queue_tile(q: QueueLive, cfg: CitylineConfig) -> dict[str, Any]:
    configured = cfg.queues.get(q.name)
    staffed = q.agents.ready + q.agents.busy
    need = q.staffing.erlang_c_agents
    fields = {
        "label": label(configured.labels, cfg, q.name) if configured else q.name,
        "channel": q.channel,
        "waiting": str(q.waiting),
        "longest_wait": secs(q.longest_wait_s) if q.waiting else "-",
        "ready": str(q.agents.ready),
        "busy": str(q.agents.busy),
        "paused": str(q.agents.paused),
        "sl_target": "-" if q.target_pct is None else
        f"{q.target_pct:g}% in {q.threshold_s:g} s",
        "abandon_target": "-" if q.abandon_target_pct is None else f"≤{q.abandon_target_pct:g}%",
        "asa": secs(q.today.asa_s),
        "aht": secs(q.today.aht_s),
        "erlang_c": _count(need),
        "erlang_a": _count(q.staffing.erlang_a_agents),
        "arrival_rate": "-" if q.staffing.arrival_rate_per_h is None
        else f"{q.staffing.arrival_rate_per_h:.0f}/h",
    }  # fmt: skip
    states = {"staffing": "none" if need is None else ("ok" if staffed >= need else "off")}
    for prefix, figures in (("today", q.today), ("interval", q.interval)):
        more_fields, more_states = _figures(prefix, figures, q)
        fields |= more_fields
        states |= more_states
    return {"name": q.name, "channel": q.channel, "fields": fields, "states": states}


def _shown_state(a: AgentLive) -> str:
    """ready / busy / paused / wrapup / offline, as the grid colours an agent."""
    if a.state == "ready":
        return "busy" if any(a.load.values()) else "ready"
    if a.state == "not_ready":
        return "paused"
    return a.state


def agent_row(a: AgentLive, cfg: CitylineConfig) -> dict[str, Any]:
    reason = cfg.reason_codes.get(a.reason) if a.reason else None
    current = ", ".join(f"{ch} {n}" for ch, n in sorted(a.load.items()) if n)
    shown = _shown_state(a)
    return {
        "id": a.id,
        "state": shown,
        # the stored state, for the actions menu (a busy agent is "ready" underneath)
        "raw_state": a.state,
        "fields": {
            "name": a.name or a.id,
            "state": shown,
            "reason": (label(reason.labels, cfg, a.reason) if reason else a.reason) or "",
            "time_in_state": secs(a.state_s),
            "current": current or "-",
            "handled": str(a.handled_today),
            "aht": secs(a.today.aht_s),
            "occupancy": pct(a.today.occupancy),
        },
    }


def waiting_row(ix: Mapping[str, str], now_ms: int, cfg: CitylineConfig) -> dict[str, Any]:
    enqueued = int(ix.get("enqueued_ms") or 0)
    subject = ix.get("subject") or ""
    if len(subject) > SUBJECT_CHARS:
        subject = subject[: SUBJECT_CHARS - 1] + "…"
    queue = ix.get("queue", "")
    configured = cfg.queues.get(queue)
    return {
        "id": ix.get("id", ""),
        "queue": queue,
        "channel": ix.get("channel", ""),
        "priority": int(ix.get("priority") or 0),
        "fields": {
            "ref": ix.get("ref") or ix.get("id", ""),
            "queue": label(configured.labels, cfg, queue) if configured else queue,
            "channel": ix.get("channel", ""),
            "priority": str(int(ix.get("priority") or 0)),
            "waited": secs(max(0.0, (now_ms - enqueued) / 1000)) if enqueued else "-",
            "language": ix.get("language", ""),
            "subject": subject,
        },
    }


def build_payload(
    snapshot: LiveSnapshot, waiting: Sequence[Mapping[str, str]], cfg: CitylineConfig
) -> dict[str, Any]:
    return {
        "now_ms": snapshot.now_ms,
        "day": snapshot.day,
        "interval_start_ms": snapshot.interval_start_ms,
        "queues": [queue_tile(q, cfg) for q in snapshot.queues],
        "agents": [agent_row(a, cfg) for a in snapshot.agents],
        "waiting": [waiting_row(ix, snapshot.now_ms, cfg) for ix in waiting],
        "total": {
            "offered": str(snapshot.total.offered),
            "answered": str(snapshot.total.answered),
            "abandoned": str(snapshot.total.abandoned),
            "sl": pct(snapshot.total.service_level),
            "abandon": pct(snapshot.total.abandonment_rate),
            "asa": secs(snapshot.total.asa_s),
            "fcr": pct(snapshot.total.fcr_rate),
            "kb": str(snapshot.total.kb_resolved),
            "kb_share": pct(snapshot.total.kb_fcr_share),
        },
    }


async def read_waiting(
    redis: aioredis.Redis, keys: Keys, queues: Sequence[str], per_queue: int = WAITING_PER_QUEUE
) -> list[dict[str, str]]:
    """The first `per_queue` waiting interactions of each queue, highest priority first, then
    longest waiting; three pipelined round trips whatever the queues' lengths."""
    async with redis.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.smembers(keys.queue_buckets(name))
        bucket_sets = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for buckets in bucket_sets:
            for bucket in sorted(buckets):
                pipe.zrange(keys.bucket(bucket), 0, per_queue - 1)
        heads = await pipe.execute()
    ids = list(dict.fromkeys(ix_id for head in heads for ix_id in head))
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for ix_id in ids:
            pipe.hmget(keys.ix(ix_id), _IX_FIELDS)
        rows = await pipe.execute()
    found = [
        dict(zip(_IX_FIELDS, (v or "" for v in row), strict=True))
        for row in rows
        if row and row[4] == "queued"
    ]
    order = {name: i for i, name in enumerate(queues)}
    found.sort(
        key=lambda ix: (
            order.get(ix["queue"], len(order)),
            -int(ix["priority"] or 0),
            int(ix["enqueued_ms"] or 0),
        )
    )
    out: list[dict[str, str]] = []
    per: dict[str, int] = {}
    for ix in found:
        per[ix["queue"]] = per.get(ix["queue"], 0) + 1
        if per[ix["queue"]] <= per_queue:
            out.append(ix)
    return out


class WallFeed:
    """The latest wall payload, shared by every open wall; refreshed when older than max_age_s."""

    def __init__(self, aggregator: StatsAggregator, max_age_s: float = 0.9) -> None:
        self.aggregator = aggregator
        self.max_age_s = max_age_s
        self._payload: dict[str, Any] | None = None
        self._taken = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self) -> dict[str, Any]:
        agg = self.aggregator
        snapshot = await agg.live_snapshot()
        waiting = await read_waiting(agg.redis, agg.keys, list(agg.cfg.queues))
        self._payload, self._taken = build_payload(snapshot, waiting, agg.cfg), time.monotonic()
        return self._payload

    async def get(self) -> dict[str, Any]:
        async with self._lock:  # one refresh at a time; the others share its result
            if self._payload is None or time.monotonic() - self._taken >= self.max_age_s:
                return await self.refresh()
            return self._payload
