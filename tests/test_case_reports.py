"""The city's case reports: figures per category and unit (opened, completed, rejected, open,
overdue, median time to complete), the tile-free SVG map, the staff page and CSV
(/wall/cases, supervisors and admins), and the public statistics (/stats/cases and
/stats/cases.json) without anything personal. The packaged city's configuration."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import case_reports
from router.auth import Role
from router.cases import Actor, CaseInput, CaseService
from router.config import CitylineConfig, load_config
from router.service import RoutingService
from router.web.case_map import case_map
from tests.api_helpers import ApiHarness

K = Keys()
BOSS = Actor("kierownik", Role.supervisor)
LAT, LON = 51.759234, 19.456087
HOUR = 3_600_000
CONTACT = "jan.kowalski@example.com"
DESCRIPTION = "Dziura przed domem pana Kowalskiego"
ADDRESS = "ul. Piotrkowska 104 m. 7"


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


async def make(cases: CaseService, category: str = "road_damage", *, lat: float | None = LAT,
               lon: float | None = LON) -> dict[str, str]:
    done = await cases.create_standalone(
        CaseInput(category=category, description=DESCRIPTION, address=ADDRESS, lat=lat,
                  lon=lon, contact=CONTACT), language="pl", actor=BOSS)
    return await cases.get(done.number)


async def move(cases: CaseService, case: dict[str, str], *statuses: str) -> None:
    for status in statuses:
        await cases.set_status(case["number"], status, BOSS)


async def set_times(redis: aioredis.Redis, case: dict[str, str], *, created_ms: int,
                    done_ms: int | None = None, due_ms: int | None = None) -> None:
    """Put the case's creation (and its final status, its due time) where the test wants."""
    fields: dict[str, Any] = {"created_ms": created_ms}
    if due_ms is not None:
        fields["due_ms"] = due_ms
    if done_ms is not None:
        fields["closed_ms"] = done_ms
        key = K.case_history(case["id"])
        entries = await redis.lrange(key, 0, -1)
        last = json.loads(entries[-1])
        last["t"] = done_ms
        await redis.lset(key, len(entries) - 1, json.dumps(last))
    await redis.hset(K.case(case["id"]), mapping=fields)


# --- the figures, pure ------------------------------------------------------------------------


def test_compute_counts_in_range_and_now() -> None:
    now = 100 * HOUR
    rows = [
        {"id": "a", "category": "road_damage", "unit": "roads", "status": "completed",
         "created_ms": str(50 * HOUR), "due_ms": str(60 * HOUR)},
        {"id": "b", "category": "road_damage", "unit": "roads", "status": "completed",
         "created_ms": str(40 * HOUR), "due_ms": str(60 * HOUR)},
        {"id": "c", "category": "road_damage", "unit": "roads", "status": "open",
         "created_ms": str(90 * HOUR), "due_ms": str(99 * HOUR), "lat": "51.7", "lon": "19.4"},
        {"id": "d", "category": "waste_not_collected", "unit": "sanitation",
         "status": "in_progress", "created_ms": str(95 * HOUR), "due_ms": str(120 * HOUR)},
        {"id": "e", "category": "waste_not_collected", "unit": "sanitation",
         "status": "rejected", "created_ms": str(5 * HOUR), "closed_ms": str(70 * HOUR)},
        {"id": "f", "category": "road_damage", "unit": "roads", "status": "completed",
         "created_ms": str(1 * HOUR)},  # completed before the range
    ]
    histories = {
        "a": [{"status": "open", "t": 50 * HOUR}, {"status": "completed", "t": 54 * HOUR}],
        "b": [{"status": "open", "t": 40 * HOUR}, {"status": "completed", "t": 50 * HOUR}],
        "e": [{"status": "open", "t": 5 * HOUR}, {"status": "rejected", "t": 70 * HOUR}],
        "f": [{"status": "open", "t": 1 * HOUR}, {"status": "completed", "t": 2 * HOUR}],
    }
    r = case_reports.compute(rows, histories, since_ms=10 * HOUR, until_ms=now, now_ms=now,
                             category_labels={"road_damage": "Dziury"})
    road = next(g for g in r.categories if g.key == "road_damage")
    assert (road.label, road.opened, road.completed, road.rejected) == ("Dziury", 3, 2, 0)
    assert (road.open_now, road.overdue_now) == (1, 1)
    assert road.median_hours_to_complete == 7.0  # 4 h and 10 h
    waste = next(g for g in r.categories if g.key == "waste_not_collected")
    assert (waste.opened, waste.rejected, waste.open_now, waste.overdue_now) == (1, 1, 1, 0)
    assert waste.median_hours_to_complete is None
    assert [g.key for g in r.units] == ["roads", "sanitation"]
    assert (r.total.opened, r.total.completed, r.total.open_now) == (4, 2, 2)
    assert r.open_points == [{"lat": 51.7, "lon": 19.4, "category": "road_damage",
                              "label": "Dziury", "overdue": True}]


