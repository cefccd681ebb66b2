"""Every interaction transition: happy path, its events field by field, and its refusals.

Times and durations are read back from the hashes and events the scripts wrote (Redis TIME) and
compared exactly; waits are made non-zero by waiting on Redis' own clock, never by sleeping a guess.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from queues.buckets import Placement
from queues.errors import (
    EarlyError,
    ExistsError,
    ForbiddenError,
    NotFoundError,
    StaleError,
    StateError,
    StoreError,
)
from queues.scripts import _read
from queues.store import Abandoned, RoutingStore
from router.models import EventType
from tests.lua_helpers import (
    CHAT,
    TAX,
    VOICE,
    EventLog,
    assert_avail_consistent,
    assert_loads_match_work,
    bucket_members,
    connect,
    enqueue,
    loaded_store,
    login,
    snapshot,
    tick,
    wait_redis_ms,
)

TAX3 = Placement(queue="tax", channel="voice", skills={"tax": 3})
GENERAL = Placement(queue="general", channel="voice")
OVERFLOW = Placement(queue="overflow", channel="voice")
SECOND = Placement(queue="second", channel="voice")


@pytest.fixture
async def store(redis: aioredis.Redis) -> RoutingStore:
    return await loaded_store(redis)


@pytest.fixture
def log(redis: aioredis.Redis) -> EventLog:
    return EventLog(redis)


def pick(d: dict[str, str], *names: str) -> dict[str, str | None]:
    return {n: d.get(n) for n in names}


async def ix_ms(store: RoutingStore, ix: str, field: str) -> int:
    return int((await store.interaction(ix))[field])


# --- enqueue ------------------------------------------------------------------------------


async def test_enqueue_creates_interaction_bucket_timers_and_enterqueue(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    before = await store.now_ms()
    res = await store.enqueue(
        VOICE,
        {"resident": "+48600100200", "language": "pl", "subject": "Wniosek", "meta": {"u": "1.1"}},
        escalate_after_ms=30_000,
        max_wait_ms=90_000,
    )
    after = await store.now_ms()
    t = res.enqueued_ms
    assert res.created and before <= t <= after
    year = dt.datetime.fromtimestamp(t / 1000, dt.UTC).year
    assert res.ref == f"{year}-000001"
    ix = await store.interaction(res.id)
    assert pick(
        ix, "id", "ref", "state", "bucket", "queue", "channel", "priority", "skills",
        "target_agent", "queue_priority", "resident", "language", "subject", "meta",
        "created_ms", "enqueued_ms", "entered_ms", "first_entered_ms", "attempts", "esc_step",
        "esc_at", "max_at", "transfers", "origpos",
    ) == {
        "id": res.id, "ref": res.ref, "state": "queued", "bucket": VOICE.bucket_id,
        "queue": "info", "channel": "voice", "priority": "0", "skills": "{}",
        "target_agent": "", "queue_priority": "0", "resident": "+48600100200", "language": "pl",
        "subject": "Wniosek", "meta": json.dumps({"u": "1.1"}), "created_ms": str(t),
        "enqueued_ms": str(t), "entered_ms": str(t), "first_entered_ms": str(t),
        "attempts": "0", "esc_step": "0", "esc_at": str(t + 30_000), "max_at": str(t + 90_000),
        "transfers": "0", "origpos": "1",
    }  # fmt: skip
    assert await redis.zrange(f"cl:b:{VOICE.bucket_id}", 0, -1, withscores=True) == [
        (res.id, float(t))
    ]
    assert await redis.smembers("cl:buckets") == {VOICE.bucket_id}
    assert await redis.smembers("cl:qb:info") == {VOICE.bucket_id}
    assert await redis.hgetall(f"cl:bm:{VOICE.bucket_id}") == {
        "queue": "info", "channel": "voice", "priority": "0", "skills": "{}",
        "target_agent": "", "queue_priority": "0",
    }  # fmt: skip
    # the earlier of the two timers is the next due moment
    assert await redis.zrange("cl:due", 0, -1, withscores=True) == [(res.id, float(t + 30_000))]
    assert await redis.hgetall("cl:refs") == {res.ref: res.id}
    assert await log.new_raw() == [
        {"ev": "ENTERQUEUE", "t": str(t), "queue": "info", "ix": res.id, "agent": "",
         "channel": "voice", "ref": res.ref, "priority": "0", "first": "1", "pos": "1"}
    ]  # fmt: skip


async def test_enqueue_refs_increase_and_positions_count(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    high = Placement(queue="info", channel="voice", priority=3)
    made = [await store.enqueue(VOICE, {}) for _ in range(3)]
    other = await store.enqueue(high, {})
    refs = [m.ref for m in [*made, other]]
    assert all(re.fullmatch(r"\d{4}-\d{6}", r) for r in refs)
    assert [int(r[5:]) for r in refs] == [1, 2, 3, 4]
    events = await log.new_raw()
    assert [e["pos"] for e in events] == ["1", "2", "3", "1"]
    assert [e["priority"] for e in events] == ["0", "0", "0", "3"]
    assert [e["ref"] for e in events] == refs
    assert await bucket_members(redis, VOICE) == [m.id for m in made]
    assert await redis.smembers("cl:buckets") == {VOICE.bucket_id, high.bucket_id}
    assert await redis.smembers("cl:qb:info") == {VOICE.bucket_id, high.bucket_id}
    assert await redis.zcard("cl:due") == 0  # no timers asked for


async def test_enqueue_max_wait_alone_is_due(store: RoutingStore, redis: aioredis.Redis) -> None:
    res = await store.enqueue(VOICE, {}, max_wait_ms=5_000)
    assert await redis.zscore("cl:due", res.id) == res.enqueued_ms + 5_000
    ix = await store.interaction(res.id)
    assert ix["esc_at"] == "0" and ix["max_at"] == str(res.enqueued_ms + 5_000)


async def test_enqueue_external_key_dedup(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    first = await store.enqueue(VOICE, {"resident": "+48600"}, external_key="voice:1700.42")
    again = await store.enqueue(VOICE, {"resident": "+48600"}, external_key="voice:1700.42")
    assert first.created and not again.created
    assert (again.id, again.ref, again.enqueued_ms) == (first.id, first.ref, first.enqueued_ms)
    events = await log.new_raw()
    assert [e["ev"] for e in events] == ["ENTERQUEUE"]
    assert await bucket_members(redis, VOICE) == [first.id]
    assert await redis.hgetall("cl:ext") == {"voice:1700.42": first.id}
    assert await redis.hvals("cl:refseq") == ["1"]
    other = await store.enqueue(VOICE, {}, external_key="voice:1700.43")
    assert other.created and other.id != first.id and int(other.ref[5:]) == 2


async def test_enqueue_existing_id_refused(store: RoutingStore) -> None:
    res = await store.enqueue(VOICE, {})
    with pytest.raises(ExistsError):
        await store.enqueue(VOICE, {}, ix_id=res.id)


async def test_enqueue_json_null_field_is_stored_empty(store: RoutingStore) -> None:
    res = await store.enqueue(VOICE, {"subject": None, "language": "pl"})
    ix = await store.interaction(res.id)
    assert ix["subject"] == "" and ix["language"] == "pl"


async def test_enqueue_position_counts_same_millisecond_ties_by_id(
    store: RoutingStore, log: EventLog
) -> None:
    """Members with the same score sort by id: `pos` is the rank, not the bucket's size."""
    for n in range(200):
        late_id = await store.enqueue(VOICE, {}, ix_id=f"{n:04d}-z")
        early_id = await store.enqueue(VOICE, {}, ix_id=f"{n:04d}-a")
        if late_id.enqueued_ms == early_id.enqueued_ms:
            break
    else:  # pragma: no cover - Redis never ran two scripts in one millisecond
        pytest.skip("no two enqueues fell in the same millisecond")
    events = await log.new_raw()
    assert events[-2]["ix"] == late_id.id and events[-2]["pos"] == str(2 * n + 1)
    assert events[-1]["ix"] == early_id.id and events[-1]["pos"] == str(2 * n + 1)
    ix = await store.interaction(early_id.id)
    assert ix["origpos"] == str(2 * n + 1)


