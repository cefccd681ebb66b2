"""Durable case notices: the `cases:notices` group queues what a status change calls for even
when the process that made it died right after the script - exactly once per resident and
status, with two workers, a redelivered event, and the inline path racing it. The packaged
city: roads unit (grzegorz.krawczyk); SMS and e-mail enabled."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis.asyncio as aioredis

from queues.cases import Subscriber
from queues.keys import Keys
from router import case_worker
from router.auth import Role
from router.case_worker import GROUP, CaseNoticeWorker
from router.cases import Actor, CaseInput, CaseService
from router.config import CitylineConfig, load_config
from router.config_cases import CasesConfig
from router.event_feed import EventFeed
from router.main import Cityline
from router.models import Channel, IntakeRequest
from router.service import RoutingService

K = Keys()
MEMBER = Actor("grzegorz.krawczyk", Role.agent, "grzegorz.krawczyk")
BOSS = Actor("kierownik", Role.supervisor)
PHONE, PHONE2, MAIL = "+48600100200", "+48600100201", "ola@example.org"


@pytest.fixture
def cfg() -> CitylineConfig:
    cfg = load_config(None, env={})
    cfg.cases.notify_on = ["completed", "rejected"]  # tests that want `open` add it
    return cfg


@pytest.fixture
def cases(service: RoutingService) -> CaseService:
    return service.cases


async def report(service: RoutingService, channel: Channel = Channel.sms,
                 resident: str = PHONE) -> dict[str, str]:
    req = IntakeRequest(channel=channel, resident=resident, body="Dziura w jezdni")
    done = await service.create_interaction(req)
    return await service.store.interaction(done.id)


async def new_case(cases: CaseService, service: RoutingService,
                   resident: str = PHONE) -> dict[str, str]:
    ix = await report(service, resident=resident)
    done = await cases.create_from_interaction(
        ix, CaseInput(category="road_damage", description="Dziura"), BOSS)
    return await cases.get(done.number)


async def script_only(cases: CaseService, case: dict[str, str], status: str,
                      **kw: str) -> None:
    """What a process that dies right after the script leaves: the change, no notice."""
    await cases.store.set_status(case["id"], status, unit=case["unit"],
                                 category=case["category"], by=MEMBER.name,
                                 by_agent=MEMBER.agent_id, **kw)


async def jobs(redis: aioredis.Redis, channel: str = "sms") -> dict[str, dict]:
    raw = await redis.hgetall(K.outbox_jobs(channel))
    return {k: json.loads(v) for k, v in raw.items() if ":case:" in k}


async def drain(*feeds: EventFeed) -> None:
    """Every feed reads at once until none gets anything more."""
    while sum(await asyncio.gather(*(f.read_once(block_ms=None) for f in feeds))):
        pass


def workers(service: RoutingService, redis: aioredis.Redis,
            n: int) -> tuple[list[CaseNoticeWorker], list[EventFeed]]:
    ws = [CaseNoticeWorker(service) for _ in range(n)]
    return ws, [EventFeed(redis, K, w, f"proc-{i}") for i, w in enumerate(ws)]


async def test_a_status_changed_by_a_dead_process_is_told_once_by_two_workers(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    ws, feeds = workers(service, redis, 2)
    await feeds[0].ensure_group()
    await feeds[1].ensure_group()  # BUSYGROUP: one group, two consumers
    case = await new_case(cases, service)
    await script_only(cases, case, "in_progress")
    await script_only(cases, case, "completed", note="wewnętrzna", public_note="Załatane")
    assert await jobs(redis) == {}  # the dead process queued nothing
    await drain(*feeds)
    found = await jobs(redis)
    item = f"{case['ix']}:case:{case['number']}:completed"
    assert list(found) == [item]
    assert "Załatane" in found[item]["text"] and "wewnętrzna" not in found[item]["text"]
    assert found[item]["to"] == PHONE
    assert sum(w.queued for w in ws) == 1
    assert (await redis.xpending(K.events, GROUP))["pending"] == 0


async def test_a_redelivered_event_sends_nothing_twice(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    (worker,), (feed,) = workers(service, redis, 1)
    await feed.ensure_group()
    case = await new_case(cases, service)
    await script_only(cases, case, "rejected")  # no note: the text has none either
    await drain(feed)
    assert worker.queued == 1
    # the worker queued and died before its XACK: the event is delivered again (XAUTOCLAIM),
    # here the whole group is rewound and read again
    await redis.xgroup_setid(K.events, GROUP, "0")
    await drain(feed)
    entry_id, fields = (await redis.xrange(K.events))[-1]
    await feed._handle(entry_id, fields, 2)
    assert worker.queued == 1
    assert list(await jobs(redis)) == [f"{case['ix']}:case:{case['number']}:rejected"]


async def test_a_retried_event_is_taken_over_and_told_once(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis, monkeypatch
) -> None:
    from router import event_feed

    monkeypatch.setattr(event_feed, "RETRY_IDLE_MS", 0)
    ws, (dying, other) = workers(service, redis, 2)
    await dying.ensure_group()
    case = await new_case(cases, service)
    await script_only(cases, case, "rejected")
    # the first process reads the events and dies before handling them: they stay pending
    await dying.redis.xreadgroup(GROUP, dying.consumer, {K.events: ">"}, count=100)
    assert (await redis.xpending(K.events, GROUP))["pending"] > 0
    await other._retry_pending()
    assert ws[1].queued == 1 and ws[0].queued == 0
    assert len(await jobs(redis)) == 1


async def test_inline_notice_and_worker_together_queue_one_per_resident(
    cfg: CitylineConfig, cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    cfg.cases.notify_on = ["open", "completed", "rejected"]
    ws, feeds = workers(service, redis, 2)
    await feeds[0].ensure_group()
    case = await new_case(cases, service)
    ix2 = await report(service, channel=Channel.email, resident=MAIL)
    await cases.link(ix2, case["number"], MEMBER)
    await cases.set_status(case["number"], "in_progress", MEMBER)
    out = await cases.set_status(case["number"], "completed", MEMBER, public_note="Gotowe")
    assert sorted(n["result"] for n in out["notices"]) == ["queued", "queued"]
    await drain(*feeds)
    assert sum(w.queued for w in ws) == 0  # found queued already
    for ix_id, channel in ((case["ix"], "sms"), (ix2["id"], "email")):
        assert sorted(await jobs(redis, channel)) == [
            f"{ix_id}:case:{case['number']}:{status}" for status in ("completed", "open")]


async def test_open_notices_of_creation_and_link_from_the_events_alone(
    cfg: CitylineConfig, cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    cfg.cases.notify_on = ["open", "completed", "rejected"]
    (worker,), (feed,) = workers(service, redis, 1)
    await feed.ensure_group()
    ix = await report(service)
    sub = Subscriber(ix=ix["id"], via="sms", to=PHONE, language="pl")
    fields = {"category": "road_damage", "unit": "roads", "description": "Dziura",
              "address": "", "lat": "", "lon": "", "photos": "[]", "language": "pl",
              "channel": "sms"}
    made = await cases.store.create(fields, prefix="Z", target_ms=3_600_000, ix_id=ix["id"],
                                    subscriber=sub, by=BOSS.name)  # script only
    ix2 = await report(service, resident=PHONE2)
    sub2 = Subscriber(ix=ix2["id"], via="sms", to=PHONE2, language="pl")
    await cases.store.link(made.id, ix2["id"], sub2, by=MEMBER.name)  # script only
    await drain(feed)
    item = f"case:{made.number}:open"
    found = await jobs(redis)
    assert sorted(found) == sorted([f"{ix['id']}:{item}", f"{ix2['id']}:{item}"])
    assert all(made.number in j["text"] for j in found.values())
    assert worker.queued == 2  # the reporter once (not again at the link), the linked once


async def test_statuses_not_in_notify_on_and_other_actions_tell_nobody(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    (worker,), (feed,) = workers(service, redis, 1)
    await feed.ensure_group()
    case = await new_case(cases, service)  # `open` is not in the default notify_on
    await script_only(cases, case, "assigned")
    await script_only(cases, case, "assigned", note="just a note")  # same status: a note
    await cases.store.set_unit(case["id"], from_unit="roads", unit="sanitation")
    await drain(feed)
    assert worker.queued == 0 and await jobs(redis) == {}
    assert (await redis.xpending(K.events, GROUP))["pending"] == 0


async def test_a_fresh_group_catches_up_on_the_last_day_not_on_old_events(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis, monkeypatch
) -> None:
    case = await new_case(cases, service)
    await script_only(cases, case, "rejected")  # before any worker ever ran
    (worker,), (feed,) = workers(service, redis, 1)
    await feed.ensure_group()
    await drain(feed)
    assert worker.queued == 1

    other = await new_case(cases, service, resident=PHONE2)
    await script_only(cases, other, "rejected")
    monkeypatch.setattr(case_worker, "MAX_AGE_MS", -1)  # as if it were weeks old
    await drain(feed)
    assert worker.queued == 1 and len(await jobs(redis)) == 1


async def test_a_channel_feed_still_starts_at_the_end(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    await new_case(cases, service)

    class Sms:
        channel = "sms"

        async def handle_event(self, event, interaction) -> None:
            raise AssertionError(f"{event.type} of before the group was replayed")

    feed = EventFeed(redis, K, Sms(), "p1")
    assert (feed.group, feed.replay_ms) == ("ch:sms", 0)
    await feed.ensure_group()
    assert await feed.read_once(block_ms=None) == 0  # history is not replayed to channels


async def test_wired_only_when_cases_are_enabled(
    cfg: CitylineConfig, service: RoutingService, redis: aioredis.Redis, redis_url: str
) -> None:
    city = Cityline(cfg, redis_url=redis_url, http=False, stats=False)
    city.service, city.redis = service, redis
    assert [name for name, _run in city._case_components()] == ["case-notices"]
    off = load_config(None, env={})
    off.cases = CasesConfig()
    city = Cityline(off, redis_url=redis_url, http=False, stats=False)
    city.service, city.redis = service, redis
    assert city._case_components() == []
    quiet = Cityline(load_config(None, env={}), redis_url=redis_url, channels=False)
    quiet.service, quiet.redis = service, redis
    assert quiet._case_components() == []


async def test_an_internal_note_alone_never_reaches_the_resident(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    """Completed with only an internal note: the inline notice and the worker's both carry
    the number and no note (the staff's words stay with the staff)."""
    inline = await new_case(cases, service)
    await cases.set_status(inline["number"], "in_progress", MEMBER)
    await cases.set_status(inline["number"], "completed", MEMBER,
                           note="sąsiad spod 12 to awanturnik")
    dead = await new_case(cases, service, resident=PHONE2)
    await script_only(cases, dead, "in_progress")
    await script_only(cases, dead, "completed", note="sąsiad spod 12 to awanturnik")
    _ws, feeds = workers(service, redis, 1)
    await feeds[0].ensure_group()
    await drain(*feeds)
    found = await jobs(redis)
    texts = [found[f"{c['ix']}:case:{c['number']}:completed"]["text"] for c in (inline, dead)]
    for case, text in zip((inline, dead), texts, strict=True):
        assert case["number"] in text
        assert "awanturnik" not in text and "Uwagi" not in text


async def test_an_untold_resident_is_recorded_and_logged_once(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A withheld caller ID: no way to tell them. The inline path records it; the worker,
    reading the same change, neither rewrites the record nor logs it again."""
    case = await new_case(cases, service, resident="anonymous")
    await cases.set_status(case["number"], "in_progress", MEMBER)
    with caplog.at_level("INFO", logger="router.case_notices"):
        out = await cases.set_status(case["number"], "completed", MEMBER, public_note="Gotowe")
        assert [n["result"] for n in out["notices"]] == ["no_channel"]
        item = f"case:{case['number']}:completed"
        first = (await service.deliveries(case["ix"]))[item]
        assert first["status"] == "no_channel"
        _ws, feeds = workers(service, redis, 1)
        await feeds[0].ensure_group()
        await drain(*feeds)
    assert (await service.deliveries(case["ix"]))[item] == first
    said = [r for r in caplog.records if "no channel" in r.getMessage()]
    assert len(said) == 1
