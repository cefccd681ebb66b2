""""My unit's cases" is live: a case event of a unit wakes the desktops of its members at once
(the view's `cases_mark` changes, so the page reads its list), and nobody else's. The packaged
city: road_damage -> roads, whose member is grzegorz.krawczyk; anna.nowak is first line only."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router.auth import Role
from router.cases import Actor, CaseInput
from router.config import CitylineConfig, load_config
from router.web.desktop_data import DesktopHub
from tests.api_helpers import ApiHarness
from tests.test_web_desktop import next_event

BOSS = Actor("kierownik", Role.supervisor)


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


async def test_a_new_case_reaches_the_units_members_desktop_at_once(api: ApiHarness) -> None:
    member = await api.session("grzegorz.krawczyk", "agent", "grzegorz.krawczyk")
    other = await api.session("anna.nowak", "agent", "anna.nowak")
    mine = await member.client.get("/agent/stream")
    theirs = await other.client.get("/agent/stream")
    _name, first = await next_event(mine)
    assert first["cases_mark"] == ""
    _name, first_other = await next_event(theirs)

    loop = asyncio.get_running_loop()
    started = loop.time()
    made = await api.service.cases.create_standalone(
        CaseInput(category="road_damage", description="Dziura", address="ul. Lipowa 1"),
        language="pl", actor=BOSS)
    _name, view = await next_event(mine)
    assert view["cases_mark"].startswith("roads=")
    assert loop.time() - started < 1.5  # woken by the event, not the periodic refresh
    # the first-line agent's desktop has no unit: no push for it (only keep-alives)
    with pytest.raises(TimeoutError):
        await next_event(theirs, timeout_s=3.0)

    # a status change is news too
    mark = view["cases_mark"]
    await api.service.cases.set_status(made.number, "assigned", BOSS)
    _name, view = await next_event(mine)
    assert view["cases_mark"] != mark
    mine.close()
    theirs.close()
    assert first_other["cases_mark"] == ""


async def test_hub_marks_both_units_of_a_hand_over(redis: aioredis.Redis) -> None:
    keys = Keys()
    hub = DesktopHub(redis, keys)
    roads, lights, nobody = hub.subscribe("g"), hub.subscribe("l"), hub.subscribe("n")
    roads.units, lights.units = {"roads"}, {"lighting"}
    while not hub.events_seen:  # the reader starts at the stream's end: wait until it reads
        await redis.xadd(keys.events, {"ev": "UNPAUSE", "agent": "x", "ix": ""})
        await asyncio.sleep(0.05)
    await redis.xadd(keys.events, {"ev": "CASESTATUS", "action": "unit", "unit": "lighting",
                                   "from_unit": "roads", "agent": "", "ix": ""})
    await asyncio.wait_for(roads.wake.wait(), 3)
    await asyncio.wait_for(lights.wake.wait(), 3)
    assert not nobody.wake.is_set()
    assert hub.cases_mark({"roads"}) and hub.cases_mark({"lighting"})
    assert hub.cases_mark(set()) == "" and hub.cases_mark({"other"}) == ""
    await hub.close()
