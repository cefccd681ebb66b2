"""Fixtures for routing tests: the small city in routing_config.yaml on the real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.dispatcher import Dispatcher
from router.models import Channel, Event, IntakeRequest
from router.service import RoutingService

CONFIG = Path(__file__).with_name("routing_config.yaml")


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(CONFIG, env={})


@pytest.fixture
async def store(redis: aioredis.Redis) -> RoutingStore:
    s = RoutingStore(redis)
    await s.load_scripts()
    return s


@pytest.fixture
def service(store: RoutingStore, cfg: CitylineConfig) -> RoutingService:
    return RoutingService(store, cfg)


@pytest.fixture
def dispatcher(store: RoutingStore, cfg: CitylineConfig) -> Dispatcher:
    return Dispatcher(store, cfg)


async def events(redis: aioredis.Redis, *types: str) -> list[Event]:
    out = [Event.from_stream(i, f) for i, f in await redis.xrange("cl:events")]
    return [e for e in out if not types or e.type in types]


async def call(service: RoutingService, queue: str = "voice", **kw: Any) -> str:
    channel = kw.pop("channel", Channel.voice)
    res = await service.create_interaction(IntakeRequest(channel=channel, queue=queue, **kw))
    return res.id


async def ready(service: RoutingService, *agent_ids: str) -> None:
    """Log agents in ready, one Redis millisecond apart so longest-idle order is defined."""
    for agent_id in agent_ids:
        await service.agent_login(agent_id, ready=True)
        await asyncio.sleep(0.002)


async def offered_to(service: RoutingService, agent_id: str) -> list[str]:
    return [ix["id"] for ix in await service.offers(agent_id)]


async def eventually(check: Callable[[], Any], within_s: float = 5.0) -> Any:
    """Poll a check (sync or async) until it gives something truthy; bounded, tests only."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
