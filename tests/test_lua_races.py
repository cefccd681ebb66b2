"""Races: several clients (as several router processes would) fire transitions at the same time.

Each script runs atomically in Redis, so exactly one of the competing transitions wins, and the
event stream and the state must tell the same story afterwards. The last tests replay, step by
step, the interleavings where a store method's own read goes stale before its script runs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.buckets import Placement
from queues.errors import EarlyError, StaleError, StateError, StoreError
from queues.store import RoutingStore
from tests.lua_helpers import (
    CHAT,
    TAX,
    VOICE,
    assert_avail_consistent,
    assert_loads_match_work,
    bucket_members,
    enqueue,
    loaded_store,
    login,
    wait_redis_ms,
)

TAX3 = Placement(queue="tax", channel="voice", skills={"tax": 3})
CLIENTS = 6


@pytest.fixture
async def store(redis: aioredis.Redis) -> RoutingStore:
    return await loaded_store(redis)


@pytest.fixture
async def stores(redis: aioredis.Redis, redis_url: str) -> AsyncIterator[list[RoutingStore]]:
    """One store per client connection, like separate router processes."""
    clients = [aioredis.Redis.from_url(redis_url, decode_responses=True) for _ in range(CLIENTS)]
    out = [RoutingStore(c) for c in clients]
    for s in out:
        await s.load_scripts()
    yield out
    for c in clients:
        await c.aclose()


async def outcomes(*calls: Awaitable[Any]) -> list[Any]:
    return await asyncio.gather(*calls, return_exceptions=True)


def winners(results: list[Any]) -> list[int]:
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, StoreError):
            raise r
    return [i for i, r in enumerate(results) if not isinstance(r, BaseException)]


async def event_types(redis: aioredis.Redis, ix: str) -> list[str]:
    return [f["ev"] for _, f in await redis.xrange("cl:events") if f["ix"] == ix]


async def test_one_interaction_many_agents_exactly_one_offer(
    stores: list[RoutingStore], redis: aioredis.Redis
) -> None:
    store = stores[0]
    agents = [f"a{n}" for n in range(CLIENTS)]
    for round_no in range(10):
        for agent in agents:
            if round_no == 0:
                await login(store, agent)
        ix = await enqueue(store)
        pairs = zip(stores, agents, strict=True)
        results = await outcomes(*(s.reserve(ix, a, VOICE.bucket_id, 60_000) for s, a in pairs))
        (won,) = winners(results)
        assert all(isinstance(r, StaleError) for i, r in enumerate(results) if i != won)
        h = await store.interaction(ix)
        assert (h["state"], h["agent"]) == ("offered", agents[won])
        offers = [f for _, f in await redis.xrange("cl:events") if f["ev"] == "OFFER"
                  and f["ix"] == ix]  # fmt: skip
        assert len(offers) == 1 and offers[0]["agent"] == agents[won]
        assert await redis.zrange("cl:offers", 0, -1) == [ix]
        await assert_loads_match_work(redis)
        await assert_avail_consistent(redis)
        await store.reject(ix, agents[won], exclude_agent=False)
        await store.abandon(ix, short_abandon_ms=0)


async def test_many_chats_one_agent_never_over_capacity(
    stores: list[RoutingStore], redis: aioredis.Redis
) -> None:
    store = stores[0]
    await login(store, "a1", capacity={"chat": 3})
    ids = [await enqueue(store, CHAT) for _ in range(CLIENTS * 2)]
    results = await outcomes(
        *(stores[i % CLIENTS].reserve(ix, "a1", CHAT.bucket_id, 60_000) for i, ix in enumerate(ids))
    )
    won = winners(results)
    assert len(won) == 3
    assert all(isinstance(r, StaleError) for i, r in enumerate(results) if i not in won)
    assert (await store.agent("a1"))["load:chat"] == "3"
    assert await store.agent_work("a1") == {ids[i] for i in won}
    offers = [f["ix"] for _, f in await redis.xrange("cl:events") if f["ev"] == "OFFER"]
    assert sorted(offers) == sorted(ids[i] for i in won)
    assert await redis.zcard(f"cl:b:{CHAT.bucket_id}") == len(ids) - 3
    assert await redis.zscore("cl:avail", "a1") is None
    await assert_loads_match_work(redis)
    await assert_avail_consistent(redis)


async def aligned(store: RoutingStore, call: Awaitable[Any]) -> Any:
    await store.redis.ping()
    return await call


async def test_accept_races_offer_timeout_at_the_deadline(
    stores: list[RoutingStore], redis: aioredis.Redis
) -> None:
    store = stores[0]
    await login(store, "a1")
    seen: Counter[str] = Counter()
    for round_no in range(24):
        ix = await enqueue(store)
        deadline = await store.reserve(ix, "a1", VOICE.bucket_id, 3)
        # half the rounds fire right at the deadline, half a little before it
        if round_no % 2 == 0:
            await wait_redis_ms(store, deadline)
        # offer_timeout reads the bucket before its script: give accept one round trip too
        accept = aligned(stores[1], stores[1].accept(ix, "a1"))
        expire = stores[2].offer_timeout(ix, "a1", max_misses=0, pause_reason="rona")
        pair = [accept, expire] if round_no % 4 < 2 else [expire, accept]
        results = await outcomes(*pair)
        by_name = dict(zip(["accept", "expire"] if round_no % 4 < 2 else ["expire", "accept"],
                           results, strict=True))  # fmt: skip
        (won,) = winners(results)
        h = await store.interaction(ix)
        kinds = await event_types(redis, ix)
        if not isinstance(by_name["accept"], BaseException):
            assert isinstance(by_name["expire"], (StateError, EarlyError))
            assert h["state"] == "connected" and kinds == ["ENTERQUEUE", "OFFER", "CONNECT"]
            seen["connect"] += 1
            await store.complete(ix, "a1", side="agent", wrapup_ms=0)
        else:
            assert isinstance(by_name["accept"], StateError)
            assert h["state"] == "queued" and kinds == ["ENTERQUEUE", "OFFER", "RINGNOANSWER"]
            seen["ringnoanswer"] += 1
            await store.abandon(ix, short_abandon_ms=0)
        assert won in (0, 1)
        assert await redis.zcard("cl:offers") == 0
        await assert_loads_match_work(redis)
        await assert_avail_consistent(redis)
    assert sum(seen.values()) == 24
    assert seen["connect"] and seen["ringnoanswer"]  # both sides of the race were exercised


async def test_abandon_races_accept(stores: list[RoutingStore], redis: aioredis.Redis) -> None:
    store = stores[0]
    await login(store, "a1")
    seen: Counter[str] = Counter()
    for round_no in range(20):
        ix = await enqueue(store)
        await store.reserve(ix, "a1", VOICE.bucket_id, 60_000)
        accept = aligned(stores[1], stores[1].accept(ix, "a1"))  # abandon reads first too
        abandon = stores[2].abandon(ix, short_abandon_ms=0)
        first, second = (accept, abandon) if round_no % 2 else (abandon, accept)
        results = await outcomes(first, second)
        (won,) = winners(results)
        assert all(isinstance(r, StateError) for i, r in enumerate(results) if i != won)
        h = await store.interaction(ix)
        kinds = await event_types(redis, ix)
        assert kinds[:2] == ["ENTERQUEUE", "OFFER"] and len(kinds) == 3
        if h["state"] == "connected":
            assert kinds[2] == "CONNECT"
            await store.complete(ix, "a1", side="caller", wrapup_ms=0)
        else:
            assert h["state"] == "abandoned" and kinds[2] == "ABANDON"
        seen[h["state"]] += 1
        assert await redis.zcard("cl:offers") == 0
        await assert_loads_match_work(redis)
        await assert_avail_consistent(redis)
    assert seen["connected"] and seen["abandoned"]  # both sides of the race were exercised


async def test_dispatchers_storm_keeps_every_invariant(
    stores: list[RoutingStore], redis: aioredis.Redis
) -> None:
    """Six dispatchers pick greedily from the same stale snapshot; the scripts sort it out."""
    store = stores[0]
    agents = [f"a{n}" for n in range(4)]
    for agent in agents:
        await login(store, agent, capacity={"voice": 1, "chat": 2})
    ids = [await enqueue(store, CHAT if n % 2 else VOICE) for n in range(16)]
    placement = {ix: (CHAT if n % 2 else VOICE) for n, ix in enumerate(ids)}
    calls = [
        stores[d].reserve(ix, agents[(d + n) % len(agents)], placement[ix].bucket_id, 60_000)
        for d in range(CLIENTS)
        for n, ix in enumerate(ids)
    ]
    won = winners(await outcomes(*calls))
    offers = Counter(f["ix"] for _, f in await redis.xrange("cl:events") if f["ev"] == "OFFER")
    assert len(won) == sum(offers.values())
    assert all(count == 1 for count in offers.values())
    for agent in agents:
        a = await store.agent(agent)
        assert int(a["load:voice"]) <= 1 and int(a["load:chat"]) <= 2
        # no blending configured: never voice and text at once
        assert not (int(a["load:voice"]) and int(a["load:chat"]))
    await assert_loads_match_work(redis)
    await assert_avail_consistent(redis)


# --- a store method's own read goes stale before its script runs ------------------------------


def run_before(
    store: RoutingStore, script: str, meanwhile: Callable[[], Awaitable[Any]]
) -> list[str]:
    """Run `meanwhile` once, just before the store's first call of `script` (after its reads)."""
    real = store._call
    calls: list[str] = []

    async def hooked(name: str, keys: list[str], args: list[Any]) -> Any:
        calls.append(name)
        if name == script and calls.count(name) == 1:
            await meanwhile()
        return await real(name, keys, args)

    store._call = hooked  # type: ignore[method-assign]
    return calls


