"""The aiohttp application itself: health, readiness, metrics and the JSON error shape.

Served by aiohttp's own test server on 127.0.0.1 with a free port, against the session's real
redis-server; readiness failure is a client pointed at a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils, web
from prometheus_client import Counter

from queues.embedded import free_tcp_port
from queues.errors import StaleError
from queues.keys import Keys
from router.config import CitylineConfig, HttpConfig
from router.http.app import REGISTRY_KEY, AppContext, create_app

MAX_BODY = 2048

ClientFactory = Callable[..., Awaitable[test_utils.TestClient]]


@pytest.fixture
def config() -> CitylineConfig:
    return CitylineConfig(http=HttpConfig(max_body_bytes=MAX_BODY))


@pytest.fixture
async def make_client(
    config: CitylineConfig, redis: aioredis.Redis
) -> AsyncIterator[ClientFactory]:
    """Start the real app on a free loopback port; every client is closed after the test."""
    clients: list[test_utils.TestClient] = []

    async def make(
        redis_client: aioredis.Redis | None = None,
        extra_setup: Iterable[Callable[[web.Application], None]] = (),
    ) -> test_utils.TestClient:
        ctx = AppContext(config=config, redis=redis_client or redis, keys=Keys())
        app = create_app(ctx, extra_setup=extra_setup)
        client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_healthz_is_ok(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_ok_when_redis_answers(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["status"] == "ok"


async def test_readyz_503_when_redis_unreachable(make_client: ClientFactory) -> None:
    closed_port = free_tcp_port()  # bound and released: nothing listens there
    dead = aioredis.Redis(host="127.0.0.1", port=closed_port, socket_connect_timeout=0.5)
    try:
        client = await make_client(redis_client=dead)
        started = time.monotonic()
        resp = await client.get("/readyz")
        elapsed = time.monotonic() - started
        body = await resp.json()
        assert resp.status == 503
        assert body["status"] == "unavailable"
        assert isinstance(body["redis"], str) and body["redis"]
        assert elapsed < 3, "readiness must answer within about its 1 s budget"
        # liveness does not depend on Redis: an outage must not get every router restarted
        live = await client.get("/healthz")
        assert live.status == 200
    finally:
        await dead.aclose()


async def test_unknown_path_is_json_404(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["error"]["code"] == "not_found"
    assert "/no/such/thing" in body["error"]["message"]


async def test_wrong_method_is_json_405_with_allow(make_client: ClientFactory) -> None:
    client = await make_client()
    resp = await client.delete("/healthz")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({"bytes": len(body)})


def _add_echo(app: web.Application) -> None:
    app.router.add_post("/echo", _echo)


async def test_oversized_body_is_json_413(make_client: ClientFactory) -> None:
    client = await make_client(extra_setup=[_add_echo])
    small = await client.post("/echo", data=b"x" * 100)
    assert small.status == 200 and (await small.json()) == {"bytes": 100}

    # with Content-Length: refused before the handler runs
    resp = await client.post("/echo", data=b"x" * (MAX_BODY + 1))
    assert resp.status == 413
    body = await resp.json()
    assert body["error"]["code"] == "request_too_large"
    assert str(MAX_BODY) in body["error"]["message"]

    # chunked, no length announced: aiohttp's client_max_size stops the read
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 1024

    resp = await client.post("/echo", data=chunks())
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request_too_large"


class QueueFull(Exception):
    """Shaped like router.errors.CitylineError: a stable code and a status."""

    code = "queue_full"
    status = 429


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("password=hunter2 leaked?")


async def _refused(request: web.Request) -> web.Response:
    raise QueueFull("the queue is full")


async def _stale(request: web.Request) -> web.Response:
    raise StaleError("picked from old data")


def _add_failing(app: web.Application) -> None:
    app.router.add_get("/boom", _boom)
    app.router.add_get("/refused", _refused)
    app.router.add_get("/stale", _stale)


async def test_unhandled_exception_is_500_without_detail(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(extra_setup=[_add_failing])
    with caplog.at_level(logging.ERROR, logger="router.http"):
        resp = await client.get("/boom")
    assert resp.status == 500
    body = await resp.json()
    assert body["error"]["code"] == "internal_error"
    assert "hunter2" not in await resp.text()
    ref = body["error"]["message"].split("ref ")[1].rstrip(")")
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "the traceback goes to the log"


async def test_boundary_and_store_errors_keep_their_code(make_client: ClientFactory) -> None:
    client = await make_client(extra_setup=[_add_failing])
    resp = await client.get("/refused")
    assert resp.status == 429
    assert await resp.json() == {"error": {"code": "queue_full", "message": "the queue is full"}}
    resp = await client.get("/stale")
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "stale"


async def test_metrics_prometheus_text(make_client: ClientFactory) -> None:
    def add_collector(app: web.Application) -> None:
        # what another module does to publish its figures
        counter = Counter("cityline_test_things", "things", registry=app[REGISTRY_KEY])
        counter.inc(3)

    client = await make_client(extra_setup=[add_collector])
    # a second app in the same process gets its own registry: no duplicate-metric error
    await make_client(extra_setup=[add_collector])
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/missing")).status == 404

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    lines = set(text.splitlines())
    assert "cityline_up 1.0" in lines
    assert 'cityline_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in lines
    assert 'cityline_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in lines
    assert "cityline_test_things_total 3.0" in lines
    assert any(line.startswith("process_resident_memory_bytes ") for line in lines)
    assert "cityline_http_request_duration_seconds_bucket" in text


async def test_readyz_times_out_after_one_second(make_client: ClientFactory) -> None:
    """A Redis that accepts the connection and never answers (e.g. stuck on disk)."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stuck = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        client = await make_client(redis_client=stuck)
        started = time.monotonic()
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "1 s" in (await resp.json())["redis"]
        assert time.monotonic() - started < 2.5
    finally:
        await stuck.aclose()
        server.close()
        await server.wait_closed()
