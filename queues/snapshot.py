"""Read-only views the dispatcher decides from: the head of every non-empty bucket and the agents
that can take something. Both cost O(buckets + available agents), never O(waiting).

These reads are not atomic with each other; that is fine because the reserve script re-checks
every pick and refuses a stale one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from queues.buckets import Placement
from queues.keys import Keys
from router.models import Channel

CHANNELS = [c.value for c in Channel]


@dataclass
class Head:
    bucket_id: str
    ix_id: str
    position_ms: float
    placement: Placement
    declined: frozenset[str] = frozenset()

    def sort_key(self) -> tuple[int, float, str]:
        """Higher queue+interaction priority first, then oldest position, then id (FIFO ties)."""
        p = self.placement
        return (-(p.queue_priority + p.priority), self.position_ms, self.ix_id)


@dataclass
class AgentView:
    id: str
    idle_since: float
    state: str
    skills: dict[str, int]
    cap: dict[str, int]
    load: dict[str, int]
    blend_vt: bool
    blend_tv: bool
    line: str = "first"
    extra: dict[str, str] = field(default_factory=dict)

    def can_take(self, channel: str) -> bool:
        """Mirror of can_take in _lib.lua (the script has the final word)."""
        if self.state != "ready" or self.load.get(channel, 0) >= self.cap.get(channel, 0):
            return False
        text_load = sum(v for ch, v in self.load.items() if ch != "voice")
        if channel == "voice":
            return self.blend_vt or text_load == 0
        return self.blend_tv or self.load.get("voice", 0) == 0

    def has_skills(self, need: Mapping[str, int]) -> bool:
        return all(self.skills.get(s, 0) >= lvl for s, lvl in need.items())

    def occupancy(self, channel: str) -> float:
        cap = self.cap.get(channel, 0)
        return self.load.get(channel, 0) / cap if cap else 1.0


_AGENT_FIELDS = ["state", "skills", "blend_vt", "blend_tv", "line", "idle_since"] + [
    f"{kind}:{ch}" for ch in CHANNELS for kind in ("cap", "load")
]


def _parse_agent(agent_id: str, row: list[str | None]) -> AgentView | None:
    f = dict(zip(_AGENT_FIELDS, row, strict=True))
    if f["state"] is None:
        return None
    return AgentView(
        id=agent_id,
        idle_since=float(f["idle_since"] or 0),
        state=f["state"],
        skills={s: int(v) for s, v in json.loads(f["skills"] or "{}").items()},
        cap={ch: _int(f[f"cap:{ch}"]) for ch in CHANNELS},
        load={ch: _int(f[f"load:{ch}"]) for ch in CHANNELS},
        blend_vt=f["blend_vt"] == "1",
        blend_tv=f["blend_tv"] == "1",
        line=f["line"] or "first",
    )


def _int(v: str | None) -> int:
    try:
        return int(float(v)) if v is not None else 0
    except ValueError:
        return 0


class Snapshot:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._meta: dict[str, Placement] = {}  # bucket meta never changes: cache it forever
        # Agent views, re-read only when an event names the agent (or on a periodic full
        # refresh): reading every available agent per decision would cost O(agents) round trip
        # payload per enqueue. A stale view only costs a refused reserve, never a wrong offer.
        self._agents: dict[str, AgentView] = {}
        self._active: set[str] = set()  # active bucket ids seen last time

    async def placement(self, bucket_id: str) -> Placement | None:
        cached = self._meta.get(bucket_id)
        if cached is None:
            meta = await self.redis.hgetall(self.keys.bucket_meta(bucket_id))
            if not meta:
                return None
            cached = self._meta[bucket_id] = Placement.from_meta(meta)
        return cached

    async def heads(self, bucket_ids: list[str], depth: int = 1) -> dict[str, list[Head]]:
        """The first `depth` waiting interactions of each bucket, in queue order.

        `depth` is bounded by the free agent slots, so this never grows with queue length.
        Refusals remembered by the caller (`declined`) are not read here: they are rare, and
        the reserve script refuses a declined agent anyway.
        """
        if not bucket_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for bid in bucket_ids:
                pipe.zrange(self.keys.bucket(bid), 0, depth - 1, withscores=True)
            tops = await pipe.execute()
        return await self._heads_from(zip(bucket_ids, tops, strict=True), set(bucket_ids))

    async def round_view(
        self, dirty: set[str], *, full: bool, depth: Mapping[str, int]
    ) -> tuple[list[AgentView], dict[str, list[Head]]]:
        """Everything one matching pass needs, in one round trip when nothing new appeared:
        the available agents (cached views; dirty ones re-read) and the first `depth` waiting
        interactions of every active bucket. New buckets or unknown agents cost one more trip.
        `depth` maps a channel to how many of each bucket's first interactions to read.
        """
        k = self.keys
        known_buckets = list(self._active)
        reread = [a for a in dirty if a in self._agents]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(k.available, 0, -1, withscores=True)
            pipe.smembers(k.active_buckets)
            for aid in reread:
                pipe.hmget(k.agent(aid), _AGENT_FIELDS)
            for bid in known_buckets:
                pipe.zrange(k.bucket(bid), 0, self._depth_of(bid, depth) - 1, withscores=True)
            replies = await pipe.execute()
        members, active = replies[0], set(replies[1])
        rows = replies[2 : 2 + len(reread)]
        tops = replies[2 + len(reread) :]
        for aid, row in zip(reread, rows, strict=True):
            self._store_agent(aid, row)
        self._active = active
        buckets = await self._heads_from(zip(known_buckets, tops, strict=True), active)
        new = [b for b in active if b not in buckets and b not in known_buckets]
        buckets.update(await self.heads(new, 1))
        missing = [a for a, _ in members if full or a not in self._agents]
        for view in await self.agents(missing):
            self._agents[view.id] = view
        agents = []
        for agent_id, idle_since in members:
            view = self._agents.get(agent_id)
            if view is not None:
                view.idle_since = idle_since
                agents.append(view)
        return agents, buckets

    def _depth_of(self, bucket_id: str, depth: Mapping[str, int]) -> int:
        place = self._meta.get(bucket_id)
        return max(1, depth.get(place.channel, 1)) if place else 1

    async def _heads_from(
        self, tops: Iterable[tuple[str, list[tuple[str, float]]]], active: set[str]
    ) -> dict[str, list[Head]]:
        out: dict[str, list[Head]] = {}
        for bid, top in tops:
            if not top or bid not in active:
                continue
            place = await self.placement(bid)
            if place is not None:
                out[bid] = [Head(bid, ix_id, score, place) for ix_id, score in top]
        return out

    def forget_agent(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    def _store_agent(self, agent_id: str, row: list[str | None]) -> None:
        view = _parse_agent(agent_id, row)
        if view is None:
            self._agents.pop(agent_id, None)
        else:
            self._agents[agent_id] = view

    async def agents(self, agent_ids: list[str]) -> list[AgentView]:
        """Read agents' routing fields now (pipelined)."""
        if not agent_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in agent_ids:
                pipe.hmget(self.keys.agent(aid), _AGENT_FIELDS)
            rows = await pipe.execute()
        views = [_parse_agent(aid, row) for aid, row in zip(agent_ids, rows, strict=True)]
        return [v for v in views if v is not None]

    async def due(self, zset: str, now_ms: int, limit: int = 200) -> list[str]:
        return list(await self.redis.zrangebyscore(zset, "-inf", now_ms, start=0, num=limit))

    async def next_due_ms(self, *, with_time: bool = False) -> Any:
        """Earliest timer of any kind (ms), or None; with `with_time`, also Redis' now (ms)."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for z in (k.offers, k.due, k.wrapups):
                pipe.zrange(z, 0, 0, withscores=True)
            pipe.time()
            *firsts, (sec, usec) = await pipe.execute()
        scores = [top[0][1] for top in firsts if top]
        nxt = min(scores) if scores else None
        return (nxt, int(sec) * 1000 + int(usec) // 1000) if with_time else nxt
