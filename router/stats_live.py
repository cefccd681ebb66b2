"""The live snapshot for the supervisor wall: waiting now, agents now, today and this interval.

Waiting contacts and agent states come from the routing's live state (queue buckets, agent
hashes); today's and this interval's figures from the aggregates (`StatsReader`); the staffing
each queue and channel needs from the traffic of the last `stats.erlang_window_intervals`
intervals (router/stats_figures.py `staffing`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import redis.asyncio as aioredis

from router.stats_figures import (
    AgentCounts,
    AgentFigures,
    AgentLive,
    ChannelLive,
    LiveSnapshot,
    QueueFigures,
    QueueLive,
    merge_counters,
    staffing,
)
from router.stats_fold import ALL, int_field
from router.stats_intervals import INTERVAL_MS, day_bounds_ms, interval_start, local_day
from router.stats_reports import StatsReader

__all__ = ["LiveView"]


class LiveView:
    """Builds the live snapshot from the routing's live state and the interval aggregates."""

    def __init__(self, redis: aioredis.Redis, reader: StatsReader) -> None:
        self.redis = redis
        self.reader = reader
        self.keys = reader.keys

    async def snapshot(self) -> LiveSnapshot:
        """What the supervisor wall shows now: waiting, agents, today's and this interval's
        figures and the staffing the recent traffic needs, per queue, channel and agent."""
        reader = self.reader
        cfg, tz = reader.cfg, reader.tz
        now = await reader.store.now_ms()
        today = local_day(now, tz)
        day_start, _ = day_bounds_ms(today, tz)
        current = interval_start(now)
        data = await reader.intervals(day_start, current + INTERVAL_MS)
        # the Erlang window: the current interval and the ones before it, up to now
        window_ivs = [current - i * INTERVAL_MS for i in range(cfg.stats.erlang_window_intervals)]
        elapsed_s = (now - window_ivs[-1]) / 1000
        channels = reader.channel_names(())
        window = await reader.read_direct(
            [*(f"q:{q}" for q in cfg.queues), *(f"c:{c}" for c in channels)], window_ivs
        )
        waiting = await self._waiting(list(cfg.queues))
        agents = await self._agent_hashes()

        def today_of(scope: str) -> dict[str, int]:
            return merge_counters(data.get(scope, {}).values())

        def now_of(scope: str) -> dict[str, int]:
            return data.get(scope, {}).get(current, {})

        queues: list[QueueLive] = []
        for name, q in cfg.queues.items():
            scope = f"q:{name}"
            count, oldest = waiting[name]
            queues.append(
                QueueLive(
                    name=name,
                    channel=str(q.channel),
                    waiting=count,
                    longest_wait_s=max(0.0, (now - oldest) / 1000) if oldest is not None else 0.0,
                    agents=_count_agents(
                        a for a in agents.values() if _qualifies(a, q.skills, str(q.channel))
                    ),
                    today=QueueFigures.from_counters(today_of(scope)),
                    interval=QueueFigures.from_counters(now_of(scope)),
                    staffing=staffing(
                        window[scope],
                        elapsed_s,
                        today_of(scope),
                        q.service_level.target_pct,
                        q.service_level.threshold_s,
                    ),
                    target_pct=q.service_level.target_pct,
                    threshold_s=q.service_level.threshold_s,
                    abandon_target_pct=q.abandon_target_pct,
                )
            )
        channel_rows: list[ChannelLive] = []
        for ch in channels:
            scope = f"c:{ch}"
            mine = [ql for ql in queues if ql.channel == ch]
            olds = [waiting[ql.name][1] for ql in mine if waiting[ql.name][1] is not None]
            need = staffing(window[scope], elapsed_s, today_of(scope), None, None)
            need.erlang_c_agents = _sum_or_none(ql.staffing.erlang_c_agents for ql in mine)
            need.erlang_a_agents = _sum_or_none(ql.staffing.erlang_a_agents for ql in mine)
            channel_rows.append(
                ChannelLive(
                    name=ch,
                    waiting=sum(ql.waiting for ql in mine),
                    longest_wait_s=max(0.0, (now - min(olds)) / 1000) if olds else 0.0,
                    agents=_count_agents(
                        a
                        for a in agents.values()
                        if any(_qualifies(a, cfg.queues[ql.name].skills, ch) for ql in mine)
                    ),
                    today=QueueFigures.from_counters(today_of(scope)),
                    interval=QueueFigures.from_counters(now_of(scope)),
                    staffing=need,
                )
            )
        agent_rows = []
        for agent_id in sorted(set(agents) | set(cfg.agents)):
            a = agents.get(agent_id, {})
            since = int_field(a, "state_since")
            counters = today_of(f"a:{agent_id}")
            configured = cfg.agents.get(agent_id)
            agent_rows.append(
                AgentLive(
                    id=agent_id,
                    name=configured.name if configured else a.get("name", ""),
                    state=a.get("state") or "offline",
                    reason=a.get("reason", ""),
                    state_s=max(0.0, (now - since) / 1000) if since else None,
                    load={k[5:]: int_field(a, k) for k in sorted(a) if k.startswith("load:")},
                    handled_today=counters.get("handled", 0),
                    today=AgentFigures.from_counters(counters),
                )
            )
        return LiveSnapshot(
            now_ms=now,
            day=today.isoformat(),
            interval_start_ms=current,
            queues=queues,
            channels=channel_rows,
            total=QueueFigures.from_counters(today_of(ALL)),
            agents=agent_rows,
        )

    async def _waiting(self, queues: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """queue -> (number waiting, position time of the oldest in ms or None)."""
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.smembers(self.keys.queue_buckets(q))
        bucket_sets = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        order: list[str] = []
        for q, buckets in zip(queues, bucket_sets, strict=True):
            for b in sorted(buckets):
                order.append(q)
                pipe.zcard(self.keys.bucket(b))
                pipe.zrange(self.keys.bucket(b), 0, 0, withscores=True)
        replies = await pipe.execute()
        out: dict[str, tuple[int, int | None]] = {q: (0, None) for q in queues}
        for i, q in enumerate(order):
            count, head = replies[2 * i], replies[2 * i + 1]
            total, oldest = out[q]
            if head:
                score = int(head[0][1])
                oldest = score if oldest is None else min(oldest, score)
            out[q] = (total + int(count), oldest)
        return out

    async def _agent_hashes(self) -> dict[str, dict[str, str]]:
        ids = sorted(await self.redis.smembers(self.keys.agents))
        rows = await self.reader.store.read_hashes([self.keys.agent(a) for a in ids])
        return {a: r for a, r in zip(ids, rows, strict=True) if r}


def _qualifies(agent: Mapping[str, str], needed: Mapping[str, int], channel: str) -> bool:
    """Does this agent count for a queue: skills at the queue's minimum levels, and capacity on
    its channel (an agent whose capacity there is 0 never gets its contacts)?"""
    cap = agent.get(f"cap:{channel}")
    if cap is not None and int_field(agent, f"cap:{channel}") <= 0:
        return False
    try:
        skills = json.loads(agent.get("skills") or "{}")
    except ValueError:
        return False
    return all(int(skills.get(s, 0)) >= level for s, level in needed.items())


def _count_agents(agents: Iterable[Mapping[str, str]]) -> AgentCounts:
    counts = AgentCounts()
    for a in agents:
        state = a.get("state") or "offline"
        if state == "ready":
            if sum(int_field(a, k) for k in a if k.startswith("load:")) > 0:
                counts.busy += 1
            else:
                counts.ready += 1
        elif state == "not_ready":
            counts.paused += 1
        else:
            counts.offline += 1
    return counts


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
