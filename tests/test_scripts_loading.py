"""Loading the Lua scripts, calling them by SHA, reloading after NOSCRIPT, mapping their errors."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from queues.buckets import Placement
from queues.errors import SCRIPT_ERRORS, BusyError, StaleError, StoreError
from queues.scripts import Scripts, _read, script_names
from queues.store import Blending, RoutingStore
from tests.lua_helpers import VOICE, enqueue, profile


def lua_files() -> set[str]:
    folder = resources.files("queues").joinpath("lua")
    return {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".lua")}


def with_script(scripts: Scripts, name: str, body: str) -> None:
    """Add a test-only script (not loaded in Redis yet) to a Scripts instance."""
    scripts.sources[name] = body
    scripts.shas[name] = hashlib.sha1(body.encode()).hexdigest()


async def test_every_script_loads_with_the_prelude(redis: aioredis.Redis) -> None:
    await redis.script_flush()  # FLUSHALL between tests keeps the script cache
    scripts = Scripts(redis)
    names = script_names()
    assert set(names) == lua_files() - {"_lib"}
    transitions = {
        "enqueue", "reserve", "accept", "reject", "offer_timeout", "complete", "wrapup_end",
        "abandon", "transfer", "escalate", "max_wait", "message", "deflect", "agent_login",
        "agent_logout", "agent_ready", "agent_not_ready", "agent_profile",
    }  # fmt: skip
    assert transitions <= set(names)
    lib = _read("_lib.lua")
    for name in names:
        assert scripts.sources[name].startswith(lib)
        assert scripts.sources[name].endswith(_read(f"{name}.lua"))
    assert await redis.script_exists(*scripts.shas.values()) == [False] * len(names)
    await scripts.load()  # SCRIPT LOAD compiles each one: a syntax error would raise here
    assert await redis.script_exists(*(scripts.shas[n] for n in names)) == [True] * len(names)


async def test_first_call_without_load_and_after_script_flush(redis: aioredis.Redis) -> None:
    store = RoutingStore(redis)  # never loaded: the first call meets NOSCRIPT and loads
    await store.agent_login(profile("a1"), Blending(), ready=True)
    assert all(await redis.script_exists(*store.scripts.shas.values()))
    await redis.script_flush()
    assert not any(await redis.script_exists(*store.scripts.shas.values()))
    await store.agent_not_ready("a1", "lunch")  # reloads transparently
    assert (await store.agent("a1"))["state"] == "not_ready"
    assert all(await redis.script_exists(*store.scripts.shas.values()))
    await redis.script_flush()
    ix = await enqueue(store)
    assert (await store.interaction(ix))["state"] == "queued"
    assert [f["ev"] for _, f in await redis.xrange("cl:events")] == [
        "ADDMEMBER", "PAUSE", "ENTERQUEUE"
    ]


async def test_refusal_after_script_flush_still_maps_to_its_error(redis: aioredis.Redis) -> None:
    store = RoutingStore(redis)
    await store.load_scripts()
    ix = await enqueue(store)
    await redis.script_flush()
    with pytest.raises(SCRIPT_ERRORS["CL_STALE"]):
        await store.reserve(ix, "nobody", VOICE.bucket_id, 1_000)


@pytest.mark.parametrize("code", sorted(SCRIPT_ERRORS))
async def test_script_error_codes_map_to_their_class(redis: aioredis.Redis, code: str) -> None:
    scripts = Scripts(redis)
    with_script(scripts, "fails", f"return redis.error_reply('{code} the detail here')")
    with pytest.raises(SCRIPT_ERRORS[code]) as info:
        await scripts.call("fails", [], [])
    assert type(info.value) is SCRIPT_ERRORS[code]
    assert info.value.detail == "the detail here"


async def test_unknown_cl_code_is_a_generic_store_error(redis: aioredis.Redis) -> None:
    scripts = Scripts(redis)
    with_script(scripts, "fails", "return redis.error_reply('CL_SOMETHINGNEW x')")
    with pytest.raises(StoreError) as info:
        await scripts.call("fails", [], [])
    assert type(info.value) is StoreError
    assert "CL_SOMETHINGNEW x" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        "return redis.error_reply('ERR something else entirely')",
        "return redis.error_reply('BUSYGROUP not ours')",
        "error('plain Lua failure')",
        "return redis.call('INCR', KEYS[1])",  # WRONGTYPE from Redis itself
    ],
)
async def test_other_redis_errors_are_not_swallowed(redis: aioredis.Redis, body: str) -> None:
    await redis.hset("cl:h", "f", "v")
    scripts = Scripts(redis)
    with_script(scripts, "other", body)
    with pytest.raises(ResponseError) as info:
        await scripts.call("other", ["cl:h"], [])
    assert not isinstance(info.value, StoreError)


async def test_wrong_type_inside_a_real_script_is_raised(redis: aioredis.Redis) -> None:
    store = RoutingStore(redis)
    await store.load_scripts()
    await redis.set("cl:agent:a1", "not a hash")
    with pytest.raises(ResponseError, match="WRONGTYPE") as info:
        await store.agent_ready("a1")
    assert not isinstance(info.value, StoreError)
    assert await redis.get("cl:agent:a1") == "not a hash"
    assert await redis.exists("cl:events") == 0


async def test_pipelined_calls_reload_after_script_flush(redis: aioredis.Redis) -> None:
    """`call_many` (one round trip) meets NOSCRIPT for every call, loads once, sends them again."""
    store = RoutingStore(redis)
    await store.load_scripts()
    await store.agent_login(profile("a1", capacity={"chat": 2}), Blending(), ready=True)
    chat = Placement(queue="info", channel="chat")
    ids = [await enqueue(store, chat) for _ in range(3)]
    await redis.script_flush()
    results = await store.reserve_many(
        [(ix, "a1", chat.bucket_id, 60_000) for ix in ids] + [(ids[0], "a1", "nope", 1)]
    )
    deadlines, refusals = results[:2], results[2:]
    assert all(isinstance(d, int) for d in deadlines)
    assert [type(r) for r in refusals] == [StaleError, StaleError]  # full, then a stale pick
    assert all(await redis.script_exists(*store.scripts.shas.values()))
    offers = [f for _, f in await redis.xrange("cl:events") if f["ev"] == "OFFER"]
    assert [f["ix"] for f in offers] == ids[:2]
    assert (await store.agent("a1"))["load:chat"] == "2"


async def test_pipelined_calls_return_errors_without_stopping(redis: aioredis.Redis) -> None:
    scripts = Scripts(redis)
    with_script(scripts, "mixed", "if ARGV[1] == 'ok' then return 1 end\n"
                "if ARGV[1] == 'cl' then return redis.error_reply('CL_BUSY held') end\n"
                "return redis.error_reply('ERR other')")  # fmt: skip
    results = await scripts.call_many("mixed", [([], ["cl"]), ([], ["ok"]), ([], ["err"])])
    assert isinstance(results[0], BusyError) and results[0].detail == "held"
    assert results[1] == 1
    assert isinstance(results[2], ResponseError) and not isinstance(results[2], StoreError)
    assert await scripts.call_many("mixed", []) == []
