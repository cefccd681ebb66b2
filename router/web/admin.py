"""The admin page (/admin): agents, queues and users, changed at run time.

| route      | who                          | what                                               |
|------------|------------------------------|----------------------------------------------------|
| GET /admin | admin                        | agents, queues and users with edit forms           |
|            | supervisor                   | the agents and queues, read only (no users)        |
|            | agent, intake                | 403                                                |

The page is a frame: admin.js reads the lists from the JSON API (/api/v1/admin/...) and sends
every change there with the session's CSRF token, so the API's validation (the configuration's
own models and cross-checks) and its role checks are the only ones; a refused change shows each
problem next to its field. Changes apply in every process without a restart
(router/directory.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.auth import Principal, Role
from router.http.app import CONFIG_KEY
from router.models import DEFAULT_CAPACITY, Channel
from router.web.render import render
from router.web.session import STAFF, guard
from router.web.wall_data import label

STRATEGIES = ("longest_idle", "least_occupied", "best_skilled", "round_robin")
ROLES = ("agent", "supervisor", "admin", "intake")


def _page_config(request: web.Request, principal: Principal) -> dict[str, Any]:
    cfg = request.app[CONFIG_KEY]
    return {
        "api": "/api/v1",
        "me": principal.username,
        "can_edit": principal.role == Role.admin,
        "skills": [
            {"name": n, "label": label(s.labels, cfg, n), "kind": s.kind}
            for n, s in cfg.skills.items()
        ],
        "channels": [str(c) for c in Channel],
        "default_capacity": {str(c): n for c, n in DEFAULT_CAPACITY.items()},
        "strategies": list(STRATEGIES),
        "roles": list(ROLES),
    }


@guard(STAFF, "page")
async def admin_page(request: web.Request, principal: Principal) -> web.StreamResponse:
    config = _page_config(request, principal)
    return render("admin.html", user=principal, csrf=principal.csrf_token, config=config,
                  can_edit=config["can_edit"])  # fmt: skip


def setup(app: web.Application) -> None:
    app.router.add_get("/admin", admin_page, name="web.admin")