def test_default_range_is_thirty_local_days(cfg: CitylineConfig) -> None:
    tz = cfg.city.tzinfo()
    now = 1_780_000_000_000
    lo, hi = case_reports.default_range(now, tz)
    assert hi == now and 29 * 24 * HOUR < now - lo <= 30 * 24 * HOUR + HOUR
    assert case_reports.day_of(lo, tz) < case_reports.day_of(hi, tz)
    with pytest.raises(case_reports.BadRange):
        case_reports.parse_days("2026-02-30", "", tz)
    with pytest.raises(case_reports.BadRange):
        case_reports.parse_days("2026-03-02", "2026-03-01", tz)
    since, until = case_reports.parse_days("2026-03-01", "2026-03-01", tz)
    assert since is not None and until is not None and until - since == 24 * HOUR - 1


# --- the figures from Redis -------------------------------------------------------------------


async def test_build_reads_cases_and_history(service: RoutingService,
                                             redis: aioredis.Redis) -> None:
    cases = service.cases
    now = await service.store.now_ms()
    fast, slow, rejected = await make(cases), await make(cases), await make(cases)
    late = await make(cases, "waste_not_collected")
    await make(cases, "street_lighting", lat=None, lon=None)
    await move(cases, fast, "in_progress", "completed")
    await move(cases, slow, "in_progress", "completed")
    await move(cases, rejected, "rejected")
    await set_times(redis, fast, created_ms=now - 10 * HOUR, done_ms=now - 8 * HOUR)
    await set_times(redis, slow, created_ms=now - 30 * HOUR, done_ms=now - 24 * HOUR)
    await set_times(redis, late, created_ms=now - 5 * HOUR, due_ms=now - HOUR)
    r = await case_reports.build(service)
    road = next(g for g in r.categories if g.key == "road_damage")
    assert (road.opened, road.completed, road.rejected, road.open_now) == (3, 2, 1, 0)
    assert road.median_hours_to_complete == 4.0  # 2 h and 6 h
    waste = next(g for g in r.categories if g.key == "waste_not_collected")
    assert (waste.opened, waste.open_now, waste.overdue_now) == (1, 1, 1)
    roads = next(g for g in r.units if g.key == "roads")
    assert (roads.opened, roads.completed, roads.open_now, roads.overdue_now) == (4, 2, 1, 0)
    assert r.total.opened == 5 and r.total.overdue_now == 1
    # categories without cases are listed with zeros
    assert next(g for g in r.categories if g.key == "fallen_trees").opened == 0
    # one point per open case with a location
    assert len(r.open_points) == 1 and r.open_points[0]["overdue"] is True
    # a range before everything: nothing opened or completed, open figures unchanged
    old = await case_reports.build(service, since_ms=0, until_ms=now - 100 * HOUR)
    assert (old.total.opened, old.total.completed, old.total.open_now) == (0, 0, 2)


# --- the map ----------------------------------------------------------------------------------


