"""Helpers for the Lua transition tests: a loaded store, the event log, key snapshots, invariants.

Plain functions (no fixtures) so each test module declares its own tiny `store` fixture and ruff
sees no fixture imports.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import redis.asyncio as aioredis

from queues.buckets import Placement
from queues.store import Blending, RoutingStore
from router.models import AgentProfile, Channel, Event

CHANNELS = [c.value for c in Channel]

# Placements used across the tests.
VOICE = Placement(queue="info", channel="voice")
CHAT = Placement(queue="info", channel="chat")
TAX = Placement(queue="tax", channel="voice", skills={"tax": 5})


async def loaded_store(redis: aioredis.Redis) -> RoutingStore:
    store = RoutingStore(redis)
    await store.load_scripts()
    return store


class EventLog:
    """Reads `cl:events`; `new()` returns the events appended since the previous call."""

    def __init__(self, redis: aioredis.Redis, stream: str = "cl:events") -> None:
        self.redis = redis
        self.stream = stream
        self.last = "0-0"

    async def all(self) -> list[Event]:
        return [Event.from_stream(i, f) for i, f in await self.redis.xrange(self.stream)]

    async def raw(self) -> list[dict[str, str]]:
        return [f for _, f in await self.redis.xrange(self.stream)]

    async def new(self) -> list[Event]:
        entries = await self.redis.xrange(self.stream, min=f"({self.last}")
        if entries:
            self.last = entries[-1][0]
        return [Event.from_stream(i, f) for i, f in entries]

    async def new_raw(self) -> list[dict[str, str]]:
        """Like `new` but the raw string fields, for exact comparison with docs/events.md."""
        entries = await self.redis.xrange(self.stream, min=f"({self.last}")
        if entries:
            self.last = entries[-1][0]
        return [f for _, f in entries]

    async def skip(self) -> None:
        entries = await self.redis.xrevrange(self.stream, count=1)
        if entries:
            self.last = entries[0][0]


async def wait_redis_ms(store: RoutingStore, at_least_ms: int) -> int:
    """Wait until Redis' own clock reaches `at_least_ms`; returns Redis' time then."""
    while True:
        now = await store.now_ms()
        if now >= at_least_ms:
            return now
        await asyncio.sleep(max(0.0005, (at_least_ms - now) / 2000))


async def tick(store: RoutingStore, ms: int = 2) -> int:
    """Let Redis' clock advance by at least `ms` so consecutive transitions get distinct times."""
    return await wait_redis_ms(store, await store.now_ms() + ms)


def profile(
    agent_id: str,
    skills: dict[str, int] | None = None,
    capacity: dict[str, int] | None = None,
) -> AgentProfile:
    data: dict[str, Any] = {"id": agent_id, "name": agent_id.upper(), "skills": skills or {}}
    if capacity is not None:
        data["capacity"] = capacity
    return AgentProfile.model_validate(data)


async def login(
    store: RoutingStore,
    agent_id: str,
    *,
    skills: dict[str, int] | None = None,
    capacity: dict[str, int] | None = None,
    blending: Blending | None = None,
    ready: bool = True,
) -> None:
    await store.agent_login(
        profile(agent_id, skills, capacity), blending or Blending(), ready=ready
    )


async def enqueue(store: RoutingStore, placement: Placement = VOICE, **kw: Any) -> str:
    res = await store.enqueue(placement, {"resident": "+48600100200", "language": "pl"}, **kw)
    return res.id


async def connect(
    store: RoutingStore, agent_id: str, placement: Placement = VOICE, **kw: Any
) -> str:
    """Enqueue one interaction, offer it to `agent_id` and accept it."""
    ix = await enqueue(store, placement, **kw)
    await store.reserve(ix, agent_id, placement.bucket_id, 60_000)
    await store.accept(ix, agent_id)
    return ix


async def snapshot(redis: aioredis.Redis, pattern: str = "cl:*") -> dict[str, Any]:
    """Every key under the prefix with a type-aware copy of its value (streams entry by entry)."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(match=pattern, count=1000):
        kind = await redis.type(key)
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "stream":
            value = (await redis.xlen(key), await redis.xrange(key))
        else:  # pragma: no cover - cityline uses no other types
            value = await redis.dump(key)
        out[key] = (kind, value)
    return out


def can_take(a: dict[str, str], channel: str) -> bool:
    """The capacity and blending rule, recomputed independently of the Lua code."""
    if a.get("state") != "ready":
        return False
    load = int(a.get(f"load:{channel}") or 0)
    if load >= int(a.get(f"cap:{channel}") or 0):
        return False
    if channel == "voice":
        text = sum(int(a.get(f"load:{c}") or 0) for c in CHANNELS if c != "voice")
        return not (text > 0 and a.get("blend_vt") != "1")
    return not (int(a.get("load:voice") or 0) > 0 and a.get("blend_tv") != "1")


async def assert_avail_consistent(redis: aioredis.Redis) -> None:
    """`cl:avail` holds exactly the agents that are ready and can take some channel, by idle."""
    expected: dict[str, float] = {}
    for agent_id in await redis.smembers("cl:agents"):
        a = await redis.hgetall(f"cl:agent:{agent_id}")
        if any(can_take(a, ch) for ch in CHANNELS):
            expected[agent_id] = float(a["idle_since"])
    actual = dict(await redis.zrange("cl:avail", 0, -1, withscores=True))
    assert actual == expected


async def assert_loads_match_work(redis: aioredis.Redis) -> None:
    """Each agent's load per channel equals the interactions it holds on that channel."""
    for agent_id in await redis.smembers("cl:agents"):
        a = await redis.hgetall(f"cl:agent:{agent_id}")
        held = await redis.smembers(f"cl:aw:{agent_id}")
        counts = dict.fromkeys(CHANNELS, 0)
        for ix in held:
            h = await redis.hgetall(f"cl:ix:{ix}")
            assert h["agent"] == agent_id and h["state"] in ("offered", "connected", "wrapup")
            counts[h["channel"]] += 1
        assert {c: int(a.get(f"load:{c}") or 0) for c in CHANNELS} == counts, agent_id


async def bucket_members(redis: aioredis.Redis, placement: Placement) -> list[str]:
    return await redis.zrange(f"cl:b:{placement.bucket_id}", 0, -1)


def skills_of(event: Event) -> dict[str, int]:
    return json.loads(str(getattr(event, "skills", "{}")))
