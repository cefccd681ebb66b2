"""The web pages people work in: login, the supervisor wall and the agent desktop.

Server-rendered jinja2 templates (`templates/`), small dependency-free scripts and one
stylesheet (`static/`), charts drawn as SVG on the server (`charts.py`); nothing is fetched
from the internet, so the pages work on a city's closed network.

Modules: `pages` (login, logout, home, `setup_web`), `session` (who is looking, the `guard`
for pages and data endpoints), `render` (templates, static files, security headers), `wall`
(the supervisor wall's routes), `wall_data` (its live payload), `report` (the interval report
and CSV), `charts` (SVG), `desktop` (the agent desktop's routes: /agent, its stream),
`desktop_data` (one agent's own view, and the event-stream reader that wakes open desktops).

Adding a page: a module with `setup(app)` registering its routes (the desktop's page is named
"web.desktop": agents land there after logging in), handlers wrapped in
`session.guard({Role.agent, ...}, "page")`, a template extending `base.html`, its script under
`static/`; call its `setup` from `pages.setup_web`. Its actions call the JSON API with the
session's CSRF token (`principal.csrf_token`, rendered into `<meta name="csrf-token">`).
"""

from __future__ import annotations

from router.web.pages import setup_web

__all__ = ["setup_web"]
