"""Agents and queues changed at run time (router/directory.py) on the real Redis: validated like
the YAML file, applied at once in the process that made the change and within a poll in every
other one, routed by without a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from queues.store import RoutingStore
from router.config import AgentConfig, CitylineConfig, QueueConfig, load_config
from router.directory import Directory, DirectoryInvalid, DirectoryWatcher, InUse
from router.dispatcher import Dispatcher
from router.errors import Conflict, NotFound
from router.models import EventType
from router.service import RoutingService
from tests.routing_fixtures import CONFIG, call, events, eventually, offered_to, ready


def directory(service: RoutingService, poll_s: float = 0.05) -> Directory:
    store = service.store
    return Directory(store.redis, store.keys, service.cfg, scripts=store.scripts,
                     events_maxlen=store.events_maxlen, service=service)  # fmt: skip


def with_skills(cfg: CitylineConfig, agent_id: str, **skills: int) -> AgentConfig:
    data = cfg.agents[agent_id].model_dump(mode="json")
    data["skills"] = {**data["skills"], **skills}
    return AgentConfig.model_validate(data)


async def test_new_skill_routes_without_restart(
    service: RoutingService, dispatcher: Dispatcher, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    d = directory(service)
    await d.refresh(force=True)
    await ready(service, "a1")
    ix = await call(service, "voice", topic="roads")  # needs roads: only x1 has it (offline)
    assert await dispatcher.match_round() == 0
    version = await d.set_agent("a1", with_skills(cfg, "a1", roads=4), by="admin")
    assert version == 1 and d.version == 1
    assert cfg.agents["a1"].skills["roads"] == 4  # the shared config object, in place
    assert json.loads((await redis.hgetall("cl:agent:a1"))["skills"])["roads"] == 4
    assert await dispatcher.match_round() == 1  # the CONFIG event marked a1 for a re-read
    assert await offered_to(service, "a1") == [ix]
    [ev] = await events(redis, EventType.CONFIG)
    assert (ev.agent, ev.model_extra) == (
        "a1", {"kind": "agent", "action": "set", "name": "a1", "version": "1", "by": "admin"}
    )


async def test_capacity_and_line_apply_to_a_signed_in_agent(
    service: RoutingService, dispatcher: Dispatcher, cfg: CitylineConfig
) -> None:
    d = directory(service)
    await ready(service, "a2")
    chats = [await call(service, "chat", channel="chat") for _ in range(3)]
    assert await dispatcher.match_round() == 3  # default chat capacity 3
    data = cfg.agents["a2"].model_dump(mode="json")
    await d.set_agent("a2", AgentConfig.model_validate(
        {**data, "capacity": {"chat": 4}, "line": "second"}))  # fmt: skip
    assert cfg.agents["a2"].line == "second" and cfg.agents["a2"].capacity["chat"] == 4
    fourth = await call(service, "chat", channel="chat")
    assert await dispatcher.match_round() == 1
    assert set(await offered_to(service, "a2")) == {*chats, fourth}


async def test_invalid_change_is_refused_and_nothing_written(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    d = directory(service)
    before = cfg.agents["a1"]
    with pytest.raises(DirectoryInvalid) as caught:
        await d.set_agent("a1", with_skills(cfg, "a1", cooking=3))
    assert caught.value.problems == [
        (("skills", "cooking"), "unknown skill 'cooking' (not in the skills catalogue)")
    ]
    bad_queue = cfg.queues["voice"].model_dump(mode="json") | {"overflow": "chat",
                                                                "max_wait_s": 30}
    with pytest.raises(DirectoryInvalid) as caught:
        await d.set_queue("voice", QueueConfig.model_validate(bad_queue))
    assert caught.value.problems[0][0] == ("overflow",)
    assert "same channel" in caught.value.problems[0][1]
    clash = AgentConfig(name="New", endpoint="PJSIP/1")
    await d.set_agent("n1", clash)
    with pytest.raises(DirectoryInvalid) as caught:
        await d.set_agent("n2", clash)
    assert caught.value.problems == [
        (("endpoint",), "endpoint PJSIP/1 is already used by agent 'n1'")
    ]
    assert cfg.agents["a1"] is before
    assert await redis.get("cl:dir:version") == "1"  # only n1 was written
    assert [e.agent for e in await events(redis, EventType.CONFIG)] == ["n1"]


async def test_removing_an_agent(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    d = directory(service)
    await service.agent_login("a3", ready=True)
    with pytest.raises(Conflict) as caught:
        await d.remove_agent("a3")
    assert caught.value.code == "busy"
    assert "a3" in cfg.agents
    await service.agent_state("a3", "offline")
    await d.remove_agent("a3", by="admin")
    assert "a3" not in cfg.agents
    assert not await redis.exists("cl:agent:a3")
    assert not await redis.sismember("cl:agents", "a3")
    with pytest.raises(NotFound):
        await service.agent_login("a3", ready=True)
    with pytest.raises(NotFound):
        await d.remove_agent("a3")
    # the file's agent comes back when set again
    await d.set_agent("a3", AgentConfig(name="Celina again", skills={"general": 2}))
    assert d.origin("agent", "a3") == "changed" and cfg.agents["a3"].name == "Celina again"


async def test_an_agent_a_user_works_as_is_kept(
    service: RoutingService, redis: aioredis.Redis
) -> None:
    from router import users

    d = directory(service)
    await users.add_user(redis, Keys(), "bartek", "agent", agent_id="a2")
    with pytest.raises(InUse, match="bartek"):
        await d.remove_agent("a2")
    with pytest.raises(InUse, match=r"users\.anna\.agent"):  # declared in the file
        await d.remove_agent("a1")


async def test_removing_queues(service: RoutingService, cfg: CitylineConfig) -> None:
    d = directory(service)
    with pytest.raises(InUse, match=r"voice-short\.overflow"):
        await d.remove_queue("voice")
    ix = await call(service, "voice-vip")
    with pytest.raises(InUse, match="1 interaction"):
        await d.remove_queue("voice-vip")
    await service.resident_left(ix)
    await d.remove_queue("voice-vip")
    assert "voice-vip" not in cfg.queues
    sl = cfg.queues["chat"].model_dump(mode="json")
    await d.set_queue("chat", QueueConfig.model_validate(
        {**sl, "service_level": {"target_pct": 95, "threshold_s": 20}}))  # fmt: skip
    assert cfg.queues["chat"].service_level.target_pct == 95
    assert d.origin("queue", "chat") == "changed" and d.origin("queue", "voice") == "file"


async def test_another_process_applies_the_change(
    redis: aioredis.Redis, store: RoutingStore, cfg: CitylineConfig
) -> None:
    """Two processes: each its own config object, store and service, one Redis."""
    other_cfg = load_config(CONFIG, env={})
    other_store = RoutingStore(redis)
    await other_store.load_scripts()
    other = RoutingService(other_store, other_cfg)
    here = directory(RoutingService(store, cfg))
    there = directory(other)
    await there.refresh(force=True)
    stop = asyncio.Event()
    watcher = asyncio.create_task(DirectoryWatcher(there, poll_s=0.05).run(stop))
    try:
        await here.set_agent("a1", with_skills(cfg, "a1", roads=6))
        await here.set_queue("chat", QueueConfig.model_validate(
            cfg.queues["chat"].model_dump(mode="json") | {"offer_timeout_s": 45}))  # fmt: skip
        await eventually(lambda: other_cfg.agents["a1"].skills.get("roads") == 6)
        await eventually(lambda: other_cfg.queues["chat"].offer_timeout_s == 45)
        assert there.version == 2
        # and the other process's dispatcher routes by it
        other_dispatcher = Dispatcher(other_store, other_cfg)
        await other.agent_login("a1", ready=True)
        ix = await call(other, "voice", topic="roads")
        assert await other_dispatcher.match_round() == 1
        assert await offered_to(other, "a1") == [ix]
    finally:
        stop.set()
        await watcher


async def test_a_stored_change_the_file_no_longer_allows_is_skipped(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    good = {"name": "Added", "skills": {"general": 4}}
    bad = {"name": "Anna", "skills": {"general": 5, "gone_skill": 3}}  # the file dropped it
    await redis.hset("cl:dir:agents", mapping={"n1": json.dumps(good), "a1": json.dumps(bad)})
    await redis.set("cl:dir:version", 7)
    d = directory(service)
    assert await d.refresh()
    assert cfg.agents["n1"].name == "Added"
    assert "gone_skill" not in cfg.agents["a1"].skills  # the file's a1
    assert d.version == 7
    assert not await d.refresh()  # nothing new


# --- what else names a queue: IVR flows, channels -----------------------------------------------

# A flow of the voice channel: step `vip` routes callers to voice-vip, `general` to voice.
FLOW = """\
name: hall
languages: [pl]
entry: main
nodes:
  main:
    kind: menu
    prompt: {pl: t/main}
    options: {"1": vip, "2": general}
    fallback: general
  vip:
    kind: route
    queue: voice-vip
  general:
    kind: route
    queue: voice
