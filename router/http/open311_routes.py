"""Open311 GeoReport v2 endpoints (/open311/v2/...), mapped to cases by `router.open311`.

| route                                   | who                     |
|-----------------------------------------|-------------------------|
| GET  /open311/discovery.{json,xml}      | anyone (Service Discovery) |
| GET  services.{json,xml}                | anyone                  |
| GET  services/{code}.{json,xml}         | anyone                  |
| POST requests.{json,xml}                | api_key of an intake or admin user (an API token) |
| GET  requests.{json,xml}                | anyone (public fields only) |
| GET  requests/{id}.{json,xml}           | anyone (public fields only) |

Errors are GeoReport's: a list of {code, description} (<errors><error>) with the HTTP status:
400 bad input, 403 missing or bad api_key, 404 unknown service or request. A new request is 201
Created (a 2xx, which is what GeoReport clients check). The api_key travels in the form body
only, so it is in neither the access log (which has no query strings anyway) nor any message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from router import open311
from router.auth import Auth, Role
from router.cases import NUMBER, Actor, CaseInput
from router.errors import CitylineError
from router.service import RoutingService

logger = logging.getLogger(__name__)

ROOT = "/open311"
PREFIX = f"{ROOT}/v2"
FMT = "{fmt:json|xml}"
SERVICE_KEY = web.AppKey("cityline_open311_service", RoutingService)
AUTH_KEY = web.AppKey("cityline_open311_auth", Auth)
STARTED_KEY = web.AppKey("cityline_open311_started", str)
MAX_BODY = 64 * 1024
DAY_MS = 86_400_000


def setup_open311(app: web.Application, service: RoutingService, auth: Auth) -> None:
    app[SERVICE_KEY] = service
    app[AUTH_KEY] = auth
    app[STARTED_KEY] = open311.iso(int(time.time() * 1000), service.cfg.city.tzinfo()) or ""
    app.router.add_get(f"{ROOT}/discovery.{FMT}", discovery)
    app.router.add_get(f"{PREFIX}/services.{FMT}", list_services)
    app.router.add_get(PREFIX + "/services/{code:[A-Za-z0-9_.-]+}." + FMT, service_definition)
    app.router.add_post(f"{PREFIX}/requests.{FMT}", post_request)
    app.router.add_get(f"{PREFIX}/requests.{FMT}", list_requests)
    app.router.add_get(PREFIX + "/requests/{id:[A-Za-z0-9_-]+}." + FMT, get_request)


def _answer(body: tuple[str, str], status: int = 200) -> web.Response:
    text, content_type = body
    return web.Response(text=text, status=status, content_type=content_type, charset="utf-8",
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                                 "Access-Control-Allow-Origin": "*"})


def _error(exc: open311.Open311Error, fmt: str) -> web.Response:
    return _answer(open311.render_error(exc.status, exc.description, fmt), exc.status)


def _lang(request: web.Request, service: RoutingService) -> str:
    return service.cfg.city.language(request.query.get("lang"))


def _base_url(request: web.Request, service: RoutingService) -> str:
    """The public address when configured (cases.public_url), else the one asked for."""
    public = service.cfg.cases.public_url.rstrip("/")
    return (public or f"{request.scheme}://{request.host}") + ROOT


async def discovery(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    data = open311.discovery(service.cfg, _base_url(request, service), request.app[STARTED_KEY])
    return _answer(open311.render_discovery(data, request.match_info["fmt"]))


async def list_services(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    fmt = request.match_info["fmt"]
    data = open311.services(service.cfg, _lang(request, service))
    return _answer(open311.render(data, fmt, "services", "service"))


async def service_definition(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    fmt = request.match_info["fmt"]
    code = request.match_info["code"]
    if code not in open311.service_codes(service.cfg):
        return _error(open311.Open311Error(404, f"unknown service_code {code!r}"), fmt)
    return _answer(open311.render_definition(code, fmt))


async def _caller(request: web.Request, form: dict[str, str]) -> Actor:
    key = form.get("api_key", "").strip()
    if not key:
        raise open311.Open311Error(403, "api_key is required")
    principal = await request.app[AUTH_KEY].from_token(key)
    if principal is None or principal.role not in (Role.intake, Role.admin):
        raise open311.Open311Error(403, "invalid api_key")
    return Actor.of(principal)


async def post_request(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    fmt = request.match_info["fmt"]
    try:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise open311.Open311Error(400, "request too large")
        try:
            raw = await request.post()
        except ValueError:
            raise open311.Open311Error(400, "send the request form-encoded") from None
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        actor = await _caller(request, form)
        new = open311.parse_request(service.cfg, form)
        cases = service.cases
        data = CaseInput(category=new.service_code, description=new.description,
                         address=new.address, lat=new.lat, lon=new.lon,
                         photos=(new.media_url,) if new.media_url else (), contact=new.contact)
        try:
            done = await cases.create_standalone(data, language=new.language, actor=actor,
                                                 channel="open311")
            found = await cases.find_duplicates(new.service_code, new.lat, new.lon,
                                                exclude=done.id)
        except CitylineError as exc:
            raise open311.Open311Error(400, exc.message) from None
    except open311.Open311Error as exc:
        return _error(exc, fmt)
    notice = f"Registered as {done.number}."
    if found:
        numbers = ", ".join(c["number"] for c in found[:5])
        notice += f" This may already be reported as {numbers}."
    logger.info("open311: %s created by %s", done.number, actor.name)
    return _answer(open311.render(open311.created_response(done.number, notice), fmt,
                                  "service_requests", "request"), 201)


async def _views(service: RoutingService, found: list[dict[str, str]],
                 lang: str) -> list[dict[str, Any]]:
    histories = await service.cases.histories(found)
    return [open311.request_view(c, histories[c["id"]], service.cfg, lang) for c in found]


async def get_request(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    fmt = request.match_info["fmt"]
    number = request.match_info["id"]
    try:
        case = await service.cases.get(number) if NUMBER.match(number) else None
    except CitylineError:
        case = None
    if case is None:
        return _error(open311.Open311Error(404, f"unknown service_request_id {number!r}"), fmt)
    data = await _views(service, [case], _lang(request, service))
    return _answer(open311.render(data, fmt, "service_requests", "request"))


async def list_requests(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    fmt = request.match_info["fmt"]
    q = request.query
    lang = _lang(request, service)
    try:
        ids = [s.strip() for s in q.get("service_request_id", "").split(",") if s.strip()]
        if ids:  # GeoReport: the other parameters are then ignored
            found = []
            for number in ids[:open311.MAX_LIST]:
                if not NUMBER.match(number):
                    continue
                try:
                    found.append(await service.cases.get(number))
                except CitylineError:
                    continue
            return _answer(open311.render(await _views(service, found, lang), fmt,
                                          "service_requests", "request"))
        tz = service.cfg.city.tzinfo()
        # GeoReport: the last 90 days by default; a start alone: the 90 days from it
        span = open311.DEFAULT_DAYS * DAY_MS
        start = (open311.parse_datetime(q["start_date"], "start_date", tz)
                 if q.get("start_date") else None)
        if q.get("end_date"):
            end = open311.parse_datetime(q["end_date"], "end_date", tz)
        else:
            end = start + span if start is not None else int(time.time() * 1000)
        if start is None:
            start = end - span
        if start > end:
            raise open311.Open311Error(400, "start_date is after end_date")
        status = q.get("status", "").strip()
        wanted = {s.strip() for s in status.split(",") if s.strip()}
        if wanted - {"open", "closed"}:
            raise open311.Open311Error(400, "status must be open or closed")
        codes = {s.strip() for s in q.get("service_code", "").split(",") if s.strip()}
    except open311.Open311Error as exc:
        return _error(exc, fmt)
    if not service.cfg.cases.enabled:
        return _answer(open311.render([], fmt, "service_requests", "request"))
    found = [c for c in await service.cases.created_between(start, end)
             if (not codes or c.get("category") in codes)
             and (not wanted or open311.status_of(c.get("status", "")) in wanted)]
    data = await _views(service, found[:open311.MAX_LIST], lang)
    return _answer(open311.render(data, fmt, "service_requests", "request"))