async def test_reference_year_follows_city_offset(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    now = await store.now_ms()
    year = dt.datetime.fromtimestamp(now / 1000, dt.UTC).year
    new_year_ms = int(dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    ahead = RoutingStore(redis, tz_offset_ms=lambda: new_year_ms - now + 3_600_000)
    behind = RoutingStore(redis, tz_offset_ms=lambda: new_year_ms - now - 3_600_000)
    a = await store.enqueue(VOICE, {})
    b = await ahead.enqueue(VOICE, {})
    c = await behind.enqueue(VOICE, {})
    d = await ahead.deflect({"channel": "voice", "queue": "info"}, "faq")
    assert [a.ref, b.ref, c.ref, d.ref] == [
        f"{year}-000001", f"{year + 1}-000001", f"{year}-000002", f"{year + 1}-000002"
    ]
    assert await redis.hgetall("cl:refseq") == {str(year): "2", str(year + 1): "2"}


async def test_year_of_matches_python_calendar(redis: aioredis.Redis) -> None:
    lib = _read("_lib.lua")
    stamps: list[int] = []
    for y in (1970, 1999, 2000, 2024, 2025, 2026, 2027, 2099, 2100, 2400):
        for moment in (
            dt.datetime(y, 1, 1, tzinfo=dt.UTC),
            dt.datetime(y, 2, 28, 23, 59, 59, tzinfo=dt.UTC),
            dt.datetime(y, 3, 1, tzinfo=dt.UTC),
            dt.datetime(y, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC),
        ):
            stamps.append(int(moment.timestamp() * 1000))
    got = await redis.eval(
        lib + "\nlocal out = {}\nfor i, v in ipairs(ARGV) do out[i] = year_of(tonumber(v)) end\n"
        "return out",
        0,
        *stamps,
    )
    assert got == [dt.datetime.fromtimestamp(s / 1000, dt.UTC).year for s in stamps]


# --- reserve / accept ------------------------------------------------------------------------


async def test_reserve_offers_and_fills_the_agent(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    agent = await store.agent("a1")
    assert await redis.zscore("cl:avail", "a1") == float(agent["idle_since"])
    ix = await enqueue(store, VOICE, escalate_after_ms=600_000)
    entered = await ix_ms(store, ix, "entered_ms")
    await tick(store)
    await log.skip()
    deadline = await store.reserve(ix, "a1", VOICE.bucket_id, 20_000)
    h = await store.interaction(ix)
    t = int(h["offered_ms"])
    assert deadline == t + 20_000
    assert pick(h, "state", "agent", "offer_deadline", "attempts") == {
        "state": "offered", "agent": "a1", "offer_deadline": str(deadline), "attempts": "0"
    }  # fmt: skip
    assert t - entered >= 2
    assert await log.new_raw() == [
        {"ev": "OFFER", "t": str(t), "queue": "info", "ix": ix, "agent": "a1",
         "channel": "voice", "wait_ms": str(t - entered), "attempt": "1"}
    ]  # fmt: skip
    a = await store.agent("a1")
    assert a["load:voice"] == "1" and a["last_offer_ms"] == str(t)
    assert await store.agent_work("a1") == {ix}
    assert await redis.zscore("cl:avail", "a1") is None  # voice 1 and no blending: full
    assert await redis.zrange("cl:offers", 0, -1, withscores=True) == [(ix, float(deadline))]
    assert await bucket_members(redis, VOICE) == []
    assert not await redis.sismember("cl:buckets", VOICE.bucket_id)
    assert await redis.zscore("cl:due", ix) is None  # waiting timers sleep while offered
    await assert_avail_consistent(redis)
    await assert_loads_match_work(redis)


async def test_reserve_takes_one_out_of_a_longer_bucket(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await login(store, "a1")
    ids = [await enqueue(store) for _ in range(3)]
    await store.reserve(ids[1], "a1", VOICE.bucket_id, 1000)
    assert await bucket_members(redis, VOICE) == [ids[0], ids[2]]
    assert await redis.sismember("cl:buckets", VOICE.bucket_id)


async def test_accept_connects_with_exact_wait_and_ring(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await enqueue(store)
    await tick(store)
    await store.reserve(ix, "a1", VOICE.bucket_id, 20_000)
    await tick(store, 3)
    await log.skip()
    wait = await store.accept(ix, "a1")
    h = await store.interaction(ix)
    c, e, o = int(h["connected_ms"]), int(h["entered_ms"]), int(h["offered_ms"])
    assert wait == c - e and o - e >= 2 and c - o >= 3
    assert await log.new_raw() == [
        {"ev": "CONNECT", "t": str(c), "queue": "info", "ix": ix, "agent": "a1",
         "channel": "voice", "wait_ms": str(c - e),
         "total_wait_ms": str(c - int(h["first_entered_ms"])), "ring_ms": str(c - o)}
    ]  # fmt: skip
    assert h["state"] == "connected" and h["agent"] == "a1"
    assert await redis.zcard("cl:offers") == 0
    a = await store.agent("a1")
    assert a["load:voice"] == "1" and a["misses"] == "0"
    assert await store.agent_work("a1") == {ix}
    await assert_avail_consistent(redis)


# --- reject ---------------------------------------------------------------------------------


async def test_reject_returns_to_original_place_and_excludes_agent(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    first = await enqueue(store, escalate_after_ms=600_000)
    await tick(store)
    second = await enqueue(store)
    await tick(store)
    third = await enqueue(store)
    await store.reserve(first, "a1", VOICE.bucket_id, 20_000)
    offered = await ix_ms(store, first, "offered_ms")
    await tick(store, 3)
    await log.skip()
    await store.reject(first, "a1")
    events = await log.new_raw()
    t = int(events[0]["t"])
    assert events == [
        {"ev": "RINGNOANSWER", "t": str(t), "queue": "info", "ix": first, "agent": "a1",
         "channel": "voice", "ring_ms": str(t - offered), "reason": "reject"}
    ]  # fmt: skip
    assert t - offered >= 3
    h = await store.interaction(first)
    assert pick(h, "state", "agent", "attempts", "offered_ms", "offer_deadline") == {
        "state": "queued", "agent": "", "attempts": "1", "offered_ms": "0", "offer_deadline": "0"
    }  # fmt: skip
    assert "a1" in h["declined"].split()
    # back at its original position time, ahead of the later arrivals
    assert await redis.zrange(f"cl:b:{VOICE.bucket_id}", 0, -1, withscores=True) == [
        (first, float(h["enqueued_ms"])),
        (second, float(await ix_ms(store, second, "enqueued_ms"))),
        (third, float(await ix_ms(store, third, "enqueued_ms"))),
    ]
    assert await redis.zscore("cl:due", first) == float(h["esc_at"])
    assert await redis.zcard("cl:offers") == 0
    a = await store.agent("a1")
    assert a["load:voice"] == "0" and a["idle_since"] == str(t)
    assert await redis.zscore("cl:avail", "a1") == float(t)
    assert await store.agent_work("a1") == set()
    with pytest.raises(StaleError):
        await store.reserve(first, "a1", VOICE.bucket_id, 20_000)
    await store.reserve(second, "a1", VOICE.bucket_id, 20_000)  # only that one is excluded
    await assert_avail_consistent(redis)
    await assert_loads_match_work(redis)


async def test_reject_without_exclusion_may_be_offered_again(
    store: RoutingStore, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await enqueue(store)
    await store.reserve(ix, "a1", VOICE.bucket_id, 20_000)
    await store.reject(ix, "a1", exclude_agent=False)
    assert (await store.interaction(ix))["declined"].split() == []
    await log.skip()
    await store.reserve(ix, "a1", VOICE.bucket_id, 20_000)
    (event,) = await log.new_raw()
    assert event["ev"] == "OFFER" and event["attempt"] == "2"


# --- offer timeout --------------------------------------------------------------------------


async def test_offer_timeout_early_then_back_in_queue(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await enqueue(store)
    later = await enqueue(store)
    deadline = await store.reserve(ix, "a1", VOICE.bucket_id, 100)
    offered = await ix_ms(store, ix, "offered_ms")
    with pytest.raises(EarlyError):
        await store.offer_timeout(ix, "a1", max_misses=3, pause_reason="rona")
    await wait_redis_ms(store, deadline)
    await log.skip()
    assert await store.offer_timeout(ix, "a1", max_misses=3, pause_reason="rona") is False
    events = await log.new_raw()
    t = int(events[0]["t"])
    assert t >= deadline
    assert events == [
        {"ev": "RINGNOANSWER", "t": str(t), "queue": "info", "ix": ix, "agent": "a1",
         "channel": "voice", "ring_ms": str(t - offered), "reason": "timeout"}
    ]  # fmt: skip
    h = await store.interaction(ix)
    assert pick(h, "state", "agent", "attempts", "declined") == {
        "state": "queued", "agent": "", "attempts": "1", "declined": ""
    }  # fmt: skip
    assert await bucket_members(redis, VOICE) == [ix, later]
    assert await redis.zcard("cl:offers") == 0
    a = await store.agent("a1")
    assert a["misses"] == "1" and a["load:voice"] == "0" and a["state"] == "ready"
    await assert_avail_consistent(redis)
    await log.skip()
    await store.reserve(ix, "a1", VOICE.bucket_id, 0)  # a timeout does not exclude the agent
    assert (await log.new_raw())[0]["attempt"] == "2"


async def test_offer_timeouts_pause_the_agent_after_max_misses(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    login_t = int((await store.agent("a1"))["state_since"])
    ix = await enqueue(store)
    await store.reserve(ix, "a1", VOICE.bucket_id, 0)
    assert await store.offer_timeout(ix, "a1", max_misses=2, pause_reason="rona") is False
    assert (await store.agent("a1"))["misses"] == "1"
    await store.reserve(ix, "a1", VOICE.bucket_id, 0)
    await log.skip()
    assert await store.offer_timeout(ix, "a1", max_misses=2, pause_reason="rona") is True
    ring, pause = await log.new_raw()
    t = int(ring["t"])
    assert ring["ev"] == "RINGNOANSWER" and ring["reason"] == "timeout"
    assert pause == {"ev": "PAUSE", "t": str(t), "queue": "", "ix": "", "agent": "a1",
                     "channel": "", "reason": "rona", "state_ms": str(t - login_t)}  # fmt: skip
    a = await store.agent("a1")
    assert pick(a, "state", "reason", "state_since", "misses", "load:voice") == {
        "state": "not_ready", "reason": "rona", "state_since": str(t), "misses": "0",
        "load:voice": "0",
    }  # fmt: skip
    assert await redis.zscore("cl:avail", "a1") is None
    assert (await store.interaction(ix))["state"] == "queued"
    with pytest.raises(StaleError):
        await store.reserve(ix, "a1", VOICE.bucket_id, 0)
    await tick(store)
    await store.agent_ready("a1")
    (unpause,) = await log.new_raw()
    t2 = int(unpause["t"])
    assert unpause == {"ev": "UNPAUSE", "t": str(t2), "queue": "", "ix": "", "agent": "a1",
                       "channel": "", "state_ms": str(t2 - t)}  # fmt: skip
    assert await redis.zscore("cl:avail", "a1") == float(t2)
    await assert_avail_consistent(redis)


async def test_misses_reset_by_accept_and_by_unpause(store: RoutingStore) -> None:
    await login(store, "a1")
    ix = await enqueue(store)
    await store.reserve(ix, "a1", VOICE.bucket_id, 0)
    await store.offer_timeout(ix, "a1", max_misses=2, pause_reason="rona")
    await store.reserve(ix, "a1", VOICE.bucket_id, 60_000)
    await store.accept(ix, "a1")
    assert (await store.agent("a1"))["misses"] == "0"
    await store.complete(ix, "a1", side="agent", wrapup_ms=0)
    # a miss while already paused does not pause again, and counts until the agent returns
    other = await enqueue(store)
    await store.reserve(other, "a1", VOICE.bucket_id, 0)
    await store.agent_not_ready("a1", "lunch")
    assert await store.offer_timeout(other, "a1", max_misses=1, pause_reason="rona") is False
    a = await store.agent("a1")
    assert (a["misses"], a["reason"]) == ("1", "lunch")
    await store.agent_ready("a1")
    assert (await store.agent("a1"))["misses"] == "0"
    await store.reserve(other, "a1", VOICE.bucket_id, 0)
    assert await store.offer_timeout(other, "a1", max_misses=2, pause_reason="rona") is False


# --- complete / wrap-up ---------------------------------------------------------------------


async def test_complete_without_wrapup_closes_and_frees_the_slot(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await connect(store, "a1")
    await tick(store, 3)
    await log.skip()
    assert await store.complete(ix, "a1", side="caller", wrapup_ms=0) == "closed"
    (event,) = await log.new_raw()
    h = await store.interaction(ix)
    t, c = int(event["t"]), int(h["connected_ms"])
    assert event == {"ev": "COMPLETECALLER", "t": str(t), "queue": "info", "ix": ix, "agent": "a1",
                     "channel": "voice", "wait_ms": str(c - int(h["entered_ms"])),
                     "talk_ms": str(t - c)}  # fmt: skip
    assert t - c >= 3
    assert pick(h, "state", "talk_end_ms", "ended_ms", "ended_by") == {
        "state": "closed", "talk_end_ms": str(t), "ended_ms": str(t), "ended_by": "caller"
    }  # fmt: skip
    a = await store.agent("a1")
    assert a["load:voice"] == "0" and a["idle_since"] == str(t)
    assert await redis.zscore("cl:avail", "a1") == float(t)
    assert await store.agent_work("a1") == set()
    assert await redis.zcard("cl:wrapups") == 0
    await assert_avail_consistent(redis)


async def test_complete_with_wrapup_keeps_the_slot_until_wrapup_end(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await connect(store, "a1")
    await tick(store)
    await log.skip()
    assert await store.complete(ix, "a1", side="agent", wrapup_ms=60_000) == "wrapup"
    (event,) = await log.new_raw()
    t = int(event["t"])
    h = await store.interaction(ix)
    c = int(h["connected_ms"])
    assert event == {"ev": "COMPLETEAGENT", "t": str(t), "queue": "info", "ix": ix, "agent": "a1",
                     "channel": "voice", "wait_ms": str(c - int(h["entered_ms"])),
                     "talk_ms": str(t - c)}  # fmt: skip
    assert pick(h, "state", "talk_end_ms", "wrapup_until", "ended_by") == {
        "state": "wrapup", "talk_end_ms": str(t), "wrapup_until": str(t + 60_000),
        "ended_by": "agent",
    }  # fmt: skip
    assert await redis.zrange("cl:wrapups", 0, -1, withscores=True) == [(ix, float(t + 60_000))]
    assert (await store.agent("a1"))["load:voice"] == "1"
    assert await redis.zscore("cl:avail", "a1") is None
    assert await store.agent_work("a1") == {ix}
    with pytest.raises(EarlyError):
        await store.wrapup_end(ix, "a1", by="timer")
    await tick(store, 3)
    await store.wrapup_end(ix, "a1", by="agent", disposition="info-given", note="zadzwoni jutro")
    (end,) = await log.new_raw()
    t2 = int(end["t"])
    assert end == {"ev": "WRAPUPEND", "t": str(t2), "queue": "info", "ix": ix, "agent": "a1",
                   "channel": "voice", "wrapup_ms": str(t2 - t), "by": "agent",
                   "disposition": "info-given", "note": "zadzwoni jutro"}  # fmt: skip
    assert t2 - t >= 3
    h = await store.interaction(ix)
    assert pick(h, "state", "ended_ms", "disposition", "note") == {
        "state": "closed", "ended_ms": str(t2), "disposition": "info-given",
        "note": "zadzwoni jutro",
    }  # fmt: skip
    assert await redis.zcard("cl:wrapups") == 0
    assert (await store.agent("a1"))["load:voice"] == "0"
    assert await redis.zscore("cl:avail", "a1") == float(t2)
    await assert_avail_consistent(redis)


async def test_wrapup_end_by_timer_after_deadline(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await connect(store, "a1")
    await store.complete(ix, "a1", side="caller", wrapup_ms=5)
    h = await store.interaction(ix)
    await wait_redis_ms(store, int(h["wrapup_until"]))
    await log.skip()
    await store.wrapup_end(ix, "a1", by="timer")
    (end,) = await log.new_raw()
    t = int(end["t"])
    assert t >= int(h["wrapup_until"])
    assert end == {"ev": "WRAPUPEND", "t": str(t), "queue": "info", "ix": ix, "agent": "a1",
                   "channel": "voice", "wrapup_ms": str(t - int(h["talk_end_ms"])),
                   "by": "timer", "disposition": "", "note": ""}  # fmt: skip
    assert (await store.interaction(ix))["state"] == "closed"
    await assert_avail_consistent(redis)


# --- abandon --------------------------------------------------------------------------------


async def test_abandon_while_queued_exact_wait_positions_and_short_flag(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    ids = []
    for _ in range(4):
        ids.append(await enqueue(store, escalate_after_ms=600_000))
        await tick(store)
    second_entered = await ix_ms(store, ids[1], "entered_ms")
    third_entered = await ix_ms(store, ids[2], "entered_ms")
    await wait_redis_ms(store, third_entered + 21)
    await log.skip()
    # the channel's own time of leaving, 20 ms after entering: exactly 20 ms of wait
    res = await store.abandon(ids[1], short_abandon_ms=21, at_ms=second_entered + 20)
    assert res == Abandoned(second_entered + 20, 20, True)
    res = await store.abandon(ids[2], short_abandon_ms=20, at_ms=third_entered + 20)
    assert res == Abandoned(third_entered + 20, 20, False)
    short_ev, long_ev = await log.new_raw()
    first_entered = [await ix_ms(store, i, "first_entered_ms") for i in ids[1:3]]
    assert short_ev == {
        "ev": "ABANDON", "t": str(second_entered + 20), "queue": "info", "ix": ids[1],
        "agent": "", "channel": "voice", "wait_ms": "20",
        "total_wait_ms": str(second_entered + 20 - first_entered[0]), "pos": "2",
        "origpos": "2", "short": "1", "during": "queued",
    }  # fmt: skip
    # after the first abandon the third moved up to position 2; it entered at 3
    assert long_ev == {
        "ev": "ABANDON", "t": str(third_entered + 20), "queue": "info", "ix": ids[2],
        "agent": "", "channel": "voice", "wait_ms": "20",
        "total_wait_ms": str(third_entered + 20 - first_entered[1]), "pos": "2",
        "origpos": "3", "short": "0", "during": "queued",
    }  # fmt: skip
    h = await store.interaction(ids[1])
    assert pick(h, "state", "ended_ms", "short_abandon") == {
        "state": "abandoned", "ended_ms": str(second_entered + 20), "short_abandon": "1"
    }  # fmt: skip
    assert (await store.interaction(ids[2]))["short_abandon"] == "0"
    assert await bucket_members(redis, VOICE) == [ids[0], ids[3]]
    assert await redis.zscore("cl:due", ids[1]) is None
    assert await redis.zscore("cl:due", ids[2]) is None


async def test_abandon_time_is_clamped_to_entered_and_now(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    early, late, plain = [await enqueue(store) for _ in range(3)]
    await tick(store, 3)
    entered = await ix_ms(store, early, "entered_ms")
    res = await store.abandon(early, short_abandon_ms=5_000, at_ms=entered - 10_000)
    assert res == Abandoned(entered, 0, True)
    before = await store.now_ms()
    res = await store.abandon(late, short_abandon_ms=0, at_ms=before + 3_600_000)
    after = await store.now_ms()
    late_entered = await ix_ms(store, late, "entered_ms")
    assert before <= res.ended_ms <= after
    assert res.wait_ms == res.ended_ms - late_entered and res.short is False
    before = await store.now_ms()
    res = await store.abandon(plain, short_abandon_ms=0)
    assert before <= res.ended_ms <= await store.now_ms()
    events = await log.new_raw()
    assert [e["t"] for e in events[-3:]] == [
        str(entered), str(await ix_ms(store, late, "ended_ms")), str(res.ended_ms)
    ]
    assert events[-3]["wait_ms"] == "0" and events[-3]["short"] == "1"
    assert await redis.zcard(f"cl:b:{VOICE.bucket_id}") == 0
    assert not await redis.sismember("cl:buckets", VOICE.bucket_id)


async def test_abandon_while_offered_frees_the_agent(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await enqueue(store)
    await store.reserve(ix, "a1", VOICE.bucket_id, 20_000)
    await tick(store)
    await log.skip()
    res = await store.abandon(ix, short_abandon_ms=1)
    (event,) = await log.new_raw()
    h = await store.interaction(ix)
    t = int(event["t"])
    wait = t - int(h["entered_ms"])
    assert res == Abandoned(t, wait, False)
    assert event == {
        "ev": "ABANDON", "t": str(t), "queue": "info", "ix": ix, "agent": "a1",
        "channel": "voice", "wait_ms": str(wait),
        "total_wait_ms": str(t - int(h["first_entered_ms"])), "pos": "0", "origpos": "1",
        "short": "0", "during": "offered",
    }  # fmt: skip
    assert h["state"] == "abandoned"
    assert await redis.zcard("cl:offers") == 0
    a = await store.agent("a1")
    assert a["load:voice"] == "0" and a["idle_since"] == str(t)
    assert await store.agent_work("a1") == set()
    assert await redis.zscore("cl:avail", "a1") == float(t)
    await assert_avail_consistent(redis)


async def test_abandon_of_connected_refused(store: RoutingStore) -> None:
    await login(store, "a1")
    ix = await connect(store, "a1")
    with pytest.raises(StateError):
        await store.abandon(ix, short_abandon_ms=5_000)
    assert (await store.interaction(ix))["state"] == "connected"


# --- transfer -------------------------------------------------------------------------------


async def _three_in_second(store: RoutingStore) -> tuple[str, str, str]:
    """An old waiting one in `second`, then `moved` in `info` (connected to a1), then a new one."""
    await login(store, "a1")
    old = await enqueue(store, SECOND)
    await tick(store)
    moved = await connect(store, "a1", VOICE)
    await tick(store)
    new = await enqueue(store, SECOND)
    await tick(store, 3)
    return old, moved, new


async def test_transfer_connected_keeping_position(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    old, moved, new = await _three_in_second(store)
    before = await store.interaction(moved)
    await log.skip()
    pos = await store.transfer(moved, SECOND, holder="a1", note="do II linii", by="a1")
    assert pos == 2
    transfer, enter = await log.new_raw()
    t = int(transfer["t"])
    c, e = int(before["connected_ms"]), int(before["entered_ms"])
    assert transfer == {
        "ev": "TRANSFER", "t": str(t), "queue": "info", "ix": moved, "agent": "a1",
        "channel": "voice", "from_state": "connected", "target_queue": "second",
        "target_agent": "", "wait_ms": str(c - e), "talk_ms": str(t - c), "keep_position": "1",
        "note": "do II linii", "by": "a1",
    }  # fmt: skip
    assert t - c >= 3
    assert enter.pop("ref") in ("", before["ref"])
    assert enter == {"ev": "ENTERQUEUE", "t": str(t), "queue": "second", "ix": moved, "agent": "",
                     "channel": "voice", "priority": "0", "first": "0", "pos": "2"}  # fmt: skip
    assert await bucket_members(redis, SECOND) == [old, moved, new]
    assert await redis.zscore(f"cl:b:{SECOND.bucket_id}", moved) == float(before["enqueued_ms"])
    h = await store.interaction(moved)
    assert pick(h, "state", "agent", "queue", "bucket", "entered_ms", "enqueued_ms",
                "first_entered_ms", "transfers", "transfer_note") == {
        "state": "queued", "agent": "", "queue": "second", "bucket": SECOND.bucket_id,
        "entered_ms": str(t), "enqueued_ms": before["enqueued_ms"],
        "first_entered_ms": before["first_entered_ms"], "transfers": "1",
        "transfer_note": "do II linii",
    }  # fmt: skip
    a = await store.agent("a1")
    assert a["load:voice"] == "0" and a["idle_since"] == str(t)
    assert await store.agent_work("a1") == set()
    assert await redis.smembers("cl:qb:second") == {SECOND.bucket_id}
    await assert_avail_consistent(redis)
    # the next agent's wait counts from entering `second`; the total from the first queue
    await login(store, "a2")
    await store.reserve(moved, "a2", SECOND.bucket_id, 20_000)
    await tick(store)
    await log.skip()
    wait = await store.accept(moved, "a2")
    (conn,) = await log.new_raw()
    ct = int(conn["t"])
    assert wait == ct - t
    assert conn["wait_ms"] == str(ct - t)
    assert conn["total_wait_ms"] == str(ct - int(before["first_entered_ms"]))


async def test_transfer_connected_to_the_back(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    old, moved, new = await _three_in_second(store)
    await log.skip()
    assert await store.transfer(moved, SECOND, holder="a1", keep_position=False) == 3
    transfer, enter = await log.new_raw()
    assert transfer["keep_position"] == "0" and enter["pos"] == "3"
    assert await bucket_members(redis, SECOND) == [old, new, moved]
    h = await store.interaction(moved)
    assert h["enqueued_ms"] == transfer["t"] == h["entered_ms"]


async def test_transfer_position_counts_same_millisecond_ties_by_id(
    store: RoutingStore, log: EventLog
) -> None:
    """Kept position time equal to a waiting one's: the smaller id is ahead, and `pos` says so."""
    for n in range(200):
        moved = await store.enqueue(VOICE, {}, ix_id=f"{n:04d}-a")
        waiting = await store.enqueue(SECOND, {}, ix_id=f"{n:04d}-z")
        if moved.enqueued_ms == waiting.enqueued_ms:
            break
    else:  # pragma: no cover - Redis never ran two scripts in one millisecond
        pytest.skip("no two enqueues fell in the same millisecond")
    await log.skip()
    # every earlier `waiting` is ahead (older); the tie with this one is broken by id
    assert await store.transfer(moved.id, SECOND) == n + 1
    _transfer, enter = await log.new_raw()
    assert enter["pos"] == str(n + 1)


async def test_transfer_to_a_named_agent(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    await login(store, "a2")
    await login(store, "a3")
    ix = await connect(store, "a1")
    target = Placement(queue="second", channel="voice", target_agent="a2")
    await log.skip()
    await store.transfer(ix, target, holder="a1")
    transfer, _enter = await log.new_raw()
    assert transfer["target_queue"] == "second" and transfer["target_agent"] == "a2"
    assert (await store.interaction(ix))["target_agent"] == "a2"
    assert await redis.hgetall(f"cl:bm:{target.bucket_id}") == {
        "queue": "second", "channel": "voice", "priority": "0", "skills": "{}",
        "target_agent": "a2", "queue_priority": "0",
    }  # fmt: skip
    for other in ("a1", "a3"):
        with pytest.raises(StaleError):
            await store.reserve(ix, other, target.bucket_id, 20_000)
    await store.reserve(ix, "a2", target.bucket_id, 20_000)
    assert (await store.interaction(ix))["agent"] == "a2"


async def test_transfer_of_a_queued_one_by_a_supervisor(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    ix = await enqueue(store, escalate_after_ms=600_000)
    await tick(store, 3)
    entered = await ix_ms(store, ix, "entered_ms")
    await log.skip()
    pos = await store.transfer(ix, GENERAL, max_wait_ms=90_000, by="supervisor")
    transfer, enter = await log.new_raw()
    t = int(transfer["t"])
    assert pos == 1
    assert transfer == {
        "ev": "TRANSFER", "t": str(t), "queue": "info", "ix": ix, "agent": "",
        "channel": "voice", "from_state": "queued", "target_queue": "general",
        "target_agent": "", "wait_ms": str(t - entered), "talk_ms": "0", "keep_position": "1",
        "note": "", "by": "supervisor",
    }  # fmt: skip
    assert enter["ev"] == "ENTERQUEUE" and enter["queue"] == "general" and enter["first"] == "0"
    assert await bucket_members(redis, VOICE) == []
    assert await redis.smembers("cl:buckets") == {GENERAL.bucket_id}
    assert await bucket_members(redis, GENERAL) == [ix]
    # timers re-armed for the new queue: no escalation there, max wait from now
    h = await store.interaction(ix)
    assert (h["esc_at"], h["max_at"]) == ("0", str(t + 90_000))
    assert await redis.zscore("cl:due", ix) == float(t + 90_000)


# --- escalate -------------------------------------------------------------------------------


async def test_escalate_lowers_level_keeping_position(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    ix = await enqueue(store, TAX, escalate_after_ms=5, max_wait_ms=600_000)
    await tick(store)
    later = await enqueue(store, TAX3)
    h = await store.interaction(ix)
    entered, esc_at = int(h["entered_ms"]), int(h["esc_at"])
    assert esc_at == entered + 5
    await wait_redis_ms(store, esc_at)
    await log.skip()
    await store.escalate(ix, from_bucket=TAX.bucket_id, expected_step=0, target=TAX3,
                         next_escalation_after_ms=60_000, max_wait_ms=600_000)  # fmt: skip
    (event,) = await log.new_raw()
    t = int(event["t"])
    assert t >= esc_at
    assert event == {"ev": "ESCALATE", "t": str(t), "queue": "tax", "ix": ix, "agent": "",
                     "channel": "voice", "step": "0", "from_queue": "tax", "priority": "0",
                     "skills": '{"tax":3}'}  # fmt: skip
    h2 = await store.interaction(ix)
    assert pick(h2, "bucket", "esc_step", "esc_at", "max_at", "entered_ms", "enqueued_ms",
                "skills") == {
        "bucket": TAX3.bucket_id, "esc_step": "1", "esc_at": str(entered + 60_000),
        "max_at": str(entered + 600_000), "entered_ms": str(entered),
        "enqueued_ms": h["enqueued_ms"], "skills": '{"tax":3}',
    }  # fmt: skip
    # it keeps its position time: ahead of the one that arrived later in the target bucket
    assert await bucket_members(redis, TAX3) == [ix, later]
    assert await redis.zscore(f"cl:b:{TAX3.bucket_id}", ix) == float(h["enqueued_ms"])
    assert await bucket_members(redis, TAX) == []
    assert await redis.smembers("cl:buckets") == {TAX3.bucket_id}
    assert await redis.smembers("cl:qb:tax") == {TAX.bucket_id, TAX3.bucket_id}
    assert await redis.zscore("cl:due", ix) == float(entered + 60_000)
    # the same step fired again (a second dispatcher) is refused, as is the next one too early
    with pytest.raises(StaleError):
        await store.escalate(ix, from_bucket=TAX3.bucket_id, expected_step=0, target=TAX3,
                             next_escalation_after_ms=0, max_wait_ms=0)  # fmt: skip
    with pytest.raises(EarlyError):
        await store.escalate(ix, from_bucket=TAX3.bucket_id, expected_step=1, target=GENERAL,
                             next_escalation_after_ms=0, max_wait_ms=0)  # fmt: skip
    assert await log.new_raw() == []


async def test_escalate_moving_queue_writes_enterqueue(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    ix = await enqueue(store, TAX, escalate_after_ms=1)
    before = await store.interaction(ix)
    await wait_redis_ms(store, int(before["esc_at"]))
    await log.skip()
    await store.escalate(ix, from_bucket=TAX.bucket_id, expected_step=0, target=GENERAL,
                         next_escalation_after_ms=0, max_wait_ms=0)  # fmt: skip
    esc, enter = await log.new_raw()
    t = int(esc["t"])
    assert esc["ev"] == "ESCALATE" and esc["queue"] == "general" and esc["from_queue"] == "tax"
    assert enter.pop("ref") in ("", before["ref"])
    assert enter == {"ev": "ENTERQUEUE", "t": str(t), "queue": "general", "ix": ix, "agent": "",
                     "channel": "voice", "priority": "0", "first": "0", "pos": "1"}  # fmt: skip
    h = await store.interaction(ix)
    assert pick(h, "queue", "bucket", "entered_ms", "enqueued_ms", "first_entered_ms") == {
        "queue": "general", "bucket": GENERAL.bucket_id, "entered_ms": str(t),
        "enqueued_ms": before["enqueued_ms"], "first_entered_ms": before["first_entered_ms"],
    }  # fmt: skip
    assert await redis.zscore(f"cl:b:{GENERAL.bucket_id}", ix) == float(before["enqueued_ms"])
    assert await redis.smembers("cl:qb:general") == {GENERAL.bucket_id}
    assert await redis.zscore("cl:due", ix) is None


# --- max wait -------------------------------------------------------------------------------


async def test_max_wait_without_overflow_times_out(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    ix = await enqueue(store, max_wait_ms=60_000)
    with pytest.raises(EarlyError):
        await store.max_wait(ix, from_bucket=VOICE.bucket_id, overflow=None)
    quick = await enqueue(store, max_wait_ms=3)
    h = await store.interaction(quick)
    await wait_redis_ms(store, int(h["max_at"]))
    await log.skip()
    assert await store.max_wait(quick, from_bucket=VOICE.bucket_id, overflow=None) == "timeout"
    (event,) = await log.new_raw()
    t = int(event["t"])
    assert t >= int(h["max_at"])
    assert event == {
        "ev": "EXITWITHTIMEOUT", "t": str(t), "queue": "info", "ix": quick, "agent": "",
        "channel": "voice", "wait_ms": str(t - int(h["entered_ms"])),
        "total_wait_ms": str(t - int(h["first_entered_ms"])), "pos": "2", "origpos": "2",
        "overflow": "",
    }  # fmt: skip
    h2 = await store.interaction(quick)
    assert (h2["state"], h2["ended_ms"]) == ("timeout", str(t))
    assert await bucket_members(redis, VOICE) == [ix]
    assert await redis.zscore("cl:due", quick) is None


async def test_max_wait_with_overflow_keeps_position_time(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    old = await enqueue(store, OVERFLOW)
    await tick(store)
    ix = await enqueue(store, max_wait_ms=5)
    await tick(store)
    new = await enqueue(store, OVERFLOW)
    before = await store.interaction(ix)
    await wait_redis_ms(store, int(before["max_at"]))
    await log.skip()
    state = await store.max_wait(ix, from_bucket=VOICE.bucket_id, overflow=OVERFLOW,
                                 max_wait_ms=120_000)  # fmt: skip
    assert state == "queued"
    exit_ev, enter = await log.new_raw()
    t = int(exit_ev["t"])
    assert exit_ev["ev"] == "EXITWITHTIMEOUT" and exit_ev["overflow"] == "overflow"
    assert exit_ev["queue"] == "info" and exit_ev["pos"] == "1"
    assert enter.pop("ref") in ("", before["ref"])
    assert enter == {"ev": "ENTERQUEUE", "t": str(t), "queue": "overflow", "ix": ix, "agent": "",
                     "channel": "voice", "priority": "0", "first": "0", "pos": "2"}  # fmt: skip
    assert await bucket_members(redis, OVERFLOW) == [old, ix, new]
    assert await redis.zscore(f"cl:b:{OVERFLOW.bucket_id}", ix) == float(before["enqueued_ms"])
    h = await store.interaction(ix)
    assert pick(h, "state", "queue", "bucket", "entered_ms", "enqueued_ms", "max_at") == {
        "state": "queued", "queue": "overflow", "bucket": OVERFLOW.bucket_id,
        "entered_ms": str(t), "enqueued_ms": before["enqueued_ms"], "max_at": str(t + 120_000),
    }  # fmt: skip
    assert await redis.zscore("cl:due", ix) == float(t + 120_000)
    assert await redis.smembers("cl:buckets") == {OVERFLOW.bucket_id}


# --- message / deflect ----------------------------------------------------------------------


async def test_messages_from_resident_and_holder(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await enqueue(store, CHAT)
    await log.skip()
    text = "Dzień dobry"
    assert await store.message(ix, sender="resident", text=text) == 1
    (event,) = await log.new_raw()
    t = int(event["t"])
    assert event == {"ev": "MESSAGE", "t": str(t), "queue": "info", "ix": ix, "agent": "",
                     "channel": "chat", "from": "resident",
                     "size": str(len(text.encode())), "index": "1"}  # fmt: skip
    with pytest.raises(StateError):
        await store.message(ix, sender="agent", text="hi", agent_id="a1")
    await store.reserve(ix, "a1", CHAT.bucket_id, 20_000)
    with pytest.raises(StateError):
        await store.message(ix, sender="agent", text="hi", agent_id="a1")
    await store.accept(ix, "a1")
    await log.skip()
    assert await store.message(ix, sender="agent", text="W czym pomóc?", agent_id="a1",
                               extra={"html": False}) == 2  # fmt: skip
    (event,) = await log.new_raw()
    assert (event["from"], event["agent"]) == ("agent", "a1")
    messages = await store.messages(ix)
    assert messages == [
        {"text": text, "t": t, "from": "resident", "agent": ""},
        {"text": "W czym pomóc?", "html": False, "t": int(event["t"]), "from": "agent",
         "agent": "a1"},
    ]  # fmt: skip
    await store.complete(ix, "a1", side="agent", wrapup_ms=0)
    with pytest.raises(StateError):
        await store.message(ix, sender="resident", text="jeszcze jedno")
    with pytest.raises(StateError):
        await store.message(ix, sender="agent", text="?", agent_id="a1")


async def test_deflect_never_enters_a_queue(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    queued = await store.enqueue(VOICE, {})
    await log.skip()
    res = await store.deflect(
        {"channel": "voice", "queue": "info", "resident": "+48600", "language": "pl"},
        "opening-hours",
    )
    (event,) = await log.new_raw()
    t = int(event["t"])
    assert res.created and int(res.ref[5:]) == 2 and res.ref[:4] == queued.ref[:4]
    assert event == {"ev": "DEFLECTED", "t": str(t), "queue": "info", "ix": res.id, "agent": "",
                     "channel": "voice", "ref": res.ref, "reason": "opening-hours"}  # fmt: skip
    h = await store.interaction(res.id)
    assert pick(h, "state", "ref", "created_ms", "ended_ms", "resident") == {
        "state": "deflected", "ref": res.ref, "created_ms": str(t), "ended_ms": str(t),
        "resident": "+48600",
    }  # fmt: skip
    assert "bucket" not in h
    assert (await store.by_ref(res.ref))["id"] == res.id
    assert await redis.smembers("cl:buckets") == {VOICE.bucket_id}
    assert await bucket_members(redis, VOICE) == [queued.id]
    assert await redis.zscore("cl:due", res.id) is None


async def test_every_event_parses_as_an_event_model(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await connect(store, "a1")
    await store.complete(ix, "a1", side="agent", wrapup_ms=60_000)
    await store.wrapup_end(ix, "a1")
    events = await log.all()
    assert [e.type for e in events] == [
        EventType.ADDMEMBER, EventType.ENTERQUEUE, EventType.OFFER, EventType.CONNECT,
        EventType.COMPLETEAGENT, EventType.WRAPUPEND,
    ]  # fmt: skip
    assert events[3].wait_ms is not None and events[3].ring_ms is not None
    assert events[4].talk_ms is not None and events[5].wrapup_ms is not None
    assert all(e.time_ms > 0 for e in events)


# --- refusals change nothing ----------------------------------------------------------------


@dataclass
class World:
    q: str  # queued in info/voice, timers far away
    t: str  # queued in tax (needs tax 5), no timers
    o: str  # offered to a1
    c: str  # connected with a2
    w: str  # in wrap-up with a3
    x: str  # closed (a4)
    d: str  # deflected


async def build_world(store: RoutingStore) -> World:
    for agent in ("a1", "a2", "a3", "a4"):
        await login(store, agent, skills={"tax": 3})
    await login(store, "a5", skills={"tax": 9}, ready=False)
    q = await enqueue(store, VOICE, escalate_after_ms=600_000, max_wait_ms=600_000)
    t = await enqueue(store, TAX)
    o = await enqueue(store, VOICE)
    await store.reserve(o, "a1", VOICE.bucket_id, 600_000)
    c = await connect(store, "a2")
    w = await connect(store, "a3")
    await store.complete(w, "a3", side="agent", wrapup_ms=600_000)
    x = await connect(store, "a4")
    await store.complete(x, "a4", side="caller", wrapup_ms=0)
    await store.message(c, sender="resident", text="halo")
    d = (await store.deflect({"channel": "voice", "queue": "info"}, "faq")).id
    return World(q, t, o, c, w, x, d)


Call = Callable[[RoutingStore, World], Awaitable[object]]

REFUSALS: list[tuple[str, Call, type[StoreError]]] = [
    ("reserve_wrong_bucket", lambda s, w: s.reserve(w.q, "a4", TAX.bucket_id, 1), StaleError),
    ("reserve_offered", lambda s, w: s.reserve(w.o, "a4", VOICE.bucket_id, 1), StaleError),
    ("reserve_connected", lambda s, w: s.reserve(w.c, "a4", VOICE.bucket_id, 1), StaleError),
    ("reserve_agent_full", lambda s, w: s.reserve(w.q, "a2", VOICE.bucket_id, 1), StaleError),
    ("reserve_agent_wrapup", lambda s, w: s.reserve(w.q, "a3", VOICE.bucket_id, 1), StaleError),
    ("reserve_unknown_agent", lambda s, w: s.reserve(w.q, "zz", VOICE.bucket_id, 1), StaleError),
    ("reserve_not_ready", lambda s, w: s.reserve(w.t, "a5", TAX.bucket_id, 1), StaleError),
    ("reserve_below_level", lambda s, w: s.reserve(w.t, "a4", TAX.bucket_id, 1), StaleError),
    ("accept_other_agent", lambda s, w: s.accept(w.o, "a4"), ForbiddenError),
    ("accept_queued", lambda s, w: s.accept(w.q, "a4"), StateError),
    ("accept_connected", lambda s, w: s.accept(w.c, "a2"), StateError),
    ("reject_other_agent", lambda s, w: s.reject(w.o, "a4"), ForbiddenError),
    ("reject_connected", lambda s, w: s.reject(w.c, "a2"), StateError),
    ("reject_unknown", lambda s, w: s.reject("nope", "a1"), NotFoundError),
    ("timeout_early",
     lambda s, w: s.offer_timeout(w.o, "a1", max_misses=1, pause_reason="r"), EarlyError),
    ("timeout_other_agent",
     lambda s, w: s.offer_timeout(w.o, "a4", max_misses=1, pause_reason="r"), StaleError),
    ("timeout_queued",
     lambda s, w: s.offer_timeout(w.q, "a1", max_misses=1, pause_reason="r"), StateError),
    ("complete_other_agent",
     lambda s, w: s.complete(w.c, "a1", side="agent", wrapup_ms=0), ForbiddenError),
    ("complete_offered",
     lambda s, w: s.complete(w.o, "a1", side="agent", wrapup_ms=0), StateError),
    ("complete_wrapup",
     lambda s, w: s.complete(w.w, "a3", side="agent", wrapup_ms=0), StateError),
    ("complete_closed",
     lambda s, w: s.complete(w.x, "a4", side="agent", wrapup_ms=0), StateError),
    ("wrapup_end_timer_early", lambda s, w: s.wrapup_end(w.w, "a3", by="timer"), EarlyError),
    ("wrapup_end_other_agent", lambda s, w: s.wrapup_end(w.w, "a1"), ForbiddenError),
    ("wrapup_end_connected", lambda s, w: s.wrapup_end(w.c, "a2"), StateError),
    ("wrapup_end_closed", lambda s, w: s.wrapup_end(w.x, "a4"), StateError),
    ("abandon_connected", lambda s, w: s.abandon(w.c, short_abandon_ms=1), StateError),
    ("abandon_wrapup", lambda s, w: s.abandon(w.w, short_abandon_ms=1), StateError),
    ("abandon_closed", lambda s, w: s.abandon(w.x, short_abandon_ms=1), StateError),
    ("abandon_deflected", lambda s, w: s.abandon(w.d, short_abandon_ms=1), StateError),
    ("abandon_unknown", lambda s, w: s.abandon("nope", short_abandon_ms=1), NotFoundError),
    ("transfer_offered", lambda s, w: s.transfer(w.o, GENERAL, holder="a1"), StateError),
    ("transfer_not_holder", lambda s, w: s.transfer(w.c, GENERAL, holder="a1"), ForbiddenError),
    ("transfer_queued_holder", lambda s, w: s.transfer(w.q, GENERAL, holder="a1"), StateError),
    ("transfer_connected_no_holder", lambda s, w: s.transfer(w.c, GENERAL), ForbiddenError),
    ("transfer_wrapup", lambda s, w: s.transfer(w.w, GENERAL, holder="a3"), StateError),
    ("transfer_closed", lambda s, w: s.transfer(w.x, GENERAL, holder="a4"), StateError),
    ("escalate_early",
     lambda s, w: s.escalate(w.q, from_bucket=VOICE.bucket_id, expected_step=0, target=GENERAL,
                             next_escalation_after_ms=0, max_wait_ms=0), EarlyError),
    ("escalate_wrong_step",
     lambda s, w: s.escalate(w.t, from_bucket=TAX.bucket_id, expected_step=1, target=TAX3,
                             next_escalation_after_ms=0, max_wait_ms=0), StaleError),
    ("escalate_wrong_bucket",
     lambda s, w: s.escalate(w.t, from_bucket=VOICE.bucket_id, expected_step=0, target=TAX3,
                             next_escalation_after_ms=0, max_wait_ms=0), StaleError),
    ("escalate_offered",
     lambda s, w: s.escalate(w.o, from_bucket=VOICE.bucket_id, expected_step=0, target=TAX3,
                             next_escalation_after_ms=0, max_wait_ms=0), StateError),
    ("max_wait_early",
     lambda s, w: s.max_wait(w.q, from_bucket=VOICE.bucket_id, overflow=None), EarlyError),
    ("max_wait_none_set",
     lambda s, w: s.max_wait(w.t, from_bucket=TAX.bucket_id, overflow=OVERFLOW), EarlyError),
    ("max_wait_wrong_bucket",
     lambda s, w: s.max_wait(w.q, from_bucket=TAX.bucket_id, overflow=None), StaleError),
    ("max_wait_connected",
     lambda s, w: s.max_wait(w.c, from_bucket=VOICE.bucket_id, overflow=None), StateError),
    ("message_agent_queued",
     lambda s, w: s.message(w.q, sender="agent", text="x", agent_id="a1"), StateError),
    ("message_agent_offered",
     lambda s, w: s.message(w.o, sender="agent", text="x", agent_id="a1"), StateError),
    ("message_agent_not_holder",
     lambda s, w: s.message(w.c, sender="agent", text="x", agent_id="a1"), ForbiddenError),
    ("message_resident_closed",
     lambda s, w: s.message(w.x, sender="resident", text="x"), StateError),
    ("message_resident_deflected",
     lambda s, w: s.message(w.d, sender="resident", text="x"), StateError),
    ("message_unknown", lambda s, w: s.message("nope", sender="resident", text="x"),
     NotFoundError),
    ("enqueue_existing_id", lambda s, w: s.enqueue(VOICE, {}, ix_id=w.q), ExistsError),
]  # fmt: skip


@pytest.mark.parametrize(("call", "exc"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
async def test_refusal_changes_nothing(
    store: RoutingStore, redis: aioredis.Redis, call: Call, exc: type[StoreError]
) -> None:
    world = await build_world(store)
    await assert_avail_consistent(redis)
    await assert_loads_match_work(redis)
    before = await snapshot(redis)
    assert before["cl:events"][1][0] == 22  # the world's own events, all still there
    with pytest.raises(exc):
        await call(store, world)
    assert await snapshot(redis) == before
