"""The real aiohttp app with the /api/v1 routes, served on a free loopback port, for API tests.

Also a pytest plugin (listed in `tests/conftest.py`): the `api` fixture (and its short alias `h`)
is one `ApiHarness` on the test's Redis, configuration and routing service; a test module that
needs another configuration defines its own `api` fixture, which takes precedence.

`ApiHarness` owns one `TestServer` and hands out clients: each client has its own cookie jar,
so two agents logged in with sessions are two clients. Users are created through the same
functions the CLI uses. Passwords are hashed with cheap argon2 parameters: the production cost
(64 MiB, 3 passes) would make every login in the suite take tens of milliseconds for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils
from argon2 import PasswordHasher

from queues.keys import Keys
from router import users as accounts
from router.auth import Auth
from router.config import CitylineConfig
from router.http.api import setup_api
from router.http.app import AppContext, create_app
from router.service import RoutingService

API = "/api/v1"
PASSWORD = "correct horse battery"


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@dataclass
class Session:
    """A logged-in browser: its own client (cookie jar) and the CSRF token from the login."""

    client: test_utils.TestClient
    csrf: str

    def _headers(self, kw: dict[str, Any], csrf: bool) -> dict[str, Any]:
        headers = dict(kw.pop("headers", {}) or {})
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.client.get(API + path, **kw)

    async def post(self, path: str, json: Any = None, *, csrf: bool = True, **kw: Any) -> Any:
        headers = self._headers(kw, csrf)
        return await self.client.post(API + path, json=json, headers=headers, **kw)

    async def put(self, path: str, json: Any = None, *, csrf: bool = True, **kw: Any) -> Any:
        headers = self._headers(kw, csrf)
        return await self.client.put(API + path, json=json, headers=headers, **kw)


@dataclass
class Bearer:
    """An API client authenticated by token (no cookies, no CSRF)."""

    client: test_utils.TestClient
    token: str

    def _kw(self, kw: dict[str, Any]) -> dict[str, Any]:
        headers = dict(kw.pop("headers", {}) or {})
        headers.setdefault("Authorization", f"Bearer {self.token}")
        return {**kw, "headers": headers}

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.client.get(API + path, **self._kw(kw))

    async def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.client.post(API + path, json=json, **self._kw(kw))

    async def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.client.put(API + path, json=json, **self._kw(kw))


@dataclass
class ApiHarness:
    redis: aioredis.Redis
    cfg: CitylineConfig
    service: RoutingService
    auth: Auth
    server: test_utils.TestServer
    keys: Keys = field(default_factory=Keys)
    clients: list[test_utils.TestClient] = field(default_factory=list)

    async def client(self) -> test_utils.TestClient:
        client = test_utils.TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    async def user(
        self, name: str, role: str, agent: str | None = None, password: str = PASSWORD
    ) -> None:
        await accounts.add_user(
            self.redis, self.keys, name, role, agent_id=agent, password=password,
            hasher=self.auth.hasher,
        )  # fmt: skip

    async def bearer(self, name: str, role: str, agent: str | None = None) -> Bearer:
        if not await self.redis.exists(self.keys.user(name)):
            await self.user(name, role, agent)
        issued = await accounts.create_token(self.redis, self.keys, name, label="test")
        return Bearer(await self.client(), issued.token)

    async def session(
        self, name: str, role: str = "agent", agent: str | None = None,
        password: str = PASSWORD,
    ) -> Session:  # fmt: skip
        if not await self.redis.exists(self.keys.user(name)):
            await self.user(name, role, agent, password)
        client = await self.client()
        resp = await client.post(f"{API}/auth/login", json={"username": name, "password": password})
        assert resp.status == 200, await resp.text()
        return Session(client, (await resp.json())["csrf_token"])

    async def ix(self, ix_id: str) -> dict[str, str]:
        return await self.redis.hgetall(self.keys.ix(ix_id))

    async def agent_hash(self, agent_id: str) -> dict[str, str]:
        return await self.redis.hgetall(self.keys.agent(agent_id))

    async def stream_len(self) -> int:
        return int(await self.redis.xlen(self.keys.events))


@asynccontextmanager
async def api_harness(
    redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService
) -> AsyncIterator[ApiHarness]:
    auth = Auth(redis, Keys(), cfg, hasher=cheap_hasher())
    app = create_app(
        AppContext(config=cfg, redis=redis, keys=Keys(), store=service.store),
        extra_setup=[lambda app: setup_api(app, service, auth)],
    )
    server = test_utils.TestServer(app, host="127.0.0.1", port=0)
    harness = ApiHarness(redis=redis, cfg=cfg, service=service, auth=auth, server=server)
    try:
        yield harness
    finally:
        for client in harness.clients:
            await client.close()
        await server.close()


@pytest.fixture
async def api(
    redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService
) -> AsyncIterator[ApiHarness]:
    async with api_harness(redis, cfg, service) as harness:
        yield harness


@pytest.fixture
def h(api: ApiHarness) -> ApiHarness:
    """The same harness as `api`, under the short name the web and admin tests use."""
    return api


async def error_of(resp: Any) -> dict[str, Any]:
    """The `error` object of an error answer (asserting the shape on the way)."""
    assert resp.content_type == "application/json", await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]
