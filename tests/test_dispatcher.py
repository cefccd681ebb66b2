"""The dispatcher's matching rules and timers, against the real scripts on a real Redis."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from router.config import CitylineConfig
from router.dispatcher import Dispatcher
from router.models import Channel, TransferRequest
from router.service import RoutingService
from tests.routing_fixtures import call, events, offered_to, ready


async def test_longest_idle_agent_gets_the_call(service: RoutingService, dispatcher: Dispatcher):
    await ready(service, "a2", "a1", "a3")
    ix = await call(service)
    assert await dispatcher.match_round() == 1
    assert await offered_to(service, "a2") == [ix]


async def test_required_skill_level_and_language(service: RoutingService, dispatcher: Dispatcher):
    await ready(service, "a2", "a1", "a3")
    taxes = await call(service, topic="taxes")  # a1 (3) and a3 (8) qualify; a2 has no taxes
    english = await call(service, language="en")  # a2 and a3 speak English
    assert await dispatcher.match_round() == 2
    assert await offered_to(service, "a1") == [taxes]
    assert await offered_to(service, "a2") == [english]
    assert await offered_to(service, "a3") == []


async def test_queue_priority_beats_age(service: RoutingService, dispatcher: Dispatcher):
    old = await call(service, "voice")
    vip = await call(service, "voice-vip")
    await ready(service, "a1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [vip]
    assert old


async def test_interaction_priority_then_oldest_first(service: RoutingService,
                                                      dispatcher: Dispatcher):
    first = await call(service)
    urgent = await call(service, priority=3)
    second = await call(service)
    order = []
    await ready(service, "a1")
    for _ in range(3):
        await dispatcher.match_round()
        (ix,) = await offered_to(service, "a1")
        order.append(ix)
        await service.accept("a1", ix)
        await service.complete("a1", ix)
    assert order == [urgent, first, second]


async def test_oldest_first_across_queues_even_beyond_what_was_read(
    service: RoutingService, dispatcher: Dispatcher
):
    """The round first reads one interaction per bucket; the second, older call of the voice
    bucket must still go before the younger chat."""
    first, second = await call(service), await call(service)
    chat = await call(service, "chat", channel=Channel.chat)
    await ready(service, "a1", "a2")
    assert await dispatcher.match_round() == 2
    offered = await offered_to(service, "a1") + await offered_to(service, "a2")
    assert sorted(offered) == sorted([first, second])
    assert (await service.store.interaction(chat))["state"] == "queued"


async def test_chat_capacity_and_voice_blending(service: RoutingService, dispatcher: Dispatcher):
    chats = [await call(service, "chat", channel=Channel.chat) for _ in range(5)]
    await ready(service, "a1")
    assert await dispatcher.match_round() == 3  # chat capacity 3
    assert sorted(await offered_to(service, "a1")) == sorted(chats[:3])
    voice = await call(service)
    assert await dispatcher.match_round() == 0  # no call for an agent with open chats
    await ready(service, "a2")
    # oldest first: a2 takes the two older chats; then the call no longer fits a2 either
    assert await dispatcher.match_round() == 2
    assert sorted(await offered_to(service, "a2")) == sorted(chats[3:])
    assert (await service.store.interaction(voice))["state"] == "queued"


async def test_voice_first_agent_takes_no_chat_while_on_call(service: RoutingService,
                                                             dispatcher: Dispatcher):
    voice = await call(service)
    await ready(service, "a1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [voice]
    await call(service, "chat", channel=Channel.chat)
    assert await dispatcher.match_round() == 0


async def test_best_skilled(service: RoutingService, dispatcher: Dispatcher,
                            cfg: CitylineConfig):
    await ready(service, "a1", "a2", "a3")
    cfg.queues["voice"].strategy = "best_skilled"
    ix = await call(service)
    await dispatcher.match_round()
    assert await offered_to(service, "a3") == [ix]  # general 9 beats 5, though a1 idles longest


async def test_least_occupied_against_longest_idle(service: RoutingService,
                                                   dispatcher: Dispatcher, cfg: CitylineConfig):
    await ready(service, "a1")
    for _ in range(2):
        await call(service, "chat", channel=Channel.chat)
        await dispatcher.match_round()
    assert len(await offered_to(service, "a1")) == 2
    await ready(service, "a2")  # a2 idles for less time than a1, but holds nothing
    cfg.queues["chat"].strategy = "longest_idle"
    probe = await call(service, "chat", channel=Channel.chat)
    await dispatcher.match_round()
    assert probe in await offered_to(service, "a1")  # longest idle ignores load
    await service.reject("a1", probe)
    cfg.queues["chat"].strategy = "least_occupied"
    probe2 = await call(service, "chat", channel=Channel.chat)
    await dispatcher.match_round()
    assert sorted(await offered_to(service, "a2")) == sorted([probe, probe2])


async def test_round_robin_rotates(service: RoutingService, dispatcher: Dispatcher,
                                   cfg: CitylineConfig):
    cfg.queues["chat"].strategy = "round_robin"
    await ready(service, "a3", "a2", "a1")
    got = []
    for _ in range(4):
        ix = await call(service, "chat", channel=Channel.chat)
        await dispatcher.match_round()
        got += [a for a in ("a1", "a2", "a3") if ix in await offered_to(service, a)]
    assert got == ["a1", "a2", "a3", "a1"]


async def test_offer_timeout_ring_no_answer_and_pause(service: RoutingService,
                                                      dispatcher: Dispatcher,
                                                      cfg: CitylineConfig, redis: aioredis.Redis):
    cfg.queues["voice"].offer_timeout_s = 0.02
    first = await call(service)
    later = await call(service)
    await ready(service, "a1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [first]
    await asyncio.sleep(0.05)
    assert await dispatcher.fire_timers() == 1
    rona = await events(redis, "RINGNOANSWER")
    assert [(e.ix, e.reason) for e in rona] == [(first, "timeout")]
    # back at its own place: still ahead of the later call
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [first]
    await asyncio.sleep(0.05)
    await dispatcher.fire_timers()
    agent = await service.agent_view("a1")
    assert (agent["state"], agent["reason"]) == ("not_ready", "rona")  # paused after 2 misses
    assert [e.reason for e in await events(redis, "PAUSE")] == ["rona"]
    assert await dispatcher.match_round() == 0
    assert later


async def test_escalation_lowers_level_then_moves_queue_keeping_position(
    service: RoutingService, dispatcher: Dispatcher, redis: aioredis.Redis
):
    await ready(service, "a1")
    await service.agent_state("a1", "not_ready", "break")
    ix = await call(service, "voice-esc")  # needs general 8: nobody
    enq = int((await service.store.interaction(ix))["enqueued_ms"])
    await asyncio.sleep(0.25)
    assert await dispatcher.fire_timers() == 1
    stored = await service.store.interaction(ix)
    assert stored["skills"] == '{"general":2}' and stored["esc_step"] == "1"
    await asyncio.sleep(0.2)
    await dispatcher.fire_timers()
    assert (await service.store.interaction(ix))["priority"] == "5"
    await asyncio.sleep(0.25)
    await dispatcher.fire_timers()
    moved = await service.store.interaction(ix)
    assert (moved["queue"], moved["esc_step"], int(moved["enqueued_ms"])) == ("voice", "0", enq)
    esc = await events(redis, "ESCALATE")
    assert [e.step for e in esc] == ["0", "1", "2"]
    entries = await events(redis, "ENTERQUEUE")
    assert [(e.queue, e.first) for e in entries] == [("voice-esc", "1"), ("voice", "0")]
    await service.agent_state("a1", "ready")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [ix]


async def test_max_wait_overflows_keeping_position(service: RoutingService,
                                                   dispatcher: Dispatcher, redis: aioredis.Redis):
    newer_in_overflow = None
    ix = await call(service, "voice-short")
    await asyncio.sleep(0.01)
    newer_in_overflow = await call(service, "voice")
    await asyncio.sleep(0.35)
    assert await dispatcher.fire_timers() == 1
    (exit_ev,) = await events(redis, "EXITWITHTIMEOUT")
    assert (exit_ev.ix, exit_ev.overflow) == (ix, "voice")
    await ready(service, "a1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [ix]  # ahead of the newer call in `voice`
    assert newer_in_overflow


async def test_wrapup_timer_frees_the_slot(service: RoutingService, dispatcher: Dispatcher,
                                           cfg: CitylineConfig, redis: aioredis.Redis):
    cfg.queues["chat"].wrapup_s = 0.05
    cfg.agents["a1"].capacity[Channel.chat] = 1
    await service.sync_agent_profiles()
    c1 = await call(service, "chat", channel=Channel.chat)
    c2 = await call(service, "chat", channel=Channel.chat)
    await ready(service, "a1")
    await dispatcher.match_round()
    await service.accept("a1", c1)
    assert await service.complete("a1", c1) == "wrapup"
    assert await dispatcher.match_round() == 0  # slot held during wrap-up
    await asyncio.sleep(0.08)
    await dispatcher.fire_timers()
    (end,) = await events(redis, "WRAPUPEND")
    assert (end.ix, end.by) == (c1, "timer")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [c2]


async def test_abandon_during_offer_frees_agent_for_next(service: RoutingService,
                                                         dispatcher: Dispatcher,
                                                         redis: aioredis.Redis):
    first = await call(service)
    second = await call(service)
    await ready(service, "a1")
    await dispatcher.match_round()
    left = await service.resident_left(first)
    (ab,) = await events(redis, "ABANDON")
    assert (ab.during, ab.wait_ms, ab.short) == ("offered", left.wait_ms, "1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == [second]


async def test_transfer_to_named_second_line_agent(service: RoutingService,
                                                   dispatcher: Dispatcher):
    ix = await call(service)
    await ready(service, "a1", "x1")
    await service.agent_state("x1", "not_ready", "break")
    await dispatcher.match_round()
    await service.accept("a1", ix)
    await service.transfer(ix, TransferRequest(agent="x1", note="road damage expert"),
                           by_agent="a1")
    await dispatcher.match_round()
    assert await offered_to(service, "a1") == []  # only x1 may take it, and x1 is on a break
    await service.agent_state("x1", "ready")
    await dispatcher.match_round()
    assert await offered_to(service, "x1") == [ix]
    assert (await service.store.interaction(ix))["transfer_note"] == "road damage expert"


async def test_run_loop_offers_without_polling(service: RoutingService, dispatcher: Dispatcher):
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await ready(service, "a1")
        await asyncio.sleep(0.05)
        rounds_before = dispatcher.counters.rounds
        await asyncio.sleep(0.5)
        # idle: no busy loop (at most a few timer wake-ups of timer_max_sleep_ms = 200 ms)
        assert dispatcher.counters.rounds - rounds_before <= 4
        ix = await call(service)
        for _ in range(100):
            if await offered_to(service, "a1"):
                break
            await asyncio.sleep(0.01)
        assert await offered_to(service, "a1") == [ix]
    finally:
        stop.set()
        await asyncio.wait_for(task, 2)


async def test_standby_dispatcher_takes_over_when_the_planner_stops(
    service: RoutingService, cfg: CitylineConfig
):
    cfg.routing.dispatch_lease_ms = 100
    planner, standby = Dispatcher(service.store, cfg, "one"), Dispatcher(service.store, cfg, "two")
    await ready(service, "a1", "a2")
    await call(service)
    assert await planner.match_round() == 1
    await call(service)
    assert await standby.match_round() == 0  # the planner holds the lease: no double work
    assert standby.counters.standby == 1
    await asyncio.sleep(0.15)  # the planner stopped renewing (died, say)
    assert await standby.match_round() == 1


async def _offered_within(service: RoutingService, agent: str, ix: str, seconds: float) -> bool:
    for _ in range(int(seconds / 0.01)):
        if ix in await offered_to(service, agent):
            return True
        await asyncio.sleep(0.01)
    return False


async def test_running_dispatchers_one_plans_and_a_standby_takes_over(
    service: RoutingService, cfg: CitylineConfig
):
    cfg.routing.dispatch_lease_ms = 200
    first, second = Dispatcher(service.store, cfg, "a"), Dispatcher(service.store, cfg, "b")
    stops = {first: asyncio.Event(), second: asyncio.Event()}
    tasks = {d: asyncio.create_task(d.run(stops[d])) for d in (first, second)}
    try:
        await ready(service, "a1")
        ix = await call(service)
        assert await _offered_within(service, "a1", ix, 1.0)
        await asyncio.sleep(0.05)
        assert first.counters.offers + second.counters.offers == 1  # planned once
        await service.accept("a1", ix)
        await service.complete("a1", ix)
        planner = first if first.counters.offers else second
        stops[planner].set()  # the planner goes away
        await asyncio.wait_for(tasks[planner], 2)
        nxt = await call(service)
        assert await _offered_within(service, "a1", nxt, 1.5)  # the standby took over
    finally:
        for d, task in tasks.items():
            stops[d].set()
            await asyncio.wait_for(task, 2)
