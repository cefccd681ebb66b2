"""Operations endpoints: liveness, readiness, Prometheus metrics.

- `GET /healthz`: the process runs and its event loop answers. Always 200 while it does, so a
  Redis outage never makes an orchestrator restart every router at once.
- `GET /readyz`: this process can do its work, i.e. Redis answers PING within
  `READY_TIMEOUT_S`. 503 otherwise, so a load balancer routes around it.
- `GET /metrics`: Prometheus text format from the application's own registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from importlib import metadata

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from router.http.app import REDIS_KEY, REGISTRY_KEY, Handler

logger = logging.getLogger(__name__)

# A readiness probe that waits longer than its prober's own timeout (1 s is Kubernetes' default)
# reports nothing useful; a Redis that needs more than that for PING is not fit to route.
READY_TIMEOUT_S = 1.0

# Any other method string a client invents is counted as "other": labels must stay a small set.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Statuses a handler never produced: the client went away before the answer (nginx's 499).
_CLIENT_CLOSED = "499"


def _version() -> str:
    try:
        return metadata.version("cityline")
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


class RequestMetrics:
    """Process metrics and per-route request counters on one application's registry."""

    def __init__(self, registry: CollectorRegistry, city: str = "") -> None:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.up = Gauge("cityline_up", "1 while this cityline process serves", registry=registry)
        self.up.set(1)
        self.info = Info("cityline", "cityline build", registry=registry)
        self.info.info({"version": _version(), "city": city})
        self.requests = Counter(
            "cityline_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "cityline_http_request_duration_seconds",
            "time to answer an HTTP request, by route template",
            ["method", "route"],
            registry=registry,
        )

    @staticmethod
    def route_label(request: web.Request) -> str:
        """The route template (`/api/v1/queues/{name}`), never the raw path: bounded labels."""
        resource = request.match_info.route.resource
        return resource.canonical if resource is not None else "unmatched"

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method if request.method in _METHODS else "other"
        route = self.route_label(request)
        started = time.perf_counter()
        status = "500"
        try:
            response = await handler(request)
            status = str(response.status)
            return response
        except web.HTTPException as exc:  # redirects re-raised by the error middleware
            status = str(exc.status)
            raise
        except asyncio.CancelledError:
            status = _CLIENT_CLOSED
            raise
        finally:
            self.requests.labels(method, route, status).inc()
            self.duration.labels(method, route).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    redis = request.app[REDIS_KEY]
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await redis.ping()
    except TimeoutError:
        reason = f"no answer to PING within {READY_TIMEOUT_S:g} s"
    except Exception as exc:  # any failure means "not ready"; the reason goes to the prober
        reason = str(exc)[:200] or type(exc).__name__
    else:
        return web.json_response({"status": "ok", "redis": "ok"})
    logger.warning("readyz: redis unavailable: %s", reason)
    return web.json_response({"status": "unavailable", "redis": reason}, status=503)


# Coroutines awaited before each scrape: prometheus_client collects synchronously, so figures
# that live in Redis (the live statistics) are fetched here first and read from a cache.
BEFORE_SCRAPE_KEY = web.AppKey("before_scrape", list)


async def metrics(request: web.Request) -> web.Response:
    for refresh in request.app.get(BEFORE_SCRAPE_KEY, []):
        try:
            await refresh()
        except Exception as exc:  # a scrape must still answer with the process metrics
            logger.warning("metrics: refreshing live figures failed: %s", exc)
    # The 0.0.4 text format: every Prometheus release and most other scrapers read it.
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