async def test_abandon_after_an_escalation_moved_it(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    ix = await enqueue(store, TAX)

    async def escalate() -> None:
        await store.escalate(ix, from_bucket=TAX.bucket_id, expected_step=0, target=TAX3,
                             next_escalation_after_ms=0, max_wait_ms=0)  # fmt: skip

    calls = run_before(store, "abandon", escalate)
    res = await store.abandon(ix, short_abandon_ms=0)
    assert calls == ["abandon", "escalate", "abandon"]  # refused once, then re-read
    assert (await store.interaction(ix))["state"] == "abandoned"
    assert await bucket_members(redis, TAX) == []
    assert await bucket_members(redis, TAX3) == []  # no abandoned ghost left at a bucket head
    assert await redis.smembers("cl:buckets") == set()
    ev = [f for _, f in await redis.xrange("cl:events") if f["ev"] == "ABANDON"]
    assert len(ev) == 1 and ev[0]["pos"] == "1" and ev[0]["wait_ms"] == str(res.wait_ms)


async def test_abandon_just_after_the_offer_went_out(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await login(store, "a1")
    ix = await enqueue(store)

    async def offer() -> None:
        await store.reserve(ix, "a1", VOICE.bucket_id, 60_000)

    run_before(store, "abandon", offer)
    await store.abandon(ix, short_abandon_ms=0)
    assert (await store.interaction(ix))["state"] == "abandoned"
    assert await event_types(redis, ix) == ["ENTERQUEUE", "OFFER", "ABANDON"]
    ev = next(f for _, f in await redis.xrange("cl:events") if f["ev"] == "ABANDON")
    assert (ev["during"], ev["agent"]) == ("offered", "a1")
    assert (await store.agent("a1"))["load:voice"] == "0"
    await assert_loads_match_work(redis)
    await assert_avail_consistent(redis)


async def test_supervisor_transfer_after_an_escalation_moved_it(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    general = Placement(queue="general", channel="voice")
    ix = await enqueue(store, TAX)

    async def escalate() -> None:
        await store.escalate(ix, from_bucket=TAX.bucket_id, expected_step=0, target=TAX3,
                             next_escalation_after_ms=0, max_wait_ms=0)  # fmt: skip

    calls = run_before(store, "transfer", escalate)
    assert await store.transfer(ix, general, by="supervisor") == 1
    assert calls == ["transfer", "escalate", "transfer"]
    assert await bucket_members(redis, TAX3) == []  # not left behind in the escalated bucket
    assert await bucket_members(redis, general) == [ix]
    assert await redis.smembers("cl:buckets") == {general.bucket_id}
    assert (await store.interaction(ix))["bucket"] == general.bucket_id
