"""The agent desktop: the page, one interaction's page, and the agent's own live view.

| route                          | what                                                          |
|--------------------------------|---------------------------------------------------------------|
| GET /agent                     | the desktop (state bar, offers, the interactions held)        |
| GET /agent/interaction/{ix_id} | the desktop opened on one interaction; 403 when another       |
|                                | agent holds it (or nobody does), 404 when there is none       |
| GET /agent/stream              | Server-Sent Events: `view` with this agent's view on change   |
| GET /agent/view.json           | the same view once (after an action, tests, no SSE)           |

Role agent only (an agent login names its agent id); supervisors and admins get 403 and use
the wall. Every action (sign in, ready, not ready, accept, reject, reply, hang up, transfer,
wrap-up, knowledge-base search, "answered from a card") is the JSON API's own endpoint, called
by desktop.js with the session's CSRF token: the API checks and records it like any other call.

The stream is event driven: `DesktopHub` (desktop_data.py) reads the event stream once per
process and wakes the streams of the agents an event concerns; each stream also refreshes
every `REFRESH_S` (delivery reports write no event) and pushes only when the view changed. It
re-checks the session at every push, so a logged-out agent stops receiving at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from router.auth import Principal, Role
from router.errors import Forbidden, NotFound
from router.http.api import ROUTES, SERVICE_KEY
from router.http.app import CONFIG_KEY, json_error
from router.web.desktop_data import (
    DEFAULT_DISPOSITIONS,
    REFRESH_S,
    DesktopHub,
    read_view,
)
from router.web.render import render
from router.web.session import forbidden_page, guard
from router.web.sse import serve_events
from router.web.wall_data import label

HUB_KEY = web.AppKey("cityline_web_desktop_hub", DesktopHub)
STOP_KEY = web.AppKey("cityline_web_desktop_stop", asyncio.Event)

AGENTS = frozenset({Role.agent})
HISTORY_PATH = "/interactions/{ix_id}/history"


def _api_url(path: str) -> str | None:
    for route in ROUTES:
        if route.path == path and route.method == "GET":
            return route.full_path
    return None


def _agent_id(principal: Principal) -> str:
    assert principal.agent_id is not None  # the auth layer gives role agent its agent id
    return principal.agent_id


def _desktop_config(request: web.Request, agent_id: str, focus: str) -> dict[str, Any]:
    """What desktop.js needs besides the live view: the choices of the forms, the API."""
    cfg = request.app[CONFIG_KEY]
    return {
        "agent": agent_id,
        "api": "/api/v1",
        "reasons": [
            {"code": c, "label": label(r.labels, cfg, c)}
            for c, r in cfg.reason_codes.items()
            if c != cfg.routing.miss_pause_reason  # given by the router, never chosen
        ],
        "dispositions": [{"code": c, "label": t} for c, t in DEFAULT_DISPOSITIONS],
        "queues": [
            {
                "name": n,
                "label": label(q.labels, cfg, n),
                "channel": str(q.channel),
                "wrapup_s": q.wrapup_s,
                "offer_timeout_s": q.offer_timeout_s,
            }
            for n, q in cfg.queues.items()
        ],
        "experts": [
            {"id": a_id, "name": a.name}
            for a_id, a in cfg.agents.items()
            if a.line == "second" and a_id != agent_id
        ],
        "history_url": _api_url(HISTORY_PATH),
        "focus": focus,
        "refresh_s": REFRESH_S,
        # the knowledge base's search form: languages and information topics to choose from
        "knowledge": {
            "languages": list(cfg.city.languages),
            "default_language": cfg.city.default_language,
            "topics": [
                {"id": n, "label": label(sk.labels, cfg, n)}
                for n, sk in cfg.skills.items()
                if sk.kind == "information"
            ],
        },
        # cases: the form on an interaction (first line), the unit's list (second line)
        "cases": _cases_config(cfg, agent_id),
    }


# How often the "my unit's cases" list is read again without a view push, seconds (a case
# event of the agent's units pushes the view at once: `cases_mark`, DesktopHub.unit_marks).
CASES_REFRESH_S = 15


def _cases_config(cfg: Any, agent_id: str) -> dict[str, Any] | None:
    """The case form's categories and units, and the units whose cases this agent works;
    None when cases are off (no units)."""
    cases = cfg.cases
    if not cases.units:
        return None
    return {
        "categories": [
            {"id": n, "label": label(sk.labels, cfg, n)}
            for n, sk in cfg.skills.items()
            if sk.kind == "intervention"
        ],
        "units": [
            {"id": u, "label": label(unit.labels, cfg, u)} for u, unit in cases.units.items()
        ],
        "my_units": [u for u, unit in cases.units.items() if agent_id in unit.members],
        "refresh_s": CASES_REFRESH_S,
    }


async def _view(request: web.Request, agent_id: str) -> dict[str, Any]:
    service = request.app[SERVICE_KEY]
    store = service.store
    return await read_view(store.redis, store.keys, request.app[CONFIG_KEY], agent_id)


async def _page(request: web.Request, principal: Principal, focus: str) -> web.StreamResponse:
    agent_id = _agent_id(principal)
    return render(
        "desktop.html",
        user=principal,
        csrf=principal.csrf_token,
        view=await _view(request, agent_id),
        config=_desktop_config(request, agent_id, focus),
    )


@guard(AGENTS, "page")
async def desktop_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    return await _page(request, principal, "")


@guard(AGENTS, "page")
async def interaction_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    ix_id = request.match_info["ix_id"]
    try:
        await request.app[SERVICE_KEY].interaction_for(_agent_id(principal), ix_id)
    except Forbidden:
        return forbidden_page(principal, request.path)
    except NotFound:
        return render("desktop_error.html", status=404, user=principal,
                      message=f"There is no interaction {ix_id[:64]}.")  # fmt: skip
    return await _page(request, principal, ix_id)


@guard(AGENTS, "data")
async def view_json(request: web.Request, principal: Principal) -> web.StreamResponse:
    view = await _view(request, _agent_id(principal))
    return web.json_response(view, headers={"Cache-Control": "no-store"})


def _same_agent(now: Principal | None, agent_id: str) -> bool:
    return now is not None and now.role in AGENTS and now.agent_id == agent_id


@guard(AGENTS, "data")
async def desktop_stream(request: web.Request, principal: Principal) -> web.StreamResponse:
    agent_id = _agent_id(principal)
    hub, stop = request.app[HUB_KEY], request.app[STOP_KEY]
    if stop.is_set():
        return json_error(503, "unavailable", "the server is stopping")
    sub = hub.subscribe(agent_id)

    async def read() -> tuple[str, str]:
        view = await _view(request, agent_id)
        sub.holds = {ix["id"] for ix in (*view["offers"], *view["work"])}
        # read each round: an admin may change who belongs to a unit
        sub.units = set(request.app[SERVICE_KEY].cases.units_of(agent_id))
        view["cases_mark"] = hub.cases_mark(sub.units)
        # the clock alone changing is no news: countdowns run in the browser
        key = json.dumps({**view, "now_ms": 0}, separators=(",", ":"), ensure_ascii=False)
        return key, json.dumps(view, separators=(",", ":"), ensure_ascii=False)

    async def wait() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.wake.wait(), REFRESH_S)
        sub.wake.clear()  # an event arriving while the view is read wakes the next round

    try:
        return await serve_events(
            request, principal, what=f"desktop (agent {agent_id})", event="view", stop=stop,
            allowed=lambda now: _same_agent(now, agent_id), read=read, wait=wait,
        )  # fmt: skip
    finally:
        hub.unsubscribe(sub)


# --- registration ------------------------------------------------------------------------------


async def _stop_streams(app: web.Application) -> None:
    app[STOP_KEY].set()
    await app[HUB_KEY].close()


def setup(app: web.Application) -> None:
    store = app[SERVICE_KEY].store
    app[HUB_KEY] = DesktopHub(store.redis, store.keys)
    app[STOP_KEY] = asyncio.Event()
    app.on_shutdown.append(_stop_streams)
    app.router.add_get("/agent", desktop_page, name="web.desktop")
    app.router.add_get("/agent/interaction/{ix_id}", interaction_page,
                       name="web.desktop_interaction")  # fmt: skip
    app.router.add_get("/agent/stream", desktop_stream, name="web.desktop_stream")
    app.router.add_get("/agent/view.json", view_json, name="web.desktop_view")