def test_map_draws_one_point_per_open_case_and_escapes_labels() -> None:
    points = [{"lat": LAT, "lon": LON, "category": "x", "label": "<script>alert(1)</script>",
               "overdue": False},
              {"lat": LAT + 0.01, "lon": LON + 0.02, "category": "x", "label": "ignored",
               "overdue": True},
              {"lat": LAT - 0.01, "lon": LON, "category": "y", "label": "Oświetlenie & co",
               "overdue": False}]
    svg = case_map(points)
    assert svg.count('<circle class="case-point') == 3
    assert svg.count('class="case-point overdue"') == 1
    assert "<script>" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "Oświetlenie &amp; co" in svg
    for cx, cy in re.findall(r'class="case-point[^"]*" cx="([\d.]+)" cy="([\d.]+)"', svg):
        assert 0 < float(cx) < 760 and 0 < float(cy) < 480
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # no tiles
    assert "No open cases" in case_map([])


# --- the pages --------------------------------------------------------------------------------


async def test_staff_page_csv_and_roles(api: ApiHarness, redis: aioredis.Redis) -> None:
    cases = api.service.cases
    one = await make(cases)
    await make(cases, "waste_not_collected", lat=LAT + 0.01, lon=LON + 0.01)
    await move(cases, one, "in_progress", "completed")
    sup = await api.session("maria", "supervisor")
    resp = await sup.client.get("/wall/cases")
    assert resp.status == 200
    text = await resp.text()
    assert 'id="by-category"' in text and 'id="by-unit"' in text
    assert text.count('<circle class="case-point') == 1
    resp = await sup.client.get("/wall/cases.csv?since=2020-01-01")
    assert resp.status == 200 and resp.content_type == "text/csv"
    table = list(csv.reader(io.StringIO(await resp.text())))
    assert table[0] == list(case_reports.COLUMNS)
    road = next(r for r in table if r[0] == "category" and r[1] == "road_damage")
    assert road[3:8] == ["1", "1", "0", "0", "0"]
    assert next(r for r in table if r[0] == "total")[3] == "2"
    assert (await sup.client.get("/wall/cases?since=nope")).status == 400
    assert (await sup.client.get("/wall/cases.csv?since=nope")).status == 400

    agent = await api.session("grzegorz.krawczyk", "agent", agent="grzegorz.krawczyk")
    assert (await agent.client.get("/wall/cases")).status == 403
    assert (await agent.client.get("/wall/cases.csv")).status == 403
    anon = await api.client()
    resp = await anon.get("/wall/cases", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login")
    assert (await anon.get("/wall/cases.csv")).status == 401


async def test_public_stats_without_personal_data(api: ApiHarness,
                                                  redis: aioredis.Redis) -> None:
    cases = api.service.cases
    first = await make(cases)
    await make(cases, "street_lighting", lat=LAT + 0.004, lon=LON - 0.003)
    anon = await api.client()
    resp = await anon.get("/stats/cases")
    assert resp.status == 200
    page = await resp.text()
    resp = await anon.get("/stats/cases.json")
    assert resp.status == 200
    raw = await resp.text()
    data = json.loads(raw)
    for text in (page, raw):
        for secret in (CONTACT, "jan.kowalski", DESCRIPTION, ADDRESS, "Piotrkowska",
                       first["number"], str(LAT), str(LON), "kierownik"):
            assert secret not in text
    assert page.count('<circle class="case-point') == 2
    assert {(p["lat"], p["lon"]) for p in data["open_cases"]} == {
        (round(LAT, 3), round(LON, 3)), (round(LAT + 0.004, 3), round(LON - 0.003, 3))}
    assert set(data["open_cases"][0]) == {"lat", "lon", "category", "overdue"}
    road = next(g for g in data["categories"] if g["key"] == "road_damage")
    assert road["opened"] == 1 and road["open_now"] == 1
    assert data["total"]["opened"] == 2
    assert (await anon.get("/stats/cases.json?until=x")).status == 400
