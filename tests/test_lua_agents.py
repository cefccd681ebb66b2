"""Agents: login/pause/ready/logout/profile, and the capacity and blending rule of `reserve`.

`assert_avail_consistent` recomputes "ready and can take some channel" from each agent hash in
Python, independently of the Lua rule, and compares it with `cl:avail` (members and scores).
"""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from queues.buckets import Placement
from queues.errors import BusyError, StaleError, StateError
from queues.store import Blending, RoutingStore
from tests.lua_helpers import (
    CHAT,
    TAX,
    VOICE,
    EventLog,
    assert_avail_consistent,
    assert_loads_match_work,
    connect,
    enqueue,
    loaded_store,
    login,
    profile,
    snapshot,
    tick,
)

EMAIL = Placement(queue="info", channel="email")
SMS = Placement(queue="info", channel="sms")


@pytest.fixture
async def store(redis: aioredis.Redis) -> RoutingStore:
    return await loaded_store(redis)


@pytest.fixture
def log(redis: aioredis.Redis) -> EventLog:
    return EventLog(redis)


async def reserve(store: RoutingStore, placement: Placement, agent_id: str) -> str:
    ix = await enqueue(store, placement)
    await store.reserve(ix, agent_id, placement.bucket_id, 60_000)
    return ix


async def refused(store: RoutingStore, redis: aioredis.Redis, placement: Placement, agent: str):
    """Enqueue one more and check that `agent` may not have it, with nothing changed."""
    ix = await enqueue(store, placement)
    before = await snapshot(redis)
    with pytest.raises(StaleError):
        await store.reserve(ix, agent, placement.bucket_id, 60_000)
    assert await snapshot(redis) == before
    return ix


# --- login / pause / ready / logout ---------------------------------------------------------


