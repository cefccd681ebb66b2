"""The Redis session of the `user` and `token` commands (router/cli_admin.py).

Finds the installation's Redis (--redis-url, else REDIS_URL / redis.url, else the embedded
redis-server of a `cityline serve` on this machine), runs one step of a command in it under its
own `asyncio.run`, and turns every failure into `AdminError`: one line for the operator and an
exit code.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from queues.keys import Keys
    from router.config import CitylineConfig

# A Redis that does not answer a PING within this is reported as unreachable.
ADMIN_REDIS_TIMEOUT_S = 5.0


class AdminError(Exception):
    """What the operator must read (one line) and the exit code: 1 failure, 2 usage error."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class AdminSession:
    config: CitylineConfig
    keys: Keys
    redis: aioredis.Redis


def embedded_socket(config: CitylineConfig) -> Path:
    """Where the embedded redis-server of a `cityline serve` with this data_dir listens
    (the same path queues.embedded.EmbeddedRedis chooses)."""
    return Path(config.data_dir).resolve() / "redis" / "redis.sock"


async def _ping(url: str) -> aioredis.Redis:
    """A connected client for `url`; raises what connecting raised (the client closed)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=ADMIN_REDIS_TIMEOUT_S,
        socket_timeout=ADMIN_REDIS_TIMEOUT_S,
    )
    try:
        async with asyncio.timeout(ADMIN_REDIS_TIMEOUT_S):
            await client.ping()
    except BaseException:
        await client.aclose()
        raise
    return client


async def _admin_redis(args: argparse.Namespace, config: CitylineConfig) -> aioredis.Redis:
    """--redis-url, else REDIS_URL / redis.url (in `config`), else the embedded server's socket
    under data_dir if a `cityline serve` answers on it; AdminError otherwise."""
    from redis.exceptions import RedisError

    from router.main import configured_redis_url, redact_url

    url = args.redis_url or configured_redis_url(config)
    if url:
        try:
            return await _ping(url)
        except ValueError as exc:  # redis-py's word for a URL it cannot parse
            raise AdminError(f"not a Redis URL: {redact_url(url)} ({exc})", 2) from None
        except (RedisError, OSError, TimeoutError) as exc:
            raise AdminError(f"cannot reach Redis at {redact_url(url)}: {exc}") from None
    sock = embedded_socket(config)
    if not sock.exists():
        raise AdminError(
            "no Redis configured: set REDIS_URL, redis.url in the configuration or --redis-url "
            f"(or run this where a `cityline serve` keeps its embedded Redis at {sock})",
            2,
        )
    try:
        return await _ping(f"unix://{sock}")
    except (RedisError, OSError, TimeoutError) as exc:
        raise AdminError(
            f"no Redis answers on {sock} (is `cityline serve` running? {exc}); "
            "set REDIS_URL or --redis-url",
            2,
        ) from None


def run_admin(
    args: argparse.Namespace,
    config: CitylineConfig,
    work: Callable[[AdminSession], Awaitable[Any]],
) -> Any:
    """Connect, run `work`, close; Redis failures become one line (AdminError, exit 1)."""
    from redis.exceptions import RedisError

    from queues.keys import Keys

    async def session() -> Any:
        redis = await _admin_redis(args, config)
        try:
            return await work(AdminSession(config, Keys(config.redis.prefix), redis))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(session())
    except RedisError as exc:
        raise AdminError(f"Redis failed: {exc}") from None