"""
VIP_STEP = ("channels", "voice", "flows", "hall", "nodes", "vip", "queue")


def with_flows(cfg: CitylineConfig, directory: Path) -> Path:
    """Turn the voice channel on with `directory` holding FLOW (hall.yaml) as its IVR flows."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hall.yaml").write_text(FLOW, encoding="utf-8")
    cfg.channels.voice.enabled = True
    cfg.channels.voice.flows_dir = directory
    cfg.channels.voice.flow = "hall"
    return directory


async def unchanged(redis: aioredis.Redis) -> tuple[Any, ...]:
    """Everything a directory change writes: the overlay, its version, the event stream."""
    return (
        await redis.hgetall("cl:dir:agents"), await redis.hgetall("cl:dir:queues"),
        await redis.smembers("cl:dir:agents:removed"),
        await redis.smembers("cl:dir:queues:removed"),
        await redis.get("cl:dir:version"), await redis.xlen("cl:events"),
    )  # fmt: skip


async def test_a_queue_an_ivr_flow_routes_to_is_kept(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis, tmp_path: Path
) -> None:
    with_flows(cfg, tmp_path / "flows")
    d = directory(service)
    before = await unchanged(redis)
    with pytest.raises(InUse) as caught:
        await d.remove_queue("voice-vip", by="admin")
    assert caught.value.problems == [(VIP_STEP, (
        "IVR flow 'hall', step 'vip' (hall.yaml:12), sends callers to queue 'voice-vip': "
        "unknown queue 'voice-vip' (voice queues: voice, voice-esc, voice-short)"
    ))]  # fmt: skip
    assert "IVR flow 'hall', step 'vip'" in caught.value.message
    # nor may it stop taking calls
    as_chat = cfg.queues["voice-vip"].model_dump(mode="json") | {"channel": "chat"}
    with pytest.raises(DirectoryInvalid) as invalid:
        await d.set_queue("voice-vip", QueueConfig.model_validate(as_chat))
    [(loc, msg)] = invalid.value.problems
    assert loc == VIP_STEP and "queue 'voice-vip' serves chat, not voice" in msg
    assert "voice-vip" in cfg.queues and cfg.queues["voice-vip"].channel == "voice"
    assert await unchanged(redis) == before
    # another voice queue nothing routes to goes, and a change keeping the channel is fine
    await d.remove_queue("voice-esc")
    vip = cfg.queues["voice-vip"].model_dump(mode="json") | {"priority": 20}
    await d.set_queue("voice-vip", QueueConfig.model_validate(vip))
    assert cfg.queues["voice-vip"].priority == 20


