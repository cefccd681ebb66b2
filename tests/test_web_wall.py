"""The supervisor wall's data: the live payload and its stream, off-target colouring, the
supervisor's actions (through the API, recorded as events), the report and its CSV (the same
figures as `cityline stats`)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import sys
from datetime import datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router.config import CitylineConfig
from router.dispatcher import Dispatcher
from router.service import RoutingService
from router.stats import (
    AgentCounts,
    AgentFigures,
    AgentLive,
    LiveSnapshot,
    QueueFigures,
    QueueLive,
    Staffing,
    StatsAggregator,
)
from router.web.wall_data import build_payload, read_waiting
from tests.api_helpers import ApiHarness, Session
from tests.routing_fixtures import CONFIG, call, events, ready

ROOT = CONFIG.parent.parent


async def supervisor(h: ApiHarness) -> Session:
    return await h.session("maria", "supervisor")


def tile(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in payload["queues"] if q["name"] == name)


def agent(payload: dict[str, Any], agent_id: str) -> dict[str, Any]:
    return next(a for a in payload["agents"] if a["id"] == agent_id)


# --- the payload -------------------------------------------------------------------------------


def _queue(today: dict[str, int], interval: dict[str, int], **kw: Any) -> QueueLive:
    base: dict[str, Any] = dict(
        name="voice", channel="voice", waiting=3, longest_wait_s=42.0,
        agents=AgentCounts(ready=1, busy=1, paused=2, offline=0),
        today=QueueFigures.from_counters(today), interval=QueueFigures.from_counters(interval),
        staffing=Staffing(arrival_rate_per_h=30, erlang_c_agents=3, erlang_a_agents=2),
        target_pct=80, threshold_s=20, abandon_target_pct=5,
    )  # fmt: skip
    return QueueLive(**(base | kw))


def test_tiles_are_coloured_against_the_targets(cfg: CitylineConfig) -> None:
    good = {"offered": 10, "answered": 10, "answered_within_sl": 9, "wait_sum_answered_ms": 50_000}
    bad = {"offered": 10, "answered": 6, "answered_within_sl": 3, "abandoned": 4,
           "abandoned_after_sl": 3}  # fmt: skip
    snapshot = LiveSnapshot(
        now_ms=1_000_000, day="2026-01-01", interval_start_ms=900_000,
        queues=[_queue(good, bad)], channels=[], total=QueueFigures(),
        agents=[AgentLive(id="a1", name="Anna", state="ready", state_s=125.0,
                          load={"voice": 1, "chat": 0}, handled_today=4, today=AgentFigures()),
                AgentLive(id="a2", name="Bartek", state="not_ready", reason="break",
                          state_s=5.0, load={}, handled_today=0, today=AgentFigures())],
    )  # fmt: skip
    payload = build_payload(snapshot, [], cfg)
    t = tile(payload, "voice")
    assert t["fields"]["waiting"] == "3" and t["fields"]["longest_wait"] == "42.0s"
    assert t["fields"]["today_sl"] == "90.0%" and t["states"]["today_sl"] == "ok"
    assert t["fields"]["interval_sl"] == "33.3%" and t["states"]["interval_sl"] == "off"
    assert t["states"]["today_abandon"] == "ok"  # 0 % against 5 %
    assert t["fields"]["interval_abandon"] == "40.0%" and t["states"]["interval_abandon"] == "off"
    assert t["fields"]["asa"] == "5.0s"
    # 2 signed in (ready + busy) against 3 needed by Erlang C
    assert t["fields"]["erlang_c"] == "3" and t["states"]["staffing"] == "off"
    assert t["fields"]["sl_target"] == "80% in 20 s"
    a1, a2 = agent(payload, "a1"), agent(payload, "a2")
    assert a1["state"] == "busy" and a1["raw_state"] == "ready"
    assert a1["fields"]["current"] == "voice 1" and a1["fields"]["time_in_state"] == "2:05"
    assert a1["fields"]["handled"] == "4"
    assert a2["state"] == "paused" and a2["fields"]["reason"] == "Przerwa"  # city language
    # no data is not "on target"
    empty = build_payload(snapshot.model_copy(update={"queues": [_queue({}, {})]}), [], cfg)
    assert tile(empty, "voice")["states"]["today_sl"] == "none"
    assert tile(empty, "voice")["fields"]["today_sl"] == "-"


def test_tiles_show_first_contact_resolution_and_the_knowledge_base(
    cfg: CitylineConfig,
) -> None:
    today = {"handled": 8, "first_contact_resolved": 6, "kb_resolved": 3}
    interval = {"handled": 2, "first_contact_resolved": 1}
    total = QueueFigures.from_counters(today)
    snapshot = LiveSnapshot(
        now_ms=1_000_000, day="2026-01-01", interval_start_ms=900_000,
        queues=[_queue(today, interval)], channels=[], total=total, agents=[],
    )  # fmt: skip
    payload = build_payload(snapshot, [], cfg)
    f = tile(payload, "voice")["fields"]
    assert (f["today_fcr"], f["today_kb"], f["today_kb_share"], f["today_kb_rate"]) == (
        "75.0%", "3", "50.0%", "37.5%")
    assert (f["interval_fcr"], f["interval_kb"], f["interval_kb_share"]) == ("50.0%", "0", "0.0%")
    assert (payload["total"]["kb"], payload["total"]["kb_share"]) == ("3", "50.0%")
    empty = build_payload(snapshot.model_copy(update={"queues": [_queue({}, {})]}), [], cfg)
    assert tile(empty, "voice")["fields"]["today_kb_share"] == "-"  # no data, not 0 %


async def test_the_wall_page_has_the_knowledge_base_row(h: ApiHarness) -> None:
    sup = await supervisor(h)
    html = await (await sup.client.get("/wall")).text()
    for field in ("today_fcr", "today_kb", "today_kb_share", "interval_kb"):
        assert f'data-f="{field}"' in html
    report = await (await sup.client.get("/wall/report")).text()
    assert "<th>KB</th>" in report and "<th>KB/FCR</th>" in report


async def test_waiting_list_orders_by_priority_then_wait(
    redis: aioredis.Redis, service: RoutingService
) -> None:
    first = await call(service, "voice")
    await asyncio.sleep(0.002)
    second = await call(service, "voice", priority=5)
    await call(service, "chat", channel="chat")
    rows = await read_waiting(redis, Keys(), ["voice", "chat"])
    assert [r["id"] for r in rows[:2]] == [second, first]
    assert rows[2]["queue"] == "chat"
    assert len(await read_waiting(redis, Keys(), ["voice"], per_queue=1)) == 1


# --- data and stream ---------------------------------------------------------------------------


async def test_data_follows_the_routing_state(h: ApiHarness, service: RoutingService) -> None:
    sup = await supervisor(h)
    payload = await (await sup.client.get("/wall/data.json")).json()
    assert tile(payload, "voice")["fields"]["waiting"] == "0"
    assert agent(payload, "a1")["state"] == "offline"
    ix_id = await call(service, "voice", subject="Pothole <b>Długa</b>")
    await service.agent_login("a1", ready=True)
    await asyncio.sleep(1.0)  # the feed is shared for up to 0.9 s
    payload = await (await sup.client.get("/wall/data.json")).json()
    assert tile(payload, "voice")["fields"]["waiting"] == "1"
    assert agent(payload, "a1")["state"] == "ready"
    [row] = payload["waiting"]
    assert row["id"] == ix_id and row["fields"]["subject"] == "Pothole <b>Długa</b>"


async def read_events(resp: Any, want: int, within_s: float = 10.0) -> list[tuple[str, Any]]:
    """The first `want` named events of an SSE response."""
    out: list[tuple[str, Any]] = []
    name, data = "", ""
    async with asyncio.timeout(within_s):
        while len(out) < want:
            line = (await resp.content.readline()).decode()
            if line.startswith("event: "):
                name = line[7:].strip()
            elif line.startswith("data: "):
                data = line[6:].strip()
            elif line == "\n" and name:
                out.append((name, json.loads(data)))
                name, data = "", ""
            elif not line:
                break
    return out


async def test_stream_pushes_changes_live(h: ApiHarness, service: RoutingService) -> None:
    sup = await supervisor(h)
    resp = await sup.client.get("/wall/stream")
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    [(name, payload)] = await read_events(resp, 1)
    assert name == "snapshot" and tile(payload, "voice")["fields"]["waiting"] == "0"
    await call(service, "voice")
    async with asyncio.timeout(10):
        while tile(payload, "voice")["fields"]["waiting"] != "1":
            [(name, payload)] = await read_events(resp, 1)
    resp.close()


async def test_stream_ends_when_the_session_ends(h: ApiHarness) -> None:
    sup = await supervisor(h)
    resp = await sup.client.get("/wall/stream")
    await read_events(resp, 1)
    assert (await sup.post("/auth/logout")).status == 200
    events_ = await read_events(resp, 1)
    assert events_ == [("ended", {"reason": "session"})]
    assert await resp.content.read() == b""  # the server closed it


# --- supervisor actions (the API the wall's script calls) ----------------------------------------


async def test_wall_actions_are_recorded_as_events(
    h: ApiHarness, service: RoutingService, redis: aioredis.Redis
) -> None:
    sup = await supervisor(h)
    html = await (await sup.client.get("/wall")).text()
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert csrf and csrf.group(1) == sup.csrf  # the page's token is the session's
    # change an agent's state: log in an offline agent paused, then make it ready
    resp = await sup.post("/agents/a2/login", {"ready": False, "reason": "break"})
    assert resp.status == 200, await resp.text()
    resp = await sup.put("/agents/a2/state", {"state": "ready", "reason": None})
    assert resp.status == 200, await resp.text()
    # move a waiting interaction to another queue of its channel
    ix_id = await call(service, "voice-esc")
    resp = await sup.post(
        f"/interactions/{ix_id}/transfer", {"queue": "voice", "keep_position": True}
    )
    assert resp.status == 200, await resp.text()
    recorded = [
        (e.type, e.agent, e.queue)
        for e in await events(redis, "ADDMEMBER", "UNPAUSE", "PAUSE", "TRANSFER")
    ]
    assert ("TRANSFER", "", "voice-esc") in recorded
    assert any(t == "ADDMEMBER" and a == "a2" for t, a, _ in recorded)
    assert (await h.ix(ix_id))["queue"] == "voice"
    # without the CSRF header the same action is refused
    resp = await sup.put("/agents/a2/state", {"state": "offline"}, csrf=False)
    assert resp.status == 403


# --- report and CSV: the same figures as `cityline stats` -----------------------------------------


async def _traffic(service: RoutingService, dispatcher: Dispatcher) -> None:
    """One answered and completed call, one abandoned, one waiting."""
    answered = await call(service, "voice")
    await ready(service, "a1")
    assert await dispatcher.match_round() == 1
    await service.accept("a1", answered)
    await service.complete("a1", answered)
    left = await call(service, "voice")
    await service.resident_left(left)
    await call(service, "chat", channel="chat")


async def test_report_and_csv_match_cityline_stats(
    h: ApiHarness, service: RoutingService, dispatcher: Dispatcher, redis: aioredis.Redis,
    redis_url: str, cfg: CitylineConfig,
) -> None:  # fmt: skip
    await _traffic(service, dispatcher)
    agg = StatsAggregator(redis, Keys(), cfg)
    while await agg.fold_once():
        pass
    sup = await supervisor(h)
    day = (await (await sup.client.get("/wall/data.json")).json())["day"]

    page = await sup.client.get(f"/wall/report?day={day}&scope=queue:voice")
    assert page.status == 200
    html = await page.text()
    assert html.count("<svg") == 3 and "queue:voice" in html

    resp = await sup.client.get(f"/wall/report.csv?day={day}")
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert f"cityline-intervals-{day}.csv" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    active = [r for r in rows if int(r["offered"]) or int(r["answered"]) or int(r["handled"])]

    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "stats", "--config", str(CONFIG), "--redis-url",
        redis_url, "--day", day, "--by", "interval", "--format", "json",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    intervals = json.loads(out)["intervals"]
    assert intervals, "the CLI saw traffic"
    by_scope = {(r["kind"], r["name"], r["interval_start_ms"]): r["figures"] for r in intervals}
    assert len(active) == len(by_scope)
    for row in active:
        ms = int(datetime.fromisoformat(row["interval_start"]).timestamp() * 1000)
        figures = by_scope[(row["kind"], row["name"], ms)]
        for name in ("offered", "answered", "abandoned", "handled", "service_level",
                     "abandonment_rate", "asa_s", "aht_s", "fcr_rate", "kb_resolved",
                     "kb_rate", "kb_fcr_share"):  # fmt: skip
            expected = figures[name]
            got = row[name]
            assert (got == "" and expected is None) or float(got) == pytest.approx(expected), (
                name, row, figures,
            )  # fmt: skip
    voice = [r for r in active if r["kind"] == "queue" and r["name"] == "voice"]
    assert sum(int(r["offered"]) for r in voice) == 2
    assert sum(int(r["answered"]) for r in voice) == 1

    only = await sup.client.get(f"/wall/report.csv?day={day}&scope=channel:chat")
    chat_rows = list(csv.DictReader(io.StringIO(await only.text())))
    assert {(r["kind"], r["name"]) for r in chat_rows} == {("channel", "chat")}


async def test_report_rejects_bad_input(h: ApiHarness) -> None:
    sup = await supervisor(h)
    assert (await sup.client.get("/wall/report?day=yesterday-ish")).status == 400
    resp = await sup.client.get("/wall/report.csv?scope=queue:nope")
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_request"
    assert (await sup.client.get("/wall/chart/pie.svg")).status == 404
    svg = await sup.client.get("/wall/chart/volume.svg?scope=queue:voice")
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
