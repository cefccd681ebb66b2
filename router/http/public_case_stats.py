"""The city's case statistics for anyone: GET /stats/cases (HTML) and
GET /stats/cases.json (JSON), no login, ?since=&until= (YYYY-MM-DD, local days;
default the last 30 days) and ?lang= (the city's languages; labels and the page's words).

Counts and medians per category and per unit, and a map of open cases whose places are rounded
to ~100 m (`PUBLIC_DECIMALS`, like the public case page). Nothing personal: no description,
contact, name, case number or address — only what `case_reports.public_dict` gives.

The JSON is not under /api/v1: every /api/v1 route is one of the documented table's
(router/http/api/routes.py, checked against the OpenAPI document by tests/test_openapi.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from router import case_reports
from router.case_reports import BadRange, day_of
from router.cases import PUBLIC_DECIMALS
from router.http.app import json_error
from router.service import RoutingService

PAGE_PATH = "/stats/cases"
JSON_PATH = "/stats/cases.json"
SERVICE_KEY = web.AppKey("cityline_public_case_stats_service", RoutingService)
CACHE_TTL_S = 60.0  # the page says figures may be a minute old
CACHE_SIZE = 32


def setup_public_case_stats(app: web.Application, service: RoutingService) -> None:
    app[SERVICE_KEY] = service
    app[CACHE_KEY] = ReportCache()
    app.router.add_get(PAGE_PATH, stats_page, name="public.case_stats")
    app.router.add_get(JSON_PATH, stats_json, name="public.case_stats_json")


def _lang(request: web.Request) -> str:
    return request.app[SERVICE_KEY].cfg.city.language(request.query.get("lang"))


class ReportCache:
    """The public figures of the last few (since, until, lang) asked, for `ttl_s`: a report
    reads every case and its history (bench/cases.py: ~1.7 s for 30,000 cases), and this page
    needs no login, so a burst of visitors (or a script) must cost one computation, not one
    each. One computation at a time; a visitor who waited for it gets its result."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, size: int = CACHE_SIZE) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: dict[tuple[Any, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()
        self.computed = 0

    def clear(self) -> None:
        """Forget every kept report (the next visitor gets fresh figures)."""
        self._entries.clear()

    async def get(self, key: tuple[Any, ...],
                  compute: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        async with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > loop.time():
                return hit[1]
            data = await compute()
            self.computed += 1
            self._entries = {k: v for k, v in self._entries.items() if v[0] > loop.time()}
            while len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (loop.time() + self.ttl_s, data)
            return data


CACHE_KEY = web.AppKey("cityline_public_case_stats_cache", ReportCache)


async def _public(request: web.Request) -> dict[str, Any]:
    service = request.app[SERVICE_KEY]
    since, until = case_reports.parse_days(request.query.get("since", ""),
                                           request.query.get("until", ""),
                                           service.cfg.city.tzinfo())
    lang = _lang(request)

    async def compute() -> dict[str, Any]:
        report = await case_reports.build(service, since_ms=since, until_ms=until, lang=lang)
        return case_reports.public_dict(report, PUBLIC_DECIMALS)

    # the default range ends "now": cached by its days, like an explicit one
    return await request.app[CACHE_KEY].get((since, until, lang), compute)


async def stats_json(request: web.Request) -> web.Response:
    try:
        data = await _public(request)
    except BadRange as exc:
        return json_error(400, "bad_request", str(exc))
    return web.json_response(data, headers={"Cache-Control": "public, max-age=300"})


async def stats_page(request: web.Request) -> web.StreamResponse:
    # router.web imports router.http.api, which registers this module: import it late
    from router.web.case_map import case_map
    from router.web.case_report_texts import texts
    from router.web.render import render

    try:
        data = await _public(request)
    except BadRange as exc:
        return json_error(400, "bad_request", str(exc))
    city = request.app[SERVICE_KEY].cfg.city
    lang = _lang(request)
    t = texts(lang)
    tz = city.tzinfo()
    labels = {g["key"]: g["label"] for g in data["categories"]}
    points = [{**p, "label": labels.get(p["category"], p["category"])}
              for p in data["open_cases"]]
    return render("cases_report.html", report=data, public=True, lang=lang, t=t,
                  languages=city.languages, since=day_of(data["since_ms"], tz),
                  until=day_of(data["until_ms"], tz), timezone=str(tz),
                  map_svg=case_map(points, title=t["map_title"], empty=t["map_empty"],
                                   overdue=t["overdue"]))
