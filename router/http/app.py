"""Build the aiohttp application: typed app state, the JSON error shape, request metrics.

How other modules plug in:

- routes: write a `setup(app: web.Application) -> None` that calls `app.router.add_*` and read
  collaborators with `request.app[REDIS_KEY]`, `request.app[STORE_KEY]`, `request.app[CONFIG_KEY]`;
  then call it in `create_app` at the marked place (or pass it in `extra_setup`). The application
  freezes when the server starts, so everything is registered inside `create_app`.
- metrics: register collectors on `app[REGISTRY_KEY]` (a `prometheus_client.CollectorRegistry` per
  application, so two apps in one test process never collide), e.g.
  `Counter("cityline_x_total", "...", registry=app[REGISTRY_KEY])`.
- errors: raise a `router.errors.CitylineError` (or anything with a string `code` and an int
  `status`), a `queues.errors.StoreError`, or an aiohttp `web.HTTPException`; the middleware
  below turns it into `{"error": {"code": ..., "message": str(exc)}}` with its status.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from queues.errors import StoreError
from queues.keys import Keys

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from queues.store import RoutingStore
    from router.config import CitylineConfig

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Typed application state (aiohttp checks nothing at run time; mypy/pyright do).
CONFIG_KEY = web.AppKey["CitylineConfig"]("config")
REDIS_KEY = web.AppKey["aioredis.Redis"]("redis")
KEYS_KEY = web.AppKey("keys", Keys)
# None only while queues/store.py is not part of the build; handlers needing it answer 503.
STORE_KEY = web.AppKey["RoutingStore | None"]("store")
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)

# Stable machine codes for the statuses aiohttp itself raises or that handlers commonly use.
# Clients and tests branch on these, so an entry is never renamed, only added.
ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "request_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable_entity",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


@dataclass(frozen=True)
class AppContext:
    """What the HTTP layer is given by the composition root (router/main.py)."""

    config: CitylineConfig
    redis: aioredis.Redis
    keys: Keys
    store: RoutingStore | None = None
    # The composition root may share one registry between the app and its workers; a fresh
    # one is made when it does not.
    registry: CollectorRegistry | None = None


def error_code_for(status: int) -> str:
    return ERROR_CODES.get(status) or ("client_error" if status < 500 else "server_error")


def json_error(
    status: int,
    code: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: Any = None,
) -> web.Response:
    """The one error body of the API: `{"error": {"code": ..., "message": ...}}`."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return web.json_response({"error": error}, status=status, headers=headers)


def _message_for(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return f"no resource at {request.path}"
    if exc.status == 405:
        return f"method {request.method} is not allowed on {request.path}"
    # aiohttp's default text is "<status>: <reason>"; a handler's own text is more useful.
    default = f"{exc.status}: {exc.reason}"
    text = exc.text or ""
    return text if text and text != default else exc.reason


def _is_error_body(body: Any) -> bool:
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict)


def _as_boundary_error(exc: Exception) -> tuple[int, str, str] | None:
    """(status, code, message) of an error meant for the client, None for a bug.

    Boundary errors (router.errors.CitylineError and anything shaped like it) carry a stable
    `code` (or `error_id`) and an HTTP `status`. A store refusal that a handler did not catch
    (queues.errors.StoreError: stale pick, invalid state...) is a conflict, not a crash.
    """
    if isinstance(exc, StoreError):
        try:
            from router.errors import from_store
        except ImportError:
            return 409, exc.code, str(exc)
        exc = from_store(exc)
    code = getattr(exc, "code", None) or getattr(exc, "error_id", None)
    status = getattr(exc, "status", None)
    if isinstance(code, str) and isinstance(status, int) and 400 <= status < 600:
        return status, code, str(exc)
    return None


def error_middleware(max_body_bytes: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Every error leaves as the JSON shape; nothing internal leaks to the client.

    `max_body_bytes` is checked against Content-Length before the handler runs, so an oversized
    upload is refused at once on every route, including those that never read the body; bodies
    without a length (chunked) hit aiohttp's `client_max_size` while being read, which raises the
    same 413.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            length = request.content_length
            if (
                length is not None
                and length > max_body_bytes
                and request.match_info.http_exception is None
            ):
                raise web.HTTPRequestEntityTooLarge(max_size=max_body_bytes, actual_size=length)
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and the like are not errors
            if exc.content_type == "application/json" and _is_error_body(exc.body):
                # a handler already built the error body with its own code: keep it
                return web.Response(status=exc.status, body=exc.body, headers=exc.headers)
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return json_error(
                exc.status, error_code_for(exc.status), _message_for(exc, request), headers=headers
            )
        except Exception as exc:
            boundary = _as_boundary_error(exc)
            if boundary is not None:
                status, code, message = boundary
                if status >= 500:
                    logger.warning("%s %s: %s (%s)", request.method, request.path, code, message)
                return json_error(status, code, message)
            # A reference lets the operator find the traceback without showing it to the client.
            ref = uuid.uuid4().hex[:12]
            logger.exception("unhandled error ref=%s %s %s", ref, request.method, request.path)
            return json_error(500, "internal_error", f"internal error (ref {ref})")

    return middleware


def create_app(
    ctx: AppContext,
    *,
    extra_setup: Iterable[Callable[[web.Application], None]] = (),
) -> web.Application:
    """The application the composition root serves; also used as is by the HTTP tests."""
    from router.http import health

    registry = ctx.registry if ctx.registry is not None else CollectorRegistry()
    max_body = int(ctx.config.http.max_body_bytes)
    city = getattr(getattr(ctx.config, "city", None), "name", "") or ""
    request_metrics = health.RequestMetrics(registry, city=str(city))
    app = web.Application(
        # Order matters: metrics is outermost so it counts the status the error middleware
        # actually sent (a 404 counted as 404, an unhandled exception as 500).
        middlewares=[request_metrics.middleware, error_middleware(max_body)],
        client_max_size=max_body,
        logger=logging.getLogger("router.http"),
    )
    app[CONFIG_KEY] = ctx.config
    app[REDIS_KEY] = ctx.redis
    app[KEYS_KEY] = ctx.keys
    app[STORE_KEY] = ctx.store
    app[REGISTRY_KEY] = registry

    health.setup(app)
    # ---- HTTP API (/api/v1), agent desktop, supervisor wall: register their routes here ----
    for setup in extra_setup:
        setup(app)
    # the web pages (login, supervisor wall) use the API's auth and statistics: registered here,
    # after the API, and only when it is (router/web/pages.py setup_web)
    from router.web import setup_web

    setup_web(app)
    return app
