"""Statistics against a real Redis: events written as docs/events.md defines them, folded, read.

Every counter and derived figure is checked against numbers worked out by hand in the comments.
Times are city-local (Europe/Warsaw) on 2026-03-10 unless a test needs another day.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from queues.stats_store import HashUpdate, StatsStore
from router.config import CitylineConfig
from router.erlang import agents_needed_erlang_a, agents_needed_erlang_c
from router.stats import (
    INTERVAL_MS,
    AgentFigures,
    QueueFigures,
    StatsAggregator,
    hist_field,
    patience_estimate_s,
)
from tests.stats_events import (
    Events,
    abandon,
    addmember,
    complete,
    connect,
    deflected,
    enterqueue,
    exitwithtimeout,
    local_ms,
    message,
    offer,
    pause,
    removemember,
    ringnoanswer,
    transfer,
    unpause,
    wrapupend,
)

DAY = date(2026, 3, 10)
T0 = local_ms("2026-03-10T10:00:00")
S = 1000  # ms per second


def make_config(**stats: int) -> CitylineConfig:
    return CitylineConfig.model_validate(
        {
            "city": {"timezone": "Europe/Warsaw", "languages": ["pl"], "default_language": "pl"},
            "skills": {
                "general": {"kind": "general", "labels": {"pl": "Ogólne"}},
                "taxes": {"kind": "information", "labels": {"pl": "Podatki"}},
            },
            "queues": {
                "info": {
                    "channel": "voice",
                    "skills": {"general": 3},
                    "service_level": {"target_pct": 80, "threshold_s": 20},
                },
                "second": {
                    "channel": "voice",
                    "skills": {"taxes": 7},
                    "service_level": {"target_pct": 80, "threshold_s": 30},
                },
                "mail": {
                    "channel": "email",
                    "skills": {"general": 1},
                    "service_level": {"target_pct": 80, "threshold_s": 3600},
                },
            },
            "agents": {
                "anna": {"name": "Anna Nowak", "skills": {"general": 5}},
                "bob": {"name": "Bob Kowalski", "skills": {"general": 5, "taxes": 8}},
            },
            "stats": {"retention_days": 30, **stats},
        }
    )


@pytest.fixture
def cfg() -> CitylineConfig:
    return make_config()


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def events(redis: aioredis.Redis) -> Events:
    return Events(redis)


@pytest.fixture
def agg(redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig) -> StatsAggregator:
    return StatsAggregator(redis, keys, cfg)


async def fold_all(agg: StatsAggregator) -> int:
    total = 0
    while n := await agg.fold_once():
        total += n
    return total


async def counters(redis: aioredis.Redis, keys: Keys, t_ms: int, scope: str) -> dict[str, int]:
    iv = t_ms - t_ms % INTERVAL_MS
    return {k: int(v) for k, v in (await redis.hgetall(keys.stats_interval(iv, scope))).items()}


# --- one queue, every counter ------------------------------------------------------------------


async def test_queue_counters_and_derived_figures(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    t = T0
    await events.add_all(
        # ix1: offered to bob who does not answer (RONA), then anna answers after 10 s (within
        # the 20 s threshold), talks 120 s, wraps up 30 s
        enterqueue(t, "ix1", "info"),
        offer(t + 1 * S, "ix1", "info", "bob", 1 * S),
        ringnoanswer(t + 5 * S, "ix1", "info", "bob", 4 * S, "timeout"),
        offer(t + 6 * S, "ix1", "info", "anna", 6 * S),
        connect(t + 10 * S, "ix1", "info", "anna", 10 * S, ring_ms=4 * S),
        complete(t + 130 * S, "ix1", "info", "anna", 10 * S, 120 * S),
        wrapupend(t + 160 * S, "ix1", "info", "anna", 30 * S),
        # ix2: answered by bob after 25 s (late), 60 s talk, 10 s wrap-up, agent hangs up
        enterqueue(t + 200 * S, "ix2", "info", pos=1),
        offer(t + 224 * S, "ix2", "info", "bob", 24 * S),
        connect(t + 225 * S, "ix2", "info", "bob", 25 * S),
        complete(t + 285 * S, "ix2", "info", "bob", 25 * S, 60 * S, side="agent"),
        wrapupend(t + 295 * S, "ix2", "info", "bob", 10 * S, by="agent"),
        # ix3: short abandon (3 s); ix4: abandons after the threshold (30 s);
        # ix5: abandons at 12 s, not short and before the threshold; ix6: max wait, no overflow
        enterqueue(t + 300 * S, "ix3", "info", pos=1),
        abandon(t + 303 * S, "ix3", "info", 3 * S),
        enterqueue(t + 310 * S, "ix4", "info", pos=1),
        abandon(t + 340 * S, "ix4", "info", 30 * S),
        enterqueue(t + 350 * S, "ix5", "info", pos=1),
        abandon(t + 362 * S, "ix5", "info", 12 * S),
        enterqueue(t + 100 * S, "ix6", "info", pos=2),
        exitwithtimeout(t + 700 * S, "ix6", "info", 600 * S),
    )
    assert await fold_all(agg) == 20
    q = await counters(redis, keys, t, "q:info")
    assert q == {
        "offered": 6,
        "offers": 3,
        "rona": 1,
        "rona_timeout": 1,
        "answered": 2,
        "answered_within_sl": 1,
        "wait_sum_answered_ms": 35 * S,
        hist_field("ans", 10 * S): 1,  # h_ans_le_10
        hist_field("ans", 25 * S): 1,  # h_ans_le_30
        "handled": 2,
        "completed_by_caller": 1,
        "completed_by_agent": 1,
        "talk_sum_ms": 180 * S,
        "first_contact_resolved": 2,
        "wrapups": 2,
        "wrapup_sum_ms": 40 * S,
        "abandoned": 3,
        "short_abandoned": 1,
        "abandoned_after_sl": 1,
        "wait_sum_abandoned_ms": 45 * S,
        "h_ab_le_5": 1,
        "h_ab_le_15": 1,
        "h_ab_le_30": 1,
        "timeouts": 1,
        "wait_sum_timeout_ms": 600 * S,
    }
    assert hist_field("ans", 10 * S) == "h_ans_le_10"
    assert hist_field("ans", 25 * S) == "h_ans_le_30"
    f = QueueFigures.from_counters(q)
    # SL = answered within 20 s / (answered + abandoned after 20 s) = 1 / (2 + 1)
    assert f.service_level == pytest.approx(1 / 3)
    # abandonment = (abandoned - short) / (offered - short) = (3 - 1) / (6 - 1)
    assert f.abandonment_rate == pytest.approx(2 / 5)
    assert f.asa_s == pytest.approx(17.5)  # (10 + 25) / 2
    assert f.aht_s == pytest.approx(110.0)  # (120 + 60 + 30 + 10) / 2
    assert f.avg_talk_s == pytest.approx(90.0)
    assert f.avg_wrapup_s == pytest.approx(20.0)
    assert f.avg_abandon_wait_s == pytest.approx(15.0)
    assert f.transfer_rate == 0.0
    assert f.fcr_rate == 1.0
    assert (f.rona, f.timeouts, f.short_abandoned) == (1, 1, 1)

    # the channel and the whole centre see the same contacts here (all first entries)
    c = await counters(redis, keys, t, "c:voice")
    assert c == await counters(redis, keys, t, "all")
    assert {k: c[k] for k in ("offered", "answered", "abandoned", "handled", "timeouts")} == {
        "offered": 6,
        "answered": 2,
        "abandoned": 3,
        "handled": 2,
        "timeouts": 1,
    }
    assert QueueFigures.from_counters(c).service_level == pytest.approx(1 / 3)
    assert "offers" not in c  # offers are a queue and agent matter

    anna = await counters(redis, keys, t, "a:anna")
    assert anna == {
        "offers": 1,
        "answered": 1,
        "handled": 1,
        "completed_by_caller": 1,
        "talk_sum_ms": 120 * S,
        "first_contact_resolved": 1,
        "wrapups": 1,
        "wrapup_sum_ms": 30 * S,
    }
    bob = await counters(redis, keys, t, "a:bob")
    assert (bob["offers"], bob["rona"], bob["rona_timeout"], bob["answered"]) == (2, 1, 1, 1)
    assert AgentFigures.from_counters(bob).aht_s == pytest.approx(70.0)

    # every hash written is listed in the day index, with the retention as TTL
    index = await redis.smembers(keys.stats_day_index("2026-03-10"))
    assert keys.stats_interval(t - t % INTERVAL_MS, "q:info") in index
    ttl = await redis.ttl(keys.stats_interval(t - t % INTERVAL_MS, "q:info"))
    assert 30 * 86400 - 5 < ttl <= 30 * 86400
    assert 30 * 86400 - 5 < await redis.ttl(keys.stats_day_index("2026-03-10")) <= 30 * 86400
    # ended interactions leave no aggregator state behind
    assert not await redis.keys("cl:st:ix:*")


async def test_figures_are_none_without_data() -> None:
    f = QueueFigures.from_counters({})
    for name in (
        "service_level",
        "abandonment_rate",
        "asa_s",
        "aht_s",
        "avg_talk_s",
        "avg_wrapup_s",
        "avg_abandon_wait_s",
        "transfer_rate",
        "fcr_rate",
    ):
        assert getattr(f, name) is None, name
    a = AgentFigures.from_counters({})
    assert a.aht_s is None and a.occupancy is None
    # offered but nothing answered or abandoned yet: a rate of 0, but no SL and no ASA
    f = QueueFigures.from_counters({"offered": 1})
    assert f.abandonment_rate == 0.0
    assert f.service_level is None and f.asa_s is None
    # only a short abandon: it leaves both rates without a denominator
    f = QueueFigures.from_counters({"offered": 1, "abandoned": 1, "short_abandoned": 1})
    assert f.abandonment_rate is None and f.service_level is None


async def test_short_abandons_are_left_out_of_both_rates(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    t = T0
    await events.add_all(
        enterqueue(t, "a", "info"),
        abandon(t + 4999, "a", "info", 4999),  # short: wait < 5 s
        enterqueue(t + 10 * S, "b", "info"),
        abandon(t + 15 * S, "b", "info", 5 * S),  # exactly 5 s: not short, before T
        enterqueue(t + 20 * S, "c", "info"),
        connect(t + 25 * S, "c", "info", "anna", 5 * S),
        enterqueue(t + 30 * S, "d", "info"),
        abandon(t + 51 * S, "d", "info", 21 * S),  # after the 20 s threshold
    )
    await fold_all(agg)
    f = QueueFigures.from_counters(await counters(redis, keys, t, "q:info"))
    assert (f.offered, f.abandoned, f.short_abandoned, f.abandoned_after_sl) == (4, 3, 1, 1)
    assert f.abandonment_rate == pytest.approx(2 / 3)  # (3 - 1) / (4 - 1)
    assert f.service_level == pytest.approx(1 / 2)  # 1 within / (1 answered + 1 after T)


async def test_service_level_threshold_is_inclusive(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    t = T0
    await events.add_all(
        enterqueue(t, "a", "info"),
        connect(t + 20 * S, "a", "info", "anna", 20 * S),  # exactly T: within
        enterqueue(t + 30 * S, "b", "info"),
        connect(t + 50 * S + 1, "b", "info", "bob", 20 * S + 1),  # 1 ms late
        enterqueue(t + 60 * S, "c", "info"),
        abandon(t + 80 * S, "c", "info", 20 * S),  # at T: not "after T"
    )
    await fold_all(agg)
    f = QueueFigures.from_counters(await counters(redis, keys, t, "q:info"))
    assert (f.answered_within_sl, f.abandoned_after_sl) == (1, 0)
    assert f.service_level == pytest.approx(1 / 2)


# --- intervals ---------------------------------------------------------------------------------


async def test_interval_boundaries_at_15_minutes(
    redis: aioredis.Redis,
    keys: Keys,
    events: Events,
    agg: StatsAggregator,
    cfg: CitylineConfig,
) -> None:
    edge = local_ms("2026-03-10T10:15:00")
    await events.add_all(
        enterqueue(edge - 1, "a", "info"),  # 10:14:59.999 -> the 10:00 interval
        enterqueue(edge, "b", "info"),  # 10:15:00.000 -> the 10:15 interval
        addmember(local_ms("2026-03-10T10:05:00"), "anna"),
        # paused from 10:10 to 10:20: five minutes in each interval
        pause(local_ms("2026-03-10T10:10:00"), "anna", "lunch", 5 * 60 * S),
        unpause(local_ms("2026-03-10T10:20:00"), "anna", 10 * 60 * S),
    )
    await fold_all(agg)
    assert (await counters(redis, keys, edge - 1, "q:info"))["offered"] == 1
    assert (await counters(redis, keys, edge, "q:info"))["offered"] == 1
    first = await counters(redis, keys, edge - 1, "a:anna")
    second = await counters(redis, keys, edge, "a:anna")
    assert first == {
        "logins": 1,
        "ready_ms": 5 * 60 * S,
        "paused_ms": 5 * 60 * S,
        "paused_ms:lunch": 5 * 60 * S,
    }
    assert second == {"paused_ms": 5 * 60 * S, "paused_ms:lunch": 5 * 60 * S}

    rows = await agg.interval_report(cfg, DAY)
    queues = [r for r in rows if r.kind == "queue" and r.name == "info"]
    assert len(queues) == 96  # every interval of the day, empty ones too
    assert [r.start[11:16] for r in queues[:2]] == ["00:00", "00:15"]
    by_start = {r.start[11:16]: r for r in queues}
    assert by_start["10:00"].figures.offered == 1
    assert by_start["10:15"].figures.offered == 1
    assert by_start["10:30"].figures.offered == 0
    assert by_start["10:30"].figures.service_level is None
    assert by_start["10:00"].interval_start_ms == local_ms("2026-03-10T10:00:00")
    kinds = {(r.kind, r.name) for r in rows}
    assert kinds == {
        ("queue", "info"),
        ("queue", "second"),
        ("queue", "mail"),
        ("channel", "voice"),
        ("channel", "email"),
        ("all", "all"),
    }


async def test_interval_report_follows_the_city_day_across_dst(
    events: Events, agg: StatsAggregator, cfg: CitylineConfig
) -> None:
    # 2026-03-29: Warsaw moves from +01:00 to +02:00 at 02:00; the day has 23 hours
    late = local_ms("2026-03-29T23:50:00")
    await events.add_all(
        enterqueue(local_ms("2026-03-29T00:05:00"), "a", "info"),
        enterqueue(late, "b", "info"),
        enterqueue(local_ms("2026-03-30T00:05:00"), "c", "info"),  # next day
    )
    await fold_all(agg)
    rows = [r for r in await agg.interval_report(cfg, date(2026, 3, 29)) if r.kind == "all"]
    assert len(rows) == 92
    assert rows[0].start == "2026-03-29T00:00:00+01:00"
    assert rows[-1].start == "2026-03-29T23:45:00+02:00"
    assert sum(r.figures.offered for r in rows) == 2
    day = await agg.day_report(date(2026, 3, 29))
    assert day.total.figures.offered == 2
    assert [q.figures.offered for q in day.queues if q.name == "info"] == [2]


# --- channels and transfers --------------------------------------------------------------------


async def test_channel_scope_counts_each_contact_once(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    t = T0
    await events.add_all(
        # x: answered in info after 8 s, talked 40 s, handed to the second line, answered there
        # after 12 s more (total wait 60 s incl. the first talk), completed: 1 contact, 1 answer
        enterqueue(t, "x", "info"),
        connect(t + 8 * S, "x", "info", "anna", 8 * S),
        transfer(t + 48 * S, "x", "info", "anna", "second", wait_ms=8 * S, talk_ms=40 * S),
        enterqueue(t + 48 * S, "x", "second", first=False),
        connect(t + 60 * S, "x", "second", "bob", 12 * S, total_wait_ms=60 * S),
        complete(t + 160 * S, "x", "second", "bob", 12 * S, 100 * S),
        # y: moved by a supervisor while still waiting (15 s in info), answered in second
        # after 10 s: within second's 30 s by both measures
        enterqueue(t + 200 * S, "y", "info"),
        transfer(t + 215 * S, "y", "info", "", "second", from_state="queued", wait_ms=15 * S),
        enterqueue(t + 215 * S, "y", "second", first=False),
        connect(t + 225 * S, "y", "second", "bob", 10 * S, total_wait_ms=25 * S),
        complete(t + 300 * S, "y", "second", "bob", 10 * S, 75 * S),
        # z: waits 25 s in info, moved, answered in second after 10 s: within for the queue
        # (10 s <= 30 s) but not for the channel (35 s > 30 s)
        enterqueue(t + 400 * S, "z", "info"),
        transfer(t + 425 * S, "z", "info", "", "second", from_state="queued", wait_ms=25 * S),
        enterqueue(t + 425 * S, "z", "second", first=False),
        connect(t + 435 * S, "z", "second", "bob", 10 * S, total_wait_ms=35 * S),
        # w: answered, transferred, then hangs up waiting for the second line: an abandon of
        # the second-line queue, but the resident's contact had been answered
        enterqueue(t + 500 * S, "w", "info"),
        connect(t + 502 * S, "w", "info", "anna", 2 * S),
        transfer(t + 520 * S, "w", "info", "anna", "second", wait_ms=2 * S, talk_ms=18 * S),
        enterqueue(t + 520 * S, "w", "second", first=False),
        abandon(t + 560 * S, "w", "second", 40 * S, total_wait_ms=60 * S),
        # v: never answered, overflows from info to second and times out there
        enterqueue(t + 600 * S, "v", "info"),
        exitwithtimeout(t + 660 * S, "v", "info", 60 * S, overflow="second"),
        enterqueue(t + 660 * S, "v", "second", first=False),
        exitwithtimeout(t + 720 * S, "v", "second", 60 * S, total_wait_ms=120 * S),
    )
    await fold_all(agg)
    info = QueueFigures.from_counters(await counters(redis, keys, t, "q:info"))
    second = QueueFigures.from_counters(await counters(redis, keys, t, "q:second"))
    voice = await counters(redis, keys, t, "c:voice")
    total = await counters(redis, keys, t, "all")
    assert voice == total

    assert (info.offered, info.answered, info.transfers, info.timeouts) == (5, 2, 4, 1)
    assert (second.offered, second.answered, second.abandoned, second.timeouts) == (5, 3, 1, 1)
    assert (second.handled, second.first_contact_resolved) == (2, 0)
    assert second.answered_within_sl == 3
    assert second.abandoned_after_sl == 1  # w: 40 s > 30 s

    v = QueueFigures.from_counters(voice)
    assert v.offered == 5  # x, y, z, w, v: first entries only
    assert v.answered == 4  # x, y, z, w answered once each (x's second CONNECT is not counted)
    assert v.answered_within_sl == 3  # x (8 s), y (25 s), w (2 s); z's 35 s is late
    assert voice["wait_sum_answered_ms"] == (8 + 25 + 35 + 2) * S
    assert v.abandoned == 0  # w had been answered
    assert v.timeouts == 1  # v, once, at its final timeout (total wait 120 s)
    assert voice["wait_sum_timeout_ms"] == 120 * S
    assert (v.handled, v.transfers, v.first_contact_resolved) == (2, 4, 0)
    assert v.service_level == pytest.approx(3 / 4)
    assert v.transfer_rate == pytest.approx(1.0)  # 4 transfers / 4 answered contacts
    assert v.fcr_rate == 0.0

    anna = await counters(redis, keys, t, "a:anna")
    assert (anna["transfers"], anna["transfer_talk_ms"]) == (2, 58 * S)
    # z is still connected: its state is kept (connected once, transferred once)
    assert await redis.hgetall(keys.stats_ix("z")) == {"c": "1", "x": "1"}
    assert await redis.ttl(keys.stats_ix("z")) > 29 * 86400
    assert not await redis.exists(keys.stats_ix("x"))


async def test_first_contact_resolution_across_batches(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    # the TRANSFER and the COMPLETE are folded in different batches (and by different
    # aggregator objects): the per-interaction state carries the transfer over
    t = T0
    await events.add_all(
        enterqueue(t, "p", "info"),
        connect(t + 5 * S, "p", "info", "anna", 5 * S),
        transfer(t + 10 * S, "p", "info", "anna", "second", wait_ms=5 * S, talk_ms=5 * S),
        enterqueue(t + 10 * S, "p", "second", first=False),
        enterqueue(t + 11 * S, "q", "info"),
        connect(t + 12 * S, "q", "info", "anna", 1 * S),
    )
    assert await agg.fold_once(max_events=2) == 2
    assert await agg.fold_once(max_events=2) == 2
    later = StatsAggregator(agg.redis, keys, agg.cfg)
    await fold_all(later)
    await events.add_all(
        connect(t + 20 * S, "p", "second", "bob", 10 * S, total_wait_ms=20 * S),
        complete(t + 30 * S, "p", "second", "bob", 10 * S, 10 * S),
        complete(t + 31 * S, "q", "info", "anna", 1 * S, 19 * S),
    )
    await fold_all(later)
    total = QueueFigures.from_counters(await counters(redis, keys, t, "all"))
    assert (total.handled, total.first_contact_resolved, total.answered) == (2, 1, 2)
    assert total.fcr_rate == pytest.approx(0.5)


async def test_deflections_and_messages(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    t = T0
    await events.add_all(
        deflected(t, "d1", "info"),
        deflected(t + S, "d2", "", channel="webform"),
        message(t + 2 * S, "m1", "mail", "resident", 300, channel="email"),
        message(t + 3 * S, "m1", "mail", "agent", 200, agent="anna", channel="email"),
        message(t + 4 * S, "m1", "mail", "system", 90, channel="email"),  # a case's number
    )
    await fold_all(agg)
    assert await counters(redis, keys, t, "q:info") == {"deflected": 1}
    assert await counters(redis, keys, t, "c:webform") == {"deflected": 1}
    assert (await counters(redis, keys, t, "all"))["deflected"] == 2
    assert await counters(redis, keys, t, "q:mail") == {
        "messages_from_resident": 1,
        "messages_from_agent": 1,
    }
    assert await counters(redis, keys, t, "a:anna") == {"messages_sent": 1}


async def test_agent_ready_and_paused_time(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    t = local_ms("2026-03-10T10:01:00")
    await events.add_all(
        addmember(t, "bob", "ready"),
        pause(t + 100 * S, "bob", "lunch", 100 * S),  # 100 s ready
        pause(t + 160 * S, "bob", "training", 60 * S),  # reason changed: 60 s of lunch
        unpause(t + 400 * S, "bob", 240 * S),  # 240 s of training
        removemember(t + 500 * S, "bob", 100 * S),  # 100 s ready
        addmember(t + 600 * S, "anna", "not_ready", "meeting"),
        removemember(t + 700 * S, "anna", 100 * S),  # 100 s paused for the meeting
    )
    await fold_all(agg)
    bob = AgentFigures.from_counters(await counters(redis, keys, t, "a:bob"))
    assert (bob.ready_s, bob.paused_s) == (200.0, 300.0)
    assert bob.paused_by_reason_s == {"lunch": 60.0, "training": 240.0}
    anna = AgentFigures.from_counters(await counters(redis, keys, t, "a:anna"))
    assert (anna.ready_s, anna.paused_s, anna.paused_by_reason_s) == (
        0.0,
        100.0,
        {"meeting": 100.0},
    )


# --- exactly once ------------------------------------------------------------------------------


async def test_stale_batch_is_refused_and_writes_nothing(redis: aioredis.Redis, keys: Keys) -> None:
    store = StatsStore(redis, keys)
    update = HashUpdate("cl:st:1:q:x", index="cl:st:day:2026-03-10", ttl_s=60)
    update.add("offered")
    assert await store.apply("", "5-0", [update])
    assert await store.cursor() == "5-0"
    # a second aggregator that read the same events still expects the old cursor
    assert not await store.apply("", "5-0", [update])
    assert not await store.apply("4-0", "6-0", [update])
    assert await redis.hgetall("cl:st:1:q:x") == {"offered": "1"}
    assert await store.cursor() == "5-0"
    with pytest.raises(ValueError, match="after"):
        await store.apply("5-0", "5-0", [update])


async def test_two_aggregators_folding_concurrently_count_each_event_once(
    redis: aioredis.Redis, redis_url: str, keys: Keys, events: Events, cfg: CitylineConfig
) -> None:
    n = 300
    for i in range(n):
        t = T0 + i * 1000
        await events.add_all(
            enterqueue(t, f"ix{i}", "info"),
            connect(t + 500, f"ix{i}", "info", "anna", 500),
        )
    other = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        first = StatsAggregator(redis, keys, cfg)
        second = StatsAggregator(other, keys, cfg)
        applied: list[tuple[str, bool]] = []
        for name, a in (("first", first), ("second", second)):
            original = a.store.apply

            async def spy(*args: object, _o=original, _n=name) -> bool:  # type: ignore[no-untyped-def]
                ok = await _o(*args)
                applied.append((_n, ok))
                return ok

            a.store.apply = spy  # type: ignore[method-assign]

        async def drain(a: StatsAggregator) -> int:
            done = 0
            while True:
                folded = await a.fold_once(max_events=7)
                if (
                    folded == 0
                    and await a.store.cursor()
                    == (await redis.xinfo_stream(keys.events))["last-generated-id"]
                ):
                    return done
                done += folded

        counts = await asyncio.gather(drain(first), drain(second), drain(first))
    finally:
        await other.aclose()
    assert sum(counts) == 2 * n
    assert any(not ok for _, ok in applied), "the race never happened: test is too weak"
    assert {name for name, ok in applied if ok} == {"first", "second"}
    totals: dict[str, int] = {}
    for row in await agg_rows(redis, keys, "q:info"):
        for k, v in row.items():
            totals[k] = totals.get(k, 0) + int(v)
    assert totals["offered"] == n
    assert totals["answered"] == n


async def agg_rows(redis: aioredis.Redis, keys: Keys, scope: str) -> list[dict[str, str]]:
    names = sorted(
        k
        for k in await redis.smembers(keys.stats_day_index("2026-03-10"))
        if k.endswith(":" + scope)
    )
    return [await redis.hgetall(k) for k in names]


async def test_restarted_aggregator_continues_from_the_cursor(
    redis: aioredis.Redis, keys: Keys, events: Events, cfg: CitylineConfig
) -> None:
    await events.add_all(*(enterqueue(T0 + i, f"a{i}", "info") for i in range(5)))
    assert await fold_all(StatsAggregator(redis, keys, cfg)) == 5
    await events.add_all(*(enterqueue(T0 + 10 + i, f"b{i}", "info") for i in range(3)))
    restarted = StatsAggregator(redis, keys, cfg)  # a new process: only Redis remembers
    assert await fold_all(restarted) == 3
    assert await fold_all(restarted) == 0
    assert (await counters(redis, keys, T0, "q:info"))["offered"] == 8


async def test_run_blocks_folds_new_events_and_stops(
    redis: aioredis.Redis,
    keys: Keys,
    events: Events,
    agg: StatsAggregator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="router.stats")
    stop = asyncio.Event()
    task = asyncio.create_task(agg.run(stop))
    try:
        await asyncio.sleep(0.1)
        last = await events.add(enterqueue(T0, "r1", "info"))
        for _ in range(500):
            if await agg.store.cursor() == last:
                break
            await asyncio.sleep(0.01)
        assert await agg.store.cursor() == last
        # the loop blocks in XREAD, it does not poll: a command count stays nearly flat
        before = int((await redis.info("commandstats")).get("cmdstat_xread", {}).get("calls", 0))
        await asyncio.sleep(0.5)
        after = int((await redis.info("commandstats")).get("cmdstat_xread", {}).get("calls", 0))
        assert after - before <= 2
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task
    assert (await counters(redis, keys, T0, "q:info"))["offered"] == 1
    assert "aggregator started" in caplog.text


# --- live --------------------------------------------------------------------------------------


async def test_live_snapshot(
    redis: aioredis.Redis, keys: Keys, events: Events, cfg: CitylineConfig
) -> None:
    cfg = make_config(erlang_window_intervals=2)
    agg = StatsAggregator(redis, keys, cfg)
    seconds, micros = await redis.time()
    now = seconds * 1000 + micros // 1000
    # the live state as the routing scripts keep it: two buckets of info, one of mail
    await redis.sadd(keys.queue_buckets("info"), "b1", "b2")
    await redis.zadd(keys.bucket("b1"), {"w1": now - 30_000, "w2": now - 10_000})
    await redis.zadd(keys.bucket("b2"), {"w3": now - 45_000})
    await redis.sadd(keys.queue_buckets("mail"), "b3")
    await redis.sadd(keys.agents, "anna", "bob", "carl", "dora")
    agent_base = {f"cap:{c}": "1" for c in ("voice", "email")}
    await redis.hset(
        keys.agent("anna"),
        mapping=agent_base
        | {
            "state": "ready",
            "reason": "",
            "state_since": str(now - 60_000),
            "skills": '{"general": 5}',
            "load:voice": "0",
            "load:email": "0",
        },
    )
    await redis.hset(
        keys.agent("bob"),
        mapping=agent_base
        | {
            "state": "ready",
            "reason": "",
            "state_since": str(now - 5_000),
            "skills": '{"general": 5, "taxes": 8}',
            "load:voice": "1",
            "load:email": "0",
        },
    )
    await redis.hset(
        keys.agent("carl"),
        mapping=agent_base
        | {
            "state": "not_ready",
            "reason": "lunch",
            "state_since": str(now - 120_000),
            "skills": '{"general": 2}',
            "load:voice": "0",
        },
    )
    await redis.hset(
        keys.agent("dora"),
        mapping=agent_base
        | {
            "state": "offline",
            "reason": "",
            "state_since": str(now - 1_000),
            "skills": '{"general": 9}',
            "cap:voice": "0",
            "load:voice": "0",
        },
    )
    # today's traffic in info: 4 offered, 2 answered (10 s and 30 s), 1 abandon at 50 s,
    # handled 2 with 100 s and 140 s talk + 20 s wrap-up each
    t = now - min(now % INTERVAL_MS, 5 * 60_000)  # inside the current interval
    await events.add_all(
        enterqueue(t, "i1", "info"),
        enterqueue(t + 1, "i2", "info"),
        enterqueue(t + 2, "i3", "info"),
        enterqueue(t + 3, "i4", "info"),
        connect(t + 4, "i1", "info", "anna", 10 * S),
        connect(t + 5, "i2", "info", "bob", 30 * S),
        abandon(t + 6, "i3", "info", 50 * S),
        complete(t + 7, "i1", "info", "anna", 10 * S, 100 * S),
        complete(t + 8, "i2", "info", "bob", 30 * S, 140 * S),
        wrapupend(t + 9, "i1", "info", "anna", 20 * S),
        wrapupend(t + 10, "i2", "info", "bob", 20 * S),
    )
    await fold_all(agg)
    snap = await agg.live_snapshot(cfg)
    assert snap.now_ms >= now
    info = next(q for q in snap.queues if q.name == "info")
    assert info.waiting == 3
    assert info.longest_wait_s == pytest.approx((snap.now_ms - (now - 45_000)) / 1000)
    # anna, bob, dora have general >= 3, carl does not; dora has no voice capacity
    assert info.agents.model_dump() == {"ready": 1, "busy": 1, "paused": 0, "offline": 0}
    second = next(q for q in snap.queues if q.name == "second")
    assert second.agents.model_dump() == {"ready": 0, "busy": 1, "paused": 0, "offline": 0}
    mail = next(q for q in snap.queues if q.name == "mail")
    assert (mail.waiting, mail.longest_wait_s) == (0, 0.0)
    assert mail.agents.model_dump() == {"ready": 1, "busy": 1, "paused": 1, "offline": 1}
    assert info.today.offered == 4 and info.today.answered == 2
    assert info.today.service_level == pytest.approx(1 / 3)  # 1 within / (2 + 1 after)
    assert info.interval.offered == 4  # all of it in the current interval
    assert (info.target_pct, info.threshold_s) == (80, 20)
    # staffing from the window (2 intervals, up to now) and the day's patience
    window_start = snap.interval_start_ms - INTERVAL_MS
    rate = 4 / ((snap.now_ms - window_start) / 1000)
    st = info.staffing
    assert st.arrival_rate_per_h == pytest.approx(rate * 3600)
    assert st.aht_s == pytest.approx(140.0)  # (100 + 140 + 20 + 20) / 2
    assert st.patience_s == pytest.approx((10 + 30 + 50) / 1)
    assert st.erlang_c_agents == agents_needed_erlang_c(rate, 140.0, 80, 20)
    assert st.erlang_a_agents == agents_needed_erlang_a(rate, 140.0, 90.0, 80, 20)
    assert st.erlang_c_agents >= st.erlang_a_agents >= 1
    assert mail.staffing.erlang_c_agents == 0  # no traffic, nobody needed
    voice = next(c for c in snap.channels if c.name == "voice")
    assert voice.waiting == 3
    assert voice.staffing.erlang_c_agents == st.erlang_c_agents + second.staffing.erlang_c_agents
    assert voice.agents.model_dump() == {"ready": 1, "busy": 1, "paused": 0, "offline": 0}
    agents = {a.id: a for a in snap.agents}
    assert agents["bob"].load == {"email": 0, "voice": 1}
    assert agents["bob"].handled_today == 1
    assert agents["carl"].state == "not_ready" and agents["carl"].reason == "lunch"
    assert agents["carl"].state_s == pytest.approx((snap.now_ms - (now - 120_000)) / 1000)
    assert agents["anna"].name == "Anna Nowak"
    assert snap.total.offered == 4


def test_patience_estimate() -> None:
    assert patience_estimate_s({}) is None
    assert patience_estimate_s({"answered": 3, "wait_sum_answered_ms": 30_000}) is None
    counters = {
        "abandoned": 2,
        "wait_sum_answered_ms": 60_000,
        "wait_sum_abandoned_ms": 40_000,
        "wait_sum_timeout_ms": 20_000,
    }
    assert patience_estimate_s(counters) == pytest.approx(60.0)


async def test_events_of_the_real_routing_scripts(
    redis: aioredis.Redis, keys: Keys, agg: StatsAggregator, cfg: CitylineConfig
) -> None:
    # the same figures from events written by the routing Lua scripts themselves
    from tests.lua_helpers import VOICE, enqueue, loaded_store, login, tick

    store = await loaded_store(redis)
    await login(store, "anna", skills={"general": 5})
    answered = await enqueue(store, VOICE)
    gone = await enqueue(store, VOICE)
    waiting = await enqueue(store, VOICE)
    await tick(store, 5)
    await store.reserve(answered, "anna", VOICE.bucket_id, 60_000)
    await store.accept(answered, "anna")
    await store.abandon(gone, short_abandon_ms=5000)
    await tick(store, 3)
    await store.complete(answered, "anna", side="caller", wrapup_ms=1000)
    await tick(store, 3)
    await store.wrapup_end(answered, "anna", by="agent")
    await store.agent_not_ready("anna", "lunch")
    await fold_all(agg)

    snap = await agg.live_snapshot(cfg)
    info = next(q for q in snap.queues if q.name == "info")
    assert info.waiting == 1 and info.longest_wait_s > 0
    assert info.agents.paused == 1
    today = info.today
    assert (today.offered, today.answered, today.abandoned, today.short_abandoned) == (3, 1, 1, 1)
    assert (today.handled, today.first_contact_resolved, today.service_level) == (1, 1, 1.0)
    assert today.aht_s is not None and today.aht_s > 0
    assert snap.total.offered == 3
    anna = next(a for a in snap.agents if a.id == "anna")
    assert anna.state == "not_ready" and anna.handled_today == 1
    assert anna.today.ready_s > 0
    assert waiting in await redis.zrange(keys.bucket(VOICE.bucket_id), 0, -1)


async def test_malformed_events_are_skipped_not_fatal(
    redis: aioredis.Redis, keys: Keys, events: Events, agg: StatsAggregator
) -> None:
    await redis.xadd("cl:events", {"ev": "ADDMEMBER", "t": str(T0)}, id=f"{T0}-0")  # no agent
    await redis.xadd("cl:events", {"ev": "ENTERQUEUE", "t": "soon", "queue": "info"},
                     id=f"{T0}-1")  # fmt: skip
    await redis.xadd("cl:events", {"ev": "CASECREATED", "t": str(T0)}, id=f"{T0}-2")
    events.last = (T0, 2)
    await events.add(enterqueue(T0 + 1, "ok", "info"))
    assert await fold_all(agg) == 4
    assert await counters(redis, keys, T0, "q:info") == {"offered": 1}
