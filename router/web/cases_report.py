"""The city's case report for staff: GET /wall/cases (tables and the map) and
GET /wall/cases.csv, for ?since=YYYY-MM-DD&until=YYYY-MM-DD (days in the city's timezone;
default the last 30 days). Supervisors and admins only (agents 403)."""

from __future__ import annotations

from aiohttp import web

from router import case_reports
from router.auth import Principal
from router.case_reports import BadRange, day_of
from router.http.api import SERVICE_KEY
from router.http.app import json_error
from router.web.case_map import case_map
from router.web.case_report_texts import texts
from router.web.render import render
from router.web.session import STAFF, guard


async def _report(request: web.Request) -> case_reports.CaseReport:
    service = request.app[SERVICE_KEY]
    since, until = case_reports.parse_days(request.query.get("since", ""),
                                           request.query.get("until", ""),
                                           service.cfg.city.tzinfo())
    return await case_reports.build(service, since_ms=since, until_ms=until)


@guard(STAFF, "page")
async def cases_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    try:
        report = await _report(request)
    except BadRange as exc:
        return render("error.html", status=400, user=principal, message=str(exc))
    tz = request.app[SERVICE_KEY].cfg.city.tzinfo()
    return render("cases_report.html", user=principal, report=report, public=False,
                  lang="en", t=texts("en"), since=day_of(report.since_ms, tz),
                  until=day_of(report.until_ms, tz), timezone=str(tz),
                  map_svg=case_map(report.open_points))


@guard(STAFF, "data")
async def cases_csv(request: web.Request, principal: Principal) -> web.StreamResponse:
    try:
        report = await _report(request)
    except BadRange as exc:
        return json_error(400, "bad_request", str(exc))
    tz = request.app[SERVICE_KEY].cfg.city.tzinfo()
    name = f"cases-{day_of(report.since_ms, tz)}-{day_of(report.until_ms, tz)}.csv"
    return web.Response(text=case_reports.csv_text(report), content_type="text/csv",
                        charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    app.router.add_get("/wall/cases", cases_page, name="web.wall_cases")
    app.router.add_get("/wall/cases.csv", cases_csv, name="web.wall_cases_csv")
