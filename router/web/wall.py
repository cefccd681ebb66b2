"""The supervisor wall: the page, its live stream, the charts, the interval report and CSV.

| route                         | what                                                         |
|-------------------------------|--------------------------------------------------------------|
| GET /wall                     | the wall page (tiles, agent grid, waiting list, charts)      |
| GET /wall/stream              | Server-Sent Events: `snapshot` with the wall payload, ~1 s   |
| GET /wall/data.json           | the same payload once (scripts, tests, a wall without SSE)   |
| GET /wall/chart/{kind}.svg    | volume, service_level or waits for ?day=&scope=              |
| GET /wall/report              | the interval report of ?day= (and ?scope=) with the charts   |
| GET /wall/report.csv          | every interval of ?day= as CSV (all scopes, or ?scope= one)  |

Supervisors and admins only (agents get 403). Supervisor actions (an agent's state, moving a
waiting interaction) are the JSON API's own endpoints, called by wall.js with the session's
CSRF token, so they are checked and recorded as events exactly like any API call.

The stream re-checks the session at every push (two Redis reads): a supervisor who logs out,
is removed or loses the role stops receiving at once. It ends when the server shuts down
(`on_shutdown` sets the stop event before aiohttp waits for open handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import date
from typing import Any

from aiohttp import web

from router.auth import Principal
from router.http.api import ROUTES
from router.http.api.supervision import STATS_KEY
from router.http.app import CONFIG_KEY, json_error
from router.stats import StatsAggregator, local_day
from router.web import charts
from router.web.render import render
from router.web.report import (
    QUEUE_COLUMNS,
    BadScope,
    Scope,
    chart_data,
    csv_text,
    parse_scope,
    report_rows,
    table_rows,
    totals_rows,
)
from router.web.session import STAFF, guard
from router.web.sse import serve_events
from router.web.wall_data import WallFeed, label

FEED_KEY = web.AppKey("cityline_web_wall_feed", WallFeed)
STOP_KEY = web.AppKey("cityline_web_wall_stop", asyncio.Event)

PUSH_S = 1.0
# the API route a "raise priority" button would call, when the API offers one (see README)
PRIORITY_PATH = "/interactions/{ix_id}/priority"
CHART_KINDS = ("volume", "service_level", "waits")


def _agg(request: web.Request) -> StatsAggregator:
    return request.app[STATS_KEY]


def _channels(request: web.Request) -> list[str]:
    cfg = request.app[CONFIG_KEY]
    return list(dict.fromkeys(str(q.channel) for q in cfg.queues.values()))


def _priority_url() -> str | None:
    for route in ROUTES:
        if route.path == PRIORITY_PATH:
            return route.full_path
    return None


def _wall_config(request: web.Request, principal: Principal) -> dict[str, Any]:
    """What wall.js needs besides the live payload: queues to move to, reasons, the API."""
    cfg = request.app[CONFIG_KEY]
    return {
        "queues": [
            {"name": n, "label": label(q.labels, cfg, n), "channel": str(q.channel)}
            for n, q in cfg.queues.items()
        ],
        "reasons": [
            {"code": c, "label": label(r.labels, cfg, c)} for c, r in cfg.reason_codes.items()
        ],
        "api": "/api/v1",
        "priority_url": _priority_url(),
        "push_s": PUSH_S,
        "user": principal.username,
    }


def _scope_options(request: web.Request) -> list[tuple[str, str]]:
    cfg = request.app[CONFIG_KEY]
    return [
        ("all", "All queues"),
        *((f"channel:{c}", f"Channel {c}") for c in _channels(request)),
        *((f"queue:{n}", f"Queue {label(q.labels, cfg, n)}") for n, q in cfg.queues.items()),
    ]


class BadRequest(Exception):
    pass


async def _day_and_scope(request: web.Request) -> tuple[date, Scope]:
    agg = _agg(request)
    text = request.query.get("day", "")
    if text in ("", "today"):
        day = local_day(await agg.store.now_ms(), agg.tz)
    else:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadRequest(f"day: expected YYYY-MM-DD, got {text[:20]!r}") from None
    try:
        scope = parse_scope(
            request.query.get("scope"), list(request.app[CONFIG_KEY].queues), _channels(request)
        )
    except BadScope as exc:
        raise BadRequest(str(exc)) from None
    return day, scope


# --- the page and its live data ---------------------------------------------------------------


@guard(STAFF, "page")
async def wall_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    payload = await request.app[FEED_KEY].get()
    return render(
        "wall.html",
        user=principal,
        csrf=principal.csrf_token,
        payload=payload,
        config=_wall_config(request, principal),
        scopes=_scope_options(request),
        reasons=request.app[CONFIG_KEY].reason_codes,
    )


@guard(STAFF, "data")
async def wall_data(request: web.Request, principal: Principal) -> web.StreamResponse:
    payload = await request.app[FEED_KEY].get()
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


def _still_allowed(principal: Principal | None) -> bool:
    return principal is not None and principal.role in STAFF


@guard(STAFF, "data")
async def wall_stream(request: web.Request, principal: Principal) -> web.StreamResponse:
    feed, stop = request.app[FEED_KEY], request.app[STOP_KEY]

    async def read() -> tuple[str, str]:
        text = json.dumps(await feed.get(), separators=(",", ":"), ensure_ascii=False)
        return text, text

    async def wait() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PUSH_S)

    return await serve_events(
        request, principal, what="wall", event="snapshot", stop=stop, allowed=_still_allowed,
        read=read, wait=wait,
    )  # fmt: skip


# --- charts and the report ----------------------------------------------------------------------


def _bad(exc: Exception) -> web.Response:
    return json_error(400, "bad_request", str(exc))


def _target_pct(request: web.Request, scope: Scope) -> float | None:
    cfg = request.app[CONFIG_KEY]
    if scope.kind == "queue":
        return cfg.queues[scope.name].service_level.target_pct
    return None  # a channel or the centre mixes queues with different targets


async def _charts(request: web.Request, day: date, scope: Scope) -> dict[str, str]:
    agg = _agg(request)
    rows = await report_rows(agg, day, scope)
    now = await agg.store.now_ms()
    upto = now if local_day(now, agg.tz) == day else None
    data = chart_data(rows, agg.tz, upto)
    return {
        "volume": charts.volume_chart(data.volume),
        "service_level": charts.service_level_chart(
            data.service_level, _target_pct(request, scope)
        ),
        "waits": charts.wait_histogram(data.waits),
    }


@guard(STAFF, "data")
async def chart_svg(request: web.Request, principal: Principal) -> web.StreamResponse:
    kind = request.match_info["kind"]
    if kind not in CHART_KINDS:
        return json_error(404, "not_found", f"no chart {kind!r}")
    try:
        day, scope = await _day_and_scope(request)
    except BadRequest as exc:
        return _bad(exc)
    svg = (await _charts(request, day, scope))[kind]
    return web.Response(
        text=svg, content_type="image/svg+xml",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "default-src 'none'"},
    )  # fmt: skip


@guard(STAFF, "page")
async def report_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    try:
        day, scope = await _day_and_scope(request)
    except BadRequest as exc:
        return render("error.html", status=400, user=principal, message=str(exc))
    agg = _agg(request)
    rows = await report_rows(agg, day, scope)
    return render(
        "report.html",
        user=principal,
        csrf=principal.csrf_token,
        day=day.isoformat(),
        scope=scope.param,
        scopes=_scope_options(request),
        timezone=agg.cfg.city.timezone,
        columns=QUEUE_COLUMNS,
        totals=totals_rows(await agg.day_report(day), scope),
        intervals=table_rows(rows, agg.tz),
        charts=await _charts(request, day, scope),
    )


@guard(STAFF, "data")
async def report_csv(request: web.Request, principal: Principal) -> web.StreamResponse:
    try:
        day, scope = await _day_and_scope(request)
    except BadRequest as exc:
        return _bad(exc)
    agg = _agg(request)
    rows = await report_rows(agg, day, None if request.query.get("scope") is None else scope)
    name = f"cityline-intervals-{day.isoformat()}"
    if scope.kind != "all":
        name += f"-{scope.kind}-{scope.name}"
    return web.Response(
        text=csv_text(rows, agg.tz), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip


# --- registration ------------------------------------------------------------------------------


async def _stop_streams(app: web.Application) -> None:
    app[STOP_KEY].set()


def setup(app: web.Application) -> None:
    app[FEED_KEY] = WallFeed(app[STATS_KEY])
    app[STOP_KEY] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/wall", wall_page, name="web.wall")
    app.router.add_get("/wall/stream", wall_stream, name="web.wall_stream")
    app.router.add_get("/wall/data.json", wall_data, name="web.wall_data")
    app.router.add_get("/wall/chart/{kind}.svg", chart_svg, name="web.wall_chart")
    app.router.add_get("/wall/report", report_page, name="web.wall_report")
    app.router.add_get("/wall/report.csv", report_csv, name="web.wall_report_csv")
