"""Shared fixtures: one real redis-server per test session, flushed before every test.

The server is started by the same launcher `cityline serve` uses (`queues.embedded`), on a unix
socket in a temporary directory. `CITYLINE_REDIS_SERVER` picks another binary (CI runs the suite
against Debian's Redis 7 as well as the embedded 6.2).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from queues.embedded import EmbeddedRedis

pytest_plugins = ["tests.routing_fixtures", "tests.api_helpers"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), appendonly=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()
