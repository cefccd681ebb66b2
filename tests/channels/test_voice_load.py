"""Fifty residents call at once: through the IVR into two queues, to every voice agent who
can take them, talking and hanging up - and every call ends exactly once, with its times."""

from __future__ import annotations

import asyncio

import pytest

from router.models import Channel
from tests.channels.voice_city import LOCAL_TAXES, VoiceCity, city

__all__ = ["city"]

pytestmark = pytest.mark.slow

ROAD_DAMAGE = ("1", "3", "1")  # Polish, interventions, road damage -> voice-interventions
CALLERS = 50


async def test_fifty_simultaneous_callers(city: VoiceCity) -> None:
    cfg = city.cfg
    for q in cfg.queues.values():
        q.wrapup_s = 0  # keep the agents cycling: this is about the call flow, not wrap-up
    phones = []
    for agent_id, agent in cfg.agents.items():
        if agent.endpoint and agent.capacity.get(Channel.voice, 0) > 0:
            phone = agent.endpoint.split("/", 1)[1]
            city.fake.set_agent_behaviour(phone, "answer_after:0.5")
            phones.append(phone)
            await city.service.agent_login(agent_id, ready=True)
    callers = []
    for i in range(CALLERS):
        caller = city.fake.add_caller(kind="pjsip", callerid_num=f"6020000{i:02d}")
        caller.answer_prompts(*(LOCAL_TAXES if i % 2 else ROAD_DAMAGE))
        callers.append(caller)
    await city.wait_event("ENTERQUEUE", CALLERS, within_s=30)

    async def hang_up_when_talking(caller) -> None:  # type: ignore[no-untyped-def]
        await caller.wait_state("talking", within_s=120)
        await asyncio.sleep(0.05)
        caller.hangup()

    await asyncio.gather(*(hang_up_when_talking(c) for c in callers))
    await city.wait_event("COMPLETECALLER", CALLERS, within_s=30)
    events = await city.events()
    per_ix: dict[str, list[str]] = {}
    for e in events:
        if e.ix:
            per_ix.setdefault(e.ix, []).append(e.type)
    assert len(per_ix) == CALLERS
    queues = {e.queue for e in events if e.type == "ENTERQUEUE"}
    assert {"voice-info", "voice-interventions"} <= queues
    for ix, types in per_ix.items():
        assert types.count("CONNECT") == 1 and types.count("COMPLETECALLER") == 1, (ix, types)
        assert "ABANDON" not in types
    talk = [e.talk_ms for e in events if e.type == "COMPLETECALLER"]
    assert all(t is not None and t >= 0 for t in talk)
    assert len({e.agent for e in events if e.type == "CONNECT"}) > 1  # spread over agents
