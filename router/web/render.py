"""Templates, static files and the security headers every page carries.

Pages are jinja2 templates with autoescaping always on (data can never become markup); the
scripts are plain files under /static/web/, so the Content-Security-Policy can forbid every
inline script and style. Static URLs carry a digest of the file (`?v=...`): a browser that
cached yesterday's wall.js fetches the new one after an upgrade.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined

STATIC_PREFIX = "/static/web"
STATIC_DIR = Path(str(resources.files("router.web") / "static"))

# What a page may load: only our own scripts, styles, images (the charts) and connections (the
# API, the live stream). No inline script or style, no framing (clickjacking of the supervisor
# actions), forms only to ourselves.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # pages show residents' contacts and carry the CSRF token: no cache may keep them
    "Cache-Control": "no-store",
}

_env = Environment(
    loader=PackageLoader("router.web", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@cache
def static_url(name: str) -> str:
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"{STATIC_PREFIX}/{name}?v={digest}"


_env.globals["static_url"] = static_url


def render(template: str, status: int = 200, **context: Any) -> web.Response:
    html = _env.get_template(template).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8",
        headers=PAGE_HEADERS,
    )  # fmt: skip


def setup_static(app: web.Application) -> None:
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="web.static", append_version=False)