async def test_flows_of_a_voice_channel_that_is_off_do_not_hold_queues(
    service: RoutingService, cfg: CitylineConfig, tmp_path: Path
) -> None:
    with_flows(cfg, tmp_path / "flows")
    cfg.channels.voice.enabled = False  # nothing runs the flows: no caller can be sent there
    d = directory(service)
    assert d.flows == []
    await d.remove_queue("voice-vip")
    assert "voice-vip" not in cfg.queues


async def test_a_queue_a_channel_hands_contacts_to_is_kept(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    assert cfg.channels.chat.enabled and cfg.channels.chat.queue == "chat"
    d = directory(service)
    with pytest.raises(InUse) as caught:
        await d.remove_queue("chat")
    assert caught.value.problems == [
        (("channels", "chat", "queue"), "the chat channel hands its contacts to queue 'chat'")
    ]
    assert "chat" in cfg.queues
    assert await redis.xlen("cl:events") == 0 and not await redis.exists("cl:dir:version")


async def test_an_overlay_that_breaks_a_flow_is_skipped_alone(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis, tmp_path: Path
) -> None:
    """Written before the flow named the queue (or by hand): only that entry is left out."""
    with_flows(cfg, tmp_path / "flows")
    await redis.hset("cl:dir:agents", "n1", json.dumps({"name": "Added", "skills": {"general": 4}}))
    await redis.sadd("cl:dir:queues:removed", "voice-vip")
    await redis.set("cl:dir:version", 3)
    d = directory(service)
    assert await d.refresh()
    assert "voice-vip" in cfg.queues and cfg.agents["n1"].name == "Added"


# --- reset to the file's definition ---------------------------------------------------------------


async def test_reset_applies_in_another_process(
    redis: aioredis.Redis, store: RoutingStore, cfg: CitylineConfig
) -> None:
    """Two processes: each its own config object, store and service, one Redis."""
    file_a1 = cfg.agents["a1"]
    other_cfg = load_config(CONFIG, env={})
    other_store = RoutingStore(redis)
    await other_store.load_scripts()
    here = directory(RoutingService(store, cfg))
    there = directory(RoutingService(other_store, other_cfg))
    await there.refresh(force=True)
    stop = asyncio.Event()
    watcher = asyncio.create_task(DirectoryWatcher(there, poll_s=0.05).run(stop))
    try:
        await here.set_agent("a1", with_skills(cfg, "a1", roads=6))
        await here.set_agent("n1", AgentConfig(name="Nowy", skills={"general": 2}))
        await here.set_queue("chat", QueueConfig.model_validate(
            cfg.queues["chat"].model_dump(mode="json") | {"offer_timeout_s": 45}))  # fmt: skip
        await here.remove_queue("voice-esc")
        await eventually(lambda: there.version == 4)
        assert other_cfg.agents["a1"].skills["roads"] == 6 and "voice-esc" not in other_cfg.queues
        assert here.removed("queue") == ["voice-esc"]

        done = await here.reset_agent("a1", by="admin")
        assert (done.result, done.version) == ("restored", 5)
        assert cfg.agents["a1"] == file_a1 and here.origin("agent", "a1") == "file"
        await eventually(lambda: "roads" not in other_cfg.agents["a1"].skills)
        assert (await here.reset_queue("voice-esc")).result == "restored"
        assert (await here.reset_queue("chat")).result == "restored"
        await eventually(lambda: "voice-esc" in other_cfg.queues
                         and other_cfg.queues["chat"].offer_timeout_s == 30)  # fmt: skip
        assert here.removed("queue") == []
        # an agent only admins added: a reset removes it (and says so)
        done = await here.reset_agent("n1")
        assert done.result == "removed" and "n1" not in cfg.agents
        await eventually(lambda: "n1" not in other_cfg.agents)
        assert there.version == 8
        assert not await redis.exists("cl:dir:agents", "cl:dir:queues", "cl:dir:queues:removed")
        resets = [e.model_extra for e in await events(redis, EventType.CONFIG)][4:]
        assert [(e["name"], e["action"]) for e in resets] == [
            ("a1", "reset"), ("voice-esc", "reset"), ("chat", "reset"), ("n1", "reset")
        ]
    finally:
        stop.set()
        await watcher


async def test_reset_refusals_change_nothing(
    service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    d = directory(service)
    with pytest.raises(Conflict) as caught:
        await d.reset_agent("a2")  # as the file has it
    assert caught.value.code == "not_changed"
    with pytest.raises(NotFound):
        await d.reset_queue("nowhere")
    # the file's voice-short overflows to voice: with voice gone it cannot come back
    for name in ("voice-short", "voice-esc"):
        data = cfg.queues[name].model_dump(mode="json") | {"overflow": None, "max_wait_s": None,
                                                          "escalation": []}
        await d.set_queue(name, QueueConfig.model_validate(data))
    await d.remove_queue("voice")
    # an added agent who is signed in cannot be removed by a reset either
    await d.set_agent("n1", AgentConfig(name="Nowy", skills={"general": 2}))
    await service.agent_login("n1", ready=True)
    before = await unchanged(redis)
    with pytest.raises(DirectoryInvalid) as invalid:
        await d.reset_queue("voice-short")
    assert invalid.value.problems[0][0] == ("overflow",)
    with pytest.raises(Conflict) as busy:
        await d.reset_agent("n1")
    assert busy.value.code == "busy"
    assert await unchanged(redis) == before
    assert cfg.queues["voice-short"].overflow is None and "n1" in cfg.agents
