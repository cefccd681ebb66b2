"""Read-only views the dispatcher decides from: the head of every non-empty bucket and the agents
that can take something. Both cost O(buckets + available agents), never O(waiting).

These reads are not atomic with each other; that is fine because the reserve script re-checks
every pick and refuses a stale one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

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

    def has_skills(self, need: dict[str, int]) -> bool:
        return all(self.skills.get(s, 0) >= lvl for s, lvl in need.items())

    def occupancy(self, channel: str) -> float:
        cap = self.cap.get(channel, 0)
        return self.load.get(channel, 0) / cap if cap else 1.0


_AGENT_FIELDS = ["state", "skills", "blend_vt", "blend_tv", "line", "idle_since"] + [
    f"{kind}:{ch}" for ch in CHANNELS for kind in ("cap", "load")
]


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

    async def placement(self, bucket_id: str) -> Placement | None:
        cached = self._meta.get(bucket_id)
        if cached is None:
            meta = await self.redis.hgetall(self.keys.bucket_meta(bucket_id))
            if not meta:
                return None
            cached = self._meta[bucket_id] = Placement.from_meta(meta)
        return cached

    async def heads(self, bucket_ids: list[str] | None = None) -> list[Head]:
        k = self.keys
        if bucket_ids is None:
            bucket_ids = list(await self.redis.smembers(k.active_buckets))
        if not bucket_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for bid in bucket_ids:
                pipe.zrange(k.bucket(bid), 0, 0, withscores=True)
            tops = await pipe.execute()
        found = [(bid, top[0]) for bid, top in zip(bucket_ids, tops, strict=True) if top]
        if not found:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, (ix_id, _) in found:
                pipe.hget(k.ix(ix_id), "declined")
            declined = await pipe.execute()
        heads = []
        for (bid, (ix_id, score)), dec in zip(found, declined, strict=True):
            place = await self.placement(bid)
            if place is None:
                continue
            heads.append(Head(bid, ix_id, score, place, frozenset((dec or "").split())))
        return heads

    async def agents(self, agent_ids: list[str] | None = None) -> list[AgentView]:
        if agent_ids is None:
            agent_ids = list(await self.redis.zrange(self.keys.available, 0, -1))
        if not agent_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for aid in agent_ids:
                pipe.hmget(self.keys.agent(aid), _AGENT_FIELDS)
            rows = await pipe.execute()
        views = []
        for aid, row in zip(agent_ids, rows, strict=True):
            f = dict(zip(_AGENT_FIELDS, row, strict=True))
            if f["state"] is None:
                continue
            views.append(
                AgentView(
                    id=aid,
                    idle_since=float(f["idle_since"] or 0),
                    state=f["state"],
                    skills={s: int(v) for s, v in json.loads(f["skills"] or "{}").items()},
                    cap={ch: _int(f[f"cap:{ch}"]) for ch in CHANNELS},
                    load={ch: _int(f[f"load:{ch}"]) for ch in CHANNELS},
                    blend_vt=f["blend_vt"] == "1",
                    blend_tv=f["blend_tv"] == "1",
                    line=f["line"] or "first",
                )
            )
        return views

    async def due(self, zset: str, now_ms: int, limit: int = 200) -> list[str]:
        return list(await self.redis.zrangebyscore(zset, "-inf", now_ms, start=0, num=limit))

    async def next_due_ms(self) -> float | None:
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for z in (k.offers, k.due, k.wrapups):
                pipe.zrange(z, 0, 0, withscores=True)
            firsts = await pipe.execute()
        scores = [top[0][1] for top in firsts if top]
        return min(scores) if scores else None
