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
wrap-up) is the JSON API's own endpoint, called by desktop.js with the session's CSRF token:
the API checks and records it like any other call.

The stream is event driven: `DesktopHub` (desktop_data.py) reads the event stream once per
process and wakes the streams of the agents an event concerns; each stream also refreshes
every `REFRESH_S` (delivery reports write no event) and pushes only when the view changed. It
re-checks the session at every push, so a logged-out agent stops receiving at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
from router.web.session import forbidden_page, guard, principal_of
from router.web.wall_data import label

logger = logging.getLogger(__name__)

HUB_KEY = web.AppKey("cityline_web_desktop_hub", DesktopHub)
STOP_KEY = web.AppKey("cityline_web_desktop_stop", asyncio.Event)

AGENTS = frozenset({Role.agent})
KEEPALIVE_S = 15.0
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
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must pass each event on at once
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    sub = hub.subscribe(agent_id)
    last_text, last_write = "", loop.time()
    logger.debug("desktop stream opened user=%s agent=%s", principal.username, agent_id)
    try:
        await response.write(b"retry: 2000\n\n")
        while not stop.is_set():
            sub.wake.clear()  # an event arriving while the view is read wakes the next round
            if not _same_agent(await principal_of(request), agent_id):
                await response.write(b'event: ended\ndata: {"reason": "session"}\n\n')
                break
            view = await _view(request, agent_id)
            sub.holds = {ix["id"] for ix in (*view["offers"], *view["work"])}
            # the clock alone changing is no news: countdowns run in the browser
            text = json.dumps({**view, "now_ms": 0}, separators=(",", ":"), ensure_ascii=False)
            if text != last_text:
                data = json.dumps(view, separators=(",", ":"), ensure_ascii=False)
                await response.write(f"event: view\ndata: {data}\n\n".encode())
                last_text, last_write = text, loop.time()
            elif loop.time() - last_write >= KEEPALIVE_S:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), REFRESH_S)
    except (ConnectionResetError, ConnectionError):
        pass  # the desktop was closed
    finally:
        hub.unsubscribe(sub)
        logger.debug("desktop stream closed user=%s", principal.username)
    return response


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
