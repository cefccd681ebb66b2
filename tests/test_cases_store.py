"""Cases in Redis: the Lua transitions (case_create, case_status, case_assign, case_link), their
refusals (which change nothing), numbering, indexes, events; duplicate detection by distance
and time. The packaged city: roads unit (grzegorz.krawczyk), sanitation (ewa.kozlowska)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues import errors as store_errors
from queues.cases import CaseStore, Subscriber
from queues.keys import Keys
from queues.store import RoutingStore
from router.auth import Role
from router.cases import Actor, CaseInput, CaseService, distance_m
from router.config import CitylineConfig, load_config
from router.config_cases import CasesConfig, cases_problems
from router.errors import CitylineError, Conflict, Forbidden, Unprocessable
from router.models import Channel, IntakeRequest
from router.service import RoutingService
from tests.routing_fixtures import events

K = Keys()
MEMBER = Actor("grzegorz.krawczyk", Role.agent, "grzegorz.krawczyk")
OTHER = Actor("anna.nowak", Role.agent, "anna.nowak")
BOSS = Actor("kierownik", Role.supervisor)
# ul. Piotrkowska, Łódź: 0.0001 degree of latitude is about 11 m
LAT, LON = 51.7592, 19.4560


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


@pytest.fixture
def cases(service: RoutingService) -> CaseService:
    return service.cases


async def snapshot(redis: aioredis.Redis) -> dict[str, Any]:
    """Every key with its value (streams by length): to prove a refusal changed nothing."""
    out: dict[str, Any] = {}
    for key in sorted(await redis.keys("*")):
        kind = await redis.type(key)
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            out[key] = sorted(await redis.smembers(key))
        elif kind == "stream":
            out[key] = await redis.xlen(key)
        else:
            out[key] = await redis.get(key)
    return out


async def report(service: RoutingService, channel: Channel = Channel.sms,
                 resident: str = "+48600100200", **kw: Any) -> dict[str, str]:
    req = IntakeRequest(channel=channel, resident=resident, body="Dziura w jezdni", **kw)
    done = await service.create_interaction(req)
    return await service.store.interaction(done.id)


async def new_case(cases: CaseService, service: RoutingService, *, lat: float = LAT,
                   lon: float = LON, category: str = "road_damage",
                   resident: str = "+48600100200") -> dict[str, str]:
    ix = await report(service, resident=resident)
    done = await cases.create_from_interaction(
        ix, CaseInput(category=category, description="Dziura", address="ul. Długa 5",
                      lat=lat, lon=lon), BOSS)
    return await cases.get(done.number)


# --- creating -------------------------------------------------------------------------------


async def test_create_numbers_indexes_and_links_the_interaction(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    ix = await report(service)
    done = await cases.create_from_interaction(
        ix, CaseInput(category="road_damage", description="Głęboka dziura",
                      address="ul. Długa 5", lat=LAT, lon=LON), MEMBER)
    year = done.number.split("-")[1]
    assert done.number == f"Z-{year}-000001"
    case = await cases.get(done.number)
    assert case["status"] == "open" and case["unit"] == "roads"
    assert case["category"] == "road_damage" and case["channel"] == "sms"
    # resolution target of road_damage: 72 hours
    assert int(case["due_ms"]) - int(case["created_ms"]) == 72 * 3_600_000
    assert (await service.store.interaction(ix["id"]))["case"] == done.number
    assert await redis.zrange(K.unit_cases("roads"), 0, -1) == [done.id]
    assert await redis.geopos(K.case_geo("road_damage"), done.id) != [None]
    [sub] = await cases.subscribers(case)
    assert (sub.via, sub.to, sub.ix) == ("sms", "+48600100200", ix["id"])
    [h] = await cases.history(case)
    assert h["status"] == "open" and h["by"] == "grzegorz.krawczyk"
    [ev] = await events(redis, "CASECREATED")
    assert ev.ix == ix["id"] and ev.channel == "sms" and ev.agent == "grzegorz.krawczyk"
    extra = ev.model_extra or {}
    assert extra["case"] == done.number and extra["unit"] == "roads"
    assert "600100200" not in str(ev.model_dump())  # no contact in the event log
    second = await new_case(cases, service, resident="+48600100201")
    assert second["number"] == f"Z-{year}-000002"


async def test_second_case_for_one_interaction_refused_unchanged(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    ix = await report(service)
    first = await cases.create_from_interaction(ix, CaseInput(category="road_damage"), BOSS)
    before = await snapshot(redis)
    with pytest.raises(Conflict) as err:
        await cases.create_from_interaction(ix, CaseInput(category="street_lighting"), BOSS)
    assert err.value.code == "exists" and first.number in err.value.message
    assert await snapshot(redis) == before


async def test_bad_category_or_location_refused(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    ix = await report(service)
    before = await snapshot(redis)
    for data, code in [
        (CaseInput(category="id_cards"), "unknown_category"),  # information, not intervention
        (CaseInput(category="nonsense"), "unknown_category"),
        (CaseInput(category="road_damage", lat=LAT), "invalid_location"),
        (CaseInput(category="road_damage", lat=95.0, lon=LON), "invalid_location"),
    ]:
        with pytest.raises(Unprocessable) as err:
            await cases.create_from_interaction(ix, data, BOSS)
        assert err.value.code == code
    assert await snapshot(redis) == before


async def test_lua_refuses_a_location_out_of_range(
    service: RoutingService, redis: aioredis.Redis
) -> None:
    store = CaseStore(redis, K, service.store.scripts)
    before = await snapshot(redis)
    fields = {"category": "road_damage", "unit": "roads", "lat": "89.9", "lon": "10"}
    with pytest.raises(store_errors.StateError):
        await store.create(fields, prefix="Z", target_ms=1000)
    assert await snapshot(redis) == before


async def test_webform_report_fills_category_and_place(
    cases: CaseService, service: RoutingService
) -> None:
    ix = await report(service, channel=Channel.webform, resident="jan@example.org",
                      topic="street_lighting",
                      meta={"contact": "jan@example.org", "address": "ul. Krótka 1",
                            "lat": LAT, "lon": LON, "photo": "photo-1.jpg"})
    done = await cases.create_from_interaction(ix, CaseInput(), BOSS)
    case = await cases.get(done.number)
    assert case["category"] == "street_lighting" and case["address"] == "ul. Krótka 1"
    assert float(case["lat"]) == LAT and case["photos"] == f'["{ix["id"]}/photo-1.jpg"]'
    [sub] = await cases.subscribers(case)
    assert (sub.via, sub.to) == ("email", "jan@example.org")


# --- status -------------------------------------------------------------------------------


async def test_the_status_path_and_final_states(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    case = await new_case(cases, service)
    number = case["number"]
    await cases.set_status(number, "assigned", MEMBER, note="biorę")
    assert (await cases.get(number))["assignee"] == "grzegorz.krawczyk"
    await cases.set_status(number, "in_progress", MEMBER, note="ekipa wysłana")
    await cases.set_status(number, "in_progress", BOSS, note="tylko notatka")  # a note only
    out = await cases.set_status(number, "completed", MEMBER, note="wewn.",
                                 public_note="Załatano")
    after = out["case"]
    assert after["status"] == "completed" and int(after["closed_ms"]) > 0
    assert await redis.zrange(K.unit_cases("roads"), 0, -1) == []
    assert await redis.zrange(K.case_geo("road_damage"), 0, -1) == []
    statuses = [h["status"] for h in await cases.history(after)]
    assert statuses == ["open", "assigned", "in_progress", "in_progress", "completed"]
    evs = [e.model_extra or {} for e in await events(redis, "CASESTATUS")]
    assert [(e["from_status"], e["status"]) for e in evs] == [
        ("open", "assigned"), ("assigned", "in_progress"), ("in_progress", "in_progress"),
        ("in_progress", "completed")]
    before = await snapshot(redis)
    for status in ("open", "in_progress", "rejected", "completed"):
        with pytest.raises(Conflict) as err:
            await cases.set_status(number, status, MEMBER)
        assert err.value.code == "invalid_state"
    assert await snapshot(redis) == before


@pytest.mark.parametrize(("path", "bad"), [
    ((), "completed"),                      # open -> completed skips the work
    (("assigned",), "completed"),
    (("in_progress",), "open"),
    (("in_progress",), "duplicate"),
])
async def test_transitions_not_in_the_table_change_nothing(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis,
    path: tuple[str, ...], bad: str,
) -> None:
    case = await new_case(cases, service)
    for status in path:
        await cases.set_status(case["number"], status, MEMBER)
    before = await snapshot(redis)
    with pytest.raises(Conflict):
        await cases.set_status(case["number"], bad, MEMBER)
    assert await snapshot(redis) == before


async def test_only_members_and_supervisors_change_status(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    case = await new_case(cases, service)
    before = await snapshot(redis)
    with pytest.raises(Forbidden):
        await cases.set_status(case["number"], "in_progress", OTHER)
    with pytest.raises(Forbidden):
        await cases.set_unit(case["number"], "sanitation", OTHER)
    with pytest.raises(Forbidden):
        await cases.for_unit("roads", OTHER)
    assert await snapshot(redis) == before
    await cases.set_status(case["number"], "in_progress", BOSS)
    assert [c["number"] for c in await cases.for_unit("roads", MEMBER)] == [case["number"]]


async def test_stale_unit_refused_by_the_script(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    """The permission was checked against the unit read before the script: if the case moved
    meanwhile (another process), the script refuses instead of acting for the wrong unit."""
    case = await new_case(cases, service)
    await cases.set_unit(case["number"], "sanitation", BOSS, note="to śmieci")
    before = await snapshot(redis)
    with pytest.raises(store_errors.StaleError):
        await cases.store.set_status(case["id"], "in_progress", unit="roads",
                                     category="road_damage")
    assert await snapshot(redis) == before


async def test_move_to_another_unit(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    case = await new_case(cases, service)
    await cases.set_status(case["number"], "assigned", MEMBER)
    after = await cases.set_unit(case["number"], "sanitation", MEMBER, note="nie nasze")
    assert after["unit"] == "sanitation" and after["status"] == "open"
    assert after["assignee"] == "" and after["due_ms"] == case["due_ms"]
    assert await redis.zrange(K.unit_cases("roads"), 0, -1) == []
    assert await redis.zrange(K.unit_cases("sanitation"), 0, -1) == [case["id"]]
    ewa = Actor("ewa.kozlowska", Role.agent, "ewa.kozlowska")
    with pytest.raises(Forbidden):  # no longer roads' case
        await cases.set_status(case["number"], "in_progress", MEMBER)
    await cases.set_status(case["number"], "in_progress", ewa)
    with pytest.raises(CitylineError) as err:
        await cases.set_unit(case["number"], "nowhere", BOSS)
    assert err.value.code == "unknown_unit"


# --- duplicates ---------------------------------------------------------------------------


async def test_duplicates_by_distance(cases: CaseService, service: RoutingService) -> None:
    case = await new_case(cases, service)
    # ~33 m north: inside 50 m; ~110 m north: outside
    near = await cases.find_duplicates("road_damage", LAT + 0.0003, LON)
    assert [c["number"] for c in near] == [case["number"]]
    assert 30 < near[0]["distance_m"] < 36
    assert 30 < distance_m(LAT, LON, LAT + 0.0003, LON) < 36
    assert await cases.find_duplicates("road_damage", LAT + 0.001, LON) == []
    # another category at the same place is not a duplicate
    assert await cases.find_duplicates("street_lighting", LAT, LON) == []
    assert await cases.find_duplicates("road_damage", None, None) == []


async def test_duplicates_by_time_and_status(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    old = await new_case(cases, service)
    # reported 73 hours ago: outside the 72-hour window
    created = int(old["created_ms"]) - 73 * 3_600_000
    await redis.hset(K.case(old["id"]), "created_ms", created)
    assert await cases.find_duplicates("road_damage", LAT, LON) == []
    await redis.hset(K.case(old["id"]), "created_ms", old["created_ms"])
    assert len(await cases.find_duplicates("road_damage", LAT, LON)) == 1
    await cases.set_status(old["number"], "rejected", MEMBER)  # closed: not a duplicate
    assert await cases.find_duplicates("road_damage", LAT, LON) == []


async def test_link_adds_the_second_reporter(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    case = await new_case(cases, service)
    ix2 = await report(service, channel=Channel.email, resident="ola@example.org")
    after, linked = await cases.link(ix2, case["number"], MEMBER)
    assert linked and after["reports"] == "2"
    assert (await service.store.interaction(ix2["id"]))["case"] == case["number"]
    subs = {s.via: s.to for s in await cases.subscribers(case)}
    assert subs == {"sms": "+48600100200", "email": "ola@example.org"}
    again, linked = await cases.link(ix2, case["number"], MEMBER)
    assert not linked and again["reports"] == "2"
    other = await new_case(cases, service, lat=LAT + 0.01, resident="+48600100209")
    before = await snapshot(redis)
    with pytest.raises(Conflict) as err:  # it belongs to the first case
        await cases.link(ix2, other["number"], MEMBER)
    assert err.value.code == "exists"
    assert await snapshot(redis) == before


async def test_marking_a_case_duplicate_moves_its_subscribers(
    cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    first = await new_case(cases, service)
    second = await new_case(cases, service, resident="+48600100201")
    await cases.set_status(second["number"], "duplicate", MEMBER,
                           duplicate_of=first["number"])
    after = await cases.get(second["number"])
    assert after["status"] == "duplicate" and after["duplicate_of"] == first["number"]
    subs = sorted(s.to for s in await cases.subscribers(first))
    assert subs == ["+48600100200", "+48600100201"]
    assert (await cases.get(first["number"]))["reports"] == "2"
    before = await snapshot(redis)
    with pytest.raises(Conflict):  # a duplicate of a closed case: refused
        await cases.set_status(first["number"], "duplicate", MEMBER,
                               duplicate_of=second["number"])
    assert await snapshot(redis) == before


# --- configuration -------------------------------------------------------------------------


def test_config_cross_checks(cfg: CitylineConfig) -> None:
    bad = CasesConfig.model_validate({
        "units": {"roads": {"labels": {"pl": "D", "en": "R"}, "members": ["nobody"]}},
        "categories": {"id_cards": {"unit": "roads"}, "nothing": {"unit": "roads"}},
    })
    problems = dict(cases_problems(bad, city_languages=cfg.city.languages, skills=cfg.skills,
                                   agents=cfg.agents))
    msgs = " | ".join(f"{'.'.join(map(str, k))}: {v}" for k, v in problems.items())
    assert "cases.units.roads.labels: no label for city language(s) uk" in msgs
    assert "cases.units.roads.members.0: unknown agent 'nobody'" in msgs
    assert "id_cards' is not of kind intervention" in msgs
    assert "unknown skill 'nothing'" in msgs
    assert "has no rule" in msgs
    with pytest.raises(ValueError, match="unknown unit"):
        CasesConfig.model_validate({"categories": {"x": {"unit": "nowhere"}}})
    assert cfg.cases.enabled and not CasesConfig().enabled


async def test_cases_off_without_units(redis: aioredis.Redis) -> None:
    cfg = load_config(None, env={})
    cfg.cases = CasesConfig()
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    ix = await report(service)
    with pytest.raises(Unprocessable) as err:
        await service.cases.create_from_interaction(ix, CaseInput(category="road_damage"), BOSS)
    assert err.value.code == "cases_disabled"


def test_subscriber_json_round_trip() -> None:
    sub = Subscriber(ix="i1", via="email", to="a@b.pl", language="uk", ref="2026-000001")
    assert Subscriber.from_json(sub.to_json()) == sub and sub.key == "ix:i1"


# --- who is told, and how --------------------------------------------------------------------


def test_subscriber_for_each_channel(cfg: CitylineConfig) -> None:
    from router.case_notices import subscriber_for

    def sub(channel: str, resident: str, meta: dict[str, Any] | None = None,
            contact: str = "") -> tuple[str, str]:
        ix = {"id": "i", "channel": channel, "resident": resident, "language": "uk",
              "meta": json.dumps(meta or {})}
        s = subscriber_for(cfg, ix, contact)
        return s.via, s.to

    assert sub("sms", "+48600100200") == ("sms", "+48600100200")
    assert sub("voice", "600100200") == ("sms", "+48600100200")
    assert sub("voice", "anonymous") == ("", "")
    assert sub("email", "a@b.pl", {"reply_to": "r@b.pl"}) == ("email", "r@b.pl")
    assert sub("telegram", "tg:12345") == ("telegram", "12345")
    assert sub("webform", "x@y.pl", {"contact": "x@y.pl"}) == ("email", "x@y.pl")
    assert sub("webform", "+48600100201", {"contact": "+48600100201"}) == ("sms", "+48600100201")
    # a chat: the agent's contact, else the one typed when starting the chat, else the chat
    assert sub("chat", "web:abc") == ("chat", "i")
    assert sub("chat", "web:abc", contact="600 100 202") == ("sms", "+48600100202")
    assert sub("chat", "web:abc", {"contact": "ola@example.org"}) == ("email", "ola@example.org")
    assert sub("chat", "", {"contact": "ola@example.org"}, contact="600 100 202") == (
        "sms", "+48600100202")
    # an agent's contact that is no address does not silence the channel's own route
    assert sub("chat", "web:abc", contact="nie wiem") == ("chat", "i")
    assert sub("sms", "+48600100200", contact="nie wiem") == ("sms", "+48600100200")


async def test_a_chat_resident_whose_chat_ended_gets_an_honest_no_channel_record(
    cases: CaseService, service: RoutingService
) -> None:
    ix = await report(service, channel=Channel.chat, resident="web:s1")
    await service.resident_left(ix["id"])  # the chat is over before the case is made
    done = await cases.create_from_interaction(ix, CaseInput(category="road_damage"), BOSS)
    opened = (await service.deliveries(ix["id"]))[f"case:{done.number}:open"]
    assert opened["status"] == "no_channel" and opened["channel"] == "chat"
    assert "left no contact" in opened["error"]
    await cases.set_status(done.number, "in_progress", MEMBER)
    out = await cases.set_status(done.number, "rejected", MEMBER, public_note="Nie nasze")
    assert out["notices"] == [{"ix": ix["id"], "via": "chat", "result": "no_channel"}]
    record = (await service.deliveries(ix["id"]))[f"case:{done.number}:rejected"]
    assert record["status"] == "no_channel" and "the chat has ended" in record["error"]
    assert [m["text"] for m in await service.messages(ix["id"])] == []  # nothing posted


async def test_a_live_chat_is_told_the_number_whatever_notify_on_says(
    cfg: CitylineConfig, cases: CaseService, service: RoutingService
) -> None:
    cfg.cases.notify_on = ["completed"]
    ix = await report(service, channel=Channel.chat, resident="web:s2", language="en")
    done = await cases.create_from_interaction(ix, CaseInput(category="road_damage"), BOSS)
    [posted] = await service.messages(ix["id"])
    assert posted["from"] == "system" and done.number in posted["text"]
    assert posted["link"] == f"/cases/{done.number}?lang=en"
    assert f"Status: /cases/{done.number}?lang=en" in posted["text"]
    assert posted["notice"] == f"case:{done.number}:open"
    record = (await service.deliveries(ix["id"]))[f"case:{done.number}:open"]
    assert record["status"] == "sent" and record["channel"] == "chat"
    # asked again (a second process, resend): posted once
    case = await cases.get(done.number)
    from router.case_notices import chat_link, notify

    sub = (await cases.subscribers(case))[0]
    assert await chat_link(service, case, sub) == "already"
    assert await notify(service, case, "open", "", [sub]) == [
        {"ix": ix["id"], "via": "chat", "result": "already"}]
    assert len(await service.messages(ix["id"])) == 1


async def test_notice_text_in_the_residents_language(cfg: CitylineConfig) -> None:
    from router.case_notices import notice_text

    case = {"number": "Z-2026-000007", "category": "road_damage"}
    uk = notice_text(cfg, case, "completed", "Готово", "uk")
    assert "Z-2026-000007" in uk and "виконано" in uk and "Готово" in uk
    en = notice_text(cfg, case, "rejected", "", "en")
    assert en.startswith("Your report Z-2026-000007 (Potholes and road damage) has been rejected")
    cfg.cases.public_url = "https://kontakt.example.pl"
    assert "https://kontakt.example.pl/cases/Z-2026-000007?lang=pl" in notice_text(
        cfg, case, "completed", "", "pl")


async def test_open_notice_gives_the_number_when_configured(
    cfg: CitylineConfig, cases: CaseService, service: RoutingService
) -> None:
    cfg.cases.notify_on = ["open", "completed", "rejected"]
    ix = await report(service)
    done = await cases.create_from_interaction(ix, CaseInput(category="road_damage"), BOSS)
    item = f"case:{done.number}:open"
    record = (await service.deliveries(ix["id"]))[item]
    assert record["status"] == "queued" and record["to"] == "+48600100200"
    ix2 = await report(service, channel=Channel.email, resident="ola@example.org")
    await cases.link(ix2, done.number, MEMBER)
    assert (await service.deliveries(ix2["id"]))[item]["to"] == "ola@example.org"
    await cases.link(ix2, done.number, MEMBER)  # again: nothing new, nobody told twice
    jobs = await service.store.redis.hgetall(K.outbox_jobs("email"))
    assert [j for j in jobs if j.startswith(ix2["id"])] == [f"{ix2['id']}:{item}"]


async def test_case_events_in_the_queue_log_export(
    cfg: CitylineConfig, cases: CaseService, service: RoutingService, redis: aioredis.Redis
) -> None:
    import io

    from router.queue_log import export_queue_log

    case = await new_case(cases, service)
    await cases.set_status(case["number"], "in_progress", MEMBER, note="Kowalski dzwonił")
    out = io.StringIO()
    await export_queue_log(redis, K, cfg, None, out)
    lines = [ln for ln in out.getvalue().splitlines() if "|CASE" in ln]
    assert len(lines) == 2
    assert "|CASECREATED|" in lines[0] and case["number"] in lines[0]
    assert "|CASESTATUS|" in lines[1] and "in_progress" in lines[1]
    assert "Kowalski" not in out.getvalue()
    out = io.StringIO()
    await export_queue_log(redis, K, cfg, None, out, include_cityline=False)
    assert "CASE" not in out.getvalue()