async def test_login_ready_writes_profile_state_and_addmember(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await store.agent_login(
        profile("a1", {"tax": 7, "info": 3}, {"voice": 1, "chat": 2}),
        Blending(text_during_voice=True),
        ready=True,
    )
    (event,) = await log.new_raw()
    t = int(event["t"])
    assert event == {"ev": "ADDMEMBER", "t": str(t), "queue": "", "ix": "", "agent": "a1",
                     "channel": "", "state": "ready", "reason": ""}  # fmt: skip
    a = await store.agent("a1")
    assert a == {
        "id": "a1", "name": "A1", "skills": json.dumps({"info": 3, "tax": 7}), "line": "first",
        "endpoint": "", "blend_vt": "0", "blend_tv": "1", "state": "ready", "reason": "",
        "state_since": str(t), "idle_since": str(t), "misses": "0", "login_ms": str(t),
        "cap:voice": "1", "cap:chat": "2", "cap:sms": "0", "cap:email": "0",
        "cap:telegram": "0", "cap:webform": "0",
        "load:voice": "0", "load:chat": "0", "load:sms": "0", "load:email": "0",
        "load:telegram": "0", "load:webform": "0",
    }  # fmt: skip
    assert await redis.smembers("cl:agents") == {"a1"}
    assert await redis.zrange("cl:avail", 0, -1, withscores=True) == [("a1", float(t))]


async def test_login_not_ready_then_double_login_refused(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1", ready=False)
    await store.agent_not_ready("a1", "briefing")
    await log.skip()
    await store.agent_logout("a1")
    await log.skip()
    await store.agent_login(profile("a1"), Blending(), ready=False, reason="briefing")
    (event,) = await log.new_raw()
    assert (event["ev"], event["state"], event["reason"]) == ("ADDMEMBER", "not_ready", "briefing")
    a = await store.agent("a1")
    assert (a["state"], a["reason"]) == ("not_ready", "briefing")
    assert await redis.zscore("cl:avail", "a1") is None
    before = await snapshot(redis)
    for ready in (True, False):
        with pytest.raises(StateError):
            await store.agent_login(profile("a1"), Blending(), ready=ready)
    assert await snapshot(redis) == before


async def test_not_ready_ready_and_logout_events(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    t0 = int((await store.agent("a1"))["state_since"])
    await tick(store, 3)
    await log.skip()
    await store.agent_not_ready("a1", "lunch")
    (pause,) = await log.new_raw()
    t1 = int(pause["t"])
    assert pause == {"ev": "PAUSE", "t": str(t1), "queue": "", "ix": "", "agent": "a1",
                     "channel": "", "reason": "lunch", "state_ms": str(t1 - t0)}  # fmt: skip
    assert t1 - t0 >= 3
    a = await store.agent("a1")
    assert (a["state"], a["reason"], a["state_since"]) == ("not_ready", "lunch", str(t1))
    assert await redis.zscore("cl:avail", "a1") is None
    await tick(store)
    await store.agent_not_ready("a1", "training")  # a new reason: a new PAUSE
    (pause2,) = await log.new_raw()
    t2 = int(pause2["t"])
    assert (pause2["reason"], pause2["state_ms"]) == ("training", str(t2 - t1))
    await tick(store)
    await store.agent_ready("a1")
    (unpause,) = await log.new_raw()
    t3 = int(unpause["t"])
    assert unpause == {"ev": "UNPAUSE", "t": str(t3), "queue": "", "ix": "", "agent": "a1",
                       "channel": "", "state_ms": str(t3 - t2)}  # fmt: skip
    a = await store.agent("a1")
    assert pick3(a) == ("ready", "", str(t3)) and a["idle_since"] == str(t3)
    assert await redis.zscore("cl:avail", "a1") == float(t3)
    with pytest.raises(StateError):
        await store.agent_ready("a1")
    await tick(store)
    await store.agent_logout("a1")
    (remove,) = await log.new_raw()
    t4 = int(remove["t"])
    assert remove == {"ev": "REMOVEMEMBER", "t": str(t4), "queue": "", "ix": "", "agent": "a1",
                      "channel": "", "state_ms": str(t4 - t3)}  # fmt: skip
    assert pick3(await store.agent("a1")) == ("offline", "", str(t4))
    assert await redis.zscore("cl:avail", "a1") is None
    assert await redis.smembers("cl:agents") == {"a1"}  # kept for statistics


def pick3(a: dict[str, str]) -> tuple[str, str, str]:
    return a["state"], a["reason"], a["state_since"]


async def test_logout_refused_while_holding_work(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1")
    ix = await reserve(store, VOICE, "a1")
    for step in ("offered", "connected", "wrapup"):
        if step == "connected":
            await store.accept(ix, "a1")
        elif step == "wrapup":
            await store.complete(ix, "a1", side="caller", wrapup_ms=60_000)
        before = await snapshot(redis)
        with pytest.raises(BusyError):
            await store.agent_logout("a1")
        assert await snapshot(redis) == before, step
    # pausing is allowed while holding work; logging out still is not
    await store.agent_not_ready("a1", "end-of-shift")
    with pytest.raises(BusyError):
        await store.agent_logout("a1")
    await store.wrapup_end(ix, "a1")
    await log.skip()
    await store.agent_logout("a1")
    assert [e["ev"] for e in await log.new_raw()] == ["REMOVEMEMBER"]


@pytest.mark.parametrize(
    "action", ["logout", "ready", "not_ready", "logout_unknown", "ready_unknown"]
)
async def test_agent_state_refusals_change_nothing(
    store: RoutingStore, redis: aioredis.Redis, action: str
) -> None:
    await login(store, "a1")
    await store.agent_logout("a1")
    before = await snapshot(redis)
    with pytest.raises(StateError):
        if action == "logout":
            await store.agent_logout("a1")
        elif action == "ready":
            await store.agent_ready("a1")
        elif action == "not_ready":
            await store.agent_not_ready("a1", "x")
        elif action == "logout_unknown":
            await store.agent_logout("nobody")
        else:
            await store.agent_ready("nobody")
    assert await snapshot(redis) == before


async def test_relogin_after_logout(store: RoutingStore, redis: aioredis.Redis) -> None:
    await login(store, "a1", capacity={"voice": 1})
    ix = await connect(store, "a1")
    await store.complete(ix, "a1", side="agent", wrapup_ms=0)
    await store.agent_logout("a1")
    await login(store, "a1", capacity={"chat": 2})
    a = await store.agent("a1")
    assert (a["state"], a["cap:voice"], a["cap:chat"], a["load:voice"]) == ("ready", "0", "2", "0")
    await refused(store, redis, VOICE, "a1")
    await reserve(store, CHAT, "a1")
    await assert_avail_consistent(redis)


# --- profile --------------------------------------------------------------------------------


async def test_profile_changes_skills_and_capacity_at_once(
    store: RoutingStore, redis: aioredis.Redis, log: EventLog
) -> None:
    await login(store, "a1", skills={"tax": 2}, capacity={"chat": 2})
    await refused(store, redis, TAX, "a1")
    await store.agent_profile(profile("a1", {"tax": 5}, {"chat": 2, "voice": 1}), Blending())
    assert json.loads((await store.agent("a1"))["skills"]) == {"tax": 5}
    await reserve(store, TAX, "a1")
    assert await redis.zscore("cl:avail", "a1") is None  # voice full, text blocked by voice
    await store.agent_profile(
        profile("a1", {"tax": 5}, {"chat": 2, "voice": 1}), Blending(text_during_voice=True)
    )
    assert await redis.zscore("cl:avail", "a1") is not None  # may take chat now, at once
    await reserve(store, CHAT, "a1")
    await store.agent_profile(
        profile("a1", {"tax": 5}, {"chat": 1, "voice": 1}), Blending(True, True)
    )
    assert await redis.zscore("cl:avail", "a1") is None  # chat lowered to what it holds
    await assert_avail_consistent(redis)
    await store.agent_profile(profile("a1", {}, {"chat": 2, "voice": 1}), Blending(True, True))
    assert await redis.zscore("cl:avail", "a1") is not None
    await refused(store, redis, TAX, "a1")  # the skill is gone
    await assert_avail_consistent(redis)


async def test_profile_dropping_a_channel_removes_its_capacity(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await login(store, "a1", capacity={"voice": 1, "chat": 3})
    await store.agent_profile(profile("a1", capacity={"chat": 0}), Blending())
    a = await store.agent("a1")
    assert (a["cap:voice"], a["cap:chat"]) == ("0", "0")
    assert await redis.zscore("cl:avail", "a1") is None
    await refused(store, redis, VOICE, "a1")
    await assert_avail_consistent(redis)


async def test_profile_of_a_new_agent_is_offline(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await store.agent_profile(profile("a9", {"tax": 1}), Blending())
    a = await store.agent("a9")
    assert a["state"] == "offline" and a["cap:voice"] == "1"
    assert await redis.smembers("cl:agents") == {"a9"}
    assert await redis.zscore("cl:avail", "a9") is None
    assert await redis.xlen("cl:events") == 0  # not a queue_log event


# --- capacity and blending ------------------------------------------------------------------


async def test_chat_capacity_three(store: RoutingStore, redis: aioredis.Redis) -> None:
    await login(store, "a1", capacity={"chat": 3})
    for n in range(1, 4):
        await reserve(store, CHAT, "a1")
        assert (await store.agent("a1"))["load:chat"] == str(n)
        assert (await redis.zscore("cl:avail", "a1") is not None) == (n < 3)
        await assert_avail_consistent(redis)
    await refused(store, redis, CHAT, "a1")


async def test_voice_with_open_chats_needs_blending(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await login(store, "a1", capacity={"voice": 1, "chat": 3})
    await login(store, "a2", capacity={"voice": 1, "chat": 3},
                blending=Blending(voice_with_open_text=True))  # fmt: skip
    for agent in ("a1", "a2"):
        await reserve(store, CHAT, agent)
    await refused(store, redis, VOICE, "a1")
    await reserve(store, VOICE, "a2")
    a2 = await store.agent("a2")
    assert (a2["load:voice"], a2["load:chat"]) == ("1", "1")
    # a2 now has voice 1/1 and no text_during_voice: nothing more
    assert await redis.zscore("cl:avail", "a2") is None
    await refused(store, redis, CHAT, "a2")
    await assert_avail_consistent(redis)


async def test_chat_during_a_call_needs_blending(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await login(store, "a1", capacity={"voice": 1, "chat": 3})
    await login(store, "a2", capacity={"voice": 1, "chat": 3},
                blending=Blending(text_during_voice=True))  # fmt: skip
    calls = {agent: await connect(store, agent) for agent in ("a1", "a2")}
    assert await redis.zscore("cl:avail", "a1") is None
    assert await redis.zscore("cl:avail", "a2") is not None
    await refused(store, redis, CHAT, "a1")
    await reserve(store, CHAT, "a2")
    await refused(store, redis, VOICE, "a2")  # voice is full anyway
    # the call ends: a1 may take chat again
    await store.complete(calls["a1"], "a1", side="caller", wrapup_ms=0)
    await reserve(store, CHAT, "a1")
    await assert_avail_consistent(redis)
    await assert_loads_match_work(redis)


async def test_not_ready_and_offline_agents_refused(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    await login(store, "a1", ready=False)
    await login(store, "a2")
    await store.agent_logout("a2")
    for agent in ("a1", "a2", "never-logged-in"):
        await refused(store, redis, VOICE, agent)


async def test_skills_and_minimum_levels(store: RoutingStore, redis: aioredis.Redis) -> None:
    both = Placement(queue="tax", channel="voice", skills={"tax": 5, "en": 2})
    await login(store, "none")
    await login(store, "low", skills={"tax": 4, "en": 9})
    await login(store, "half", skills={"tax": 9})
    await login(store, "exact", skills={"tax": 5, "en": 2})
    for agent in ("none", "low", "half"):
        await refused(store, redis, both, agent)
    await reserve(store, both, "exact")
    await reserve(store, VOICE, "none")  # no skill needed


async def test_avail_follows_every_transition(
    store: RoutingStore, redis: aioredis.Redis
) -> None:
    """A longer scripted day; the available set is re-derived after every single step."""
    check = assert_avail_consistent
    await login(store, "v", capacity={"voice": 1, "chat": 2},
                blending=Blending(text_during_voice=True))  # fmt: skip
    await check(redis)
    await login(store, "c", capacity={"chat": 2, "email": 1}, ready=False)
    await check(redis)
    await store.agent_ready("c")
    await check(redis)
    call = await reserve(store, VOICE, "v")
    await check(redis)
    chat1 = await reserve(store, CHAT, "v")
    await check(redis)
    await store.accept(call, "v")
    await check(redis)
    chat2 = await reserve(store, CHAT, "v")  # chat 2/2 and voice 1/1: full
    await check(redis)
    assert await redis.zscore("cl:avail", "v") is None
    await store.reject(chat2, "v")
    await check(redis)
    await store.reserve(chat2, "c", CHAT.bucket_id, 0)
    await check(redis)
    await store.offer_timeout(chat2, "c", max_misses=1, pause_reason="rona")
    await check(redis)
    assert (await store.agent("c"))["state"] == "not_ready"
    await store.agent_ready("c")
    await check(redis)
    mail = await reserve(store, EMAIL, "c")
    await check(redis)
    await store.reserve(chat2, "c", CHAT.bucket_id, 60_000)
    await check(redis)
    await store.accept(chat2, "c")
    await check(redis)
    await store.accept(mail, "c")
    await check(redis)
    await store.agent_not_ready("c", "meeting")  # keeps its work, leaves the set
    await check(redis)
    await store.complete(call, "v", side="caller", wrapup_ms=60_000)
    await check(redis)
    await store.transfer(chat2, CHAT, holder="c")
    await check(redis)
    await store.abandon(chat1, short_abandon_ms=0)
    await check(redis)
    await store.wrapup_end(call, "v", by="agent")
    await check(redis)
    await store.agent_profile(profile("v", capacity={"voice": 0, "chat": 0}), Blending())
    await check(redis)
    await store.agent_profile(profile("v", capacity={"chat": 1}), Blending())
    await check(redis)
    await store.reserve(chat2, "v", CHAT.bucket_id, 60_000)
    await check(redis)
    await store.accept(chat2, "v")
    await check(redis)
    await store.complete(chat2, "v", side="agent", wrapup_ms=0)
    await check(redis)
    await store.complete(mail, "c", side="agent", wrapup_ms=0)
    await check(redis)
    await store.agent_logout("c")
    await check(redis)
    await store.agent_logout("v")
    await check(redis)
    await assert_loads_match_work(redis)
    assert await redis.zcard("cl:avail") == 0
