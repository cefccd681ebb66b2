"""A whole voice city for scenario tests: FakeAsterisk running asterisk_conf/extensions.conf,
the production voice adapter (AMI through AmiConnection, the FastAGI IVR and hold loop), the
dispatcher and the event feed, all on the real Redis. Nothing of the adapter is replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from channels.voice.adapter import VoiceAdapter
from channels.voice.factory import build_voice_adapter
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.dispatcher import Dispatcher
from router.event_feed import EventFeed
from router.models import Event
from router.service import RoutingService
from tests.fakes.ami_server import FakeAsterisk
from tests.fakes.calls import CallerHandle
from tests.routing_fixtures import eventually

DIALPLAN = Path(__file__).resolve().parents[2] / "asterisk_conf" / "extensions.conf"
SECRET = "s3cret-for-tests"
# a Monday 10:00 in Warsaw: the city's offices are open
OFFICE_HOURS = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LOCAL_TAXES = ("1", "2", "2")  # Polish, matters, local taxes -> voice-info (callback offered)
AGENT, PHONE = "katarzyna.wisniewska", "1004"  # the voice agent for local taxes, PJSIP/1004


@dataclass
class VoiceCity:
    cfg: CitylineConfig
    redis: aioredis.Redis
    service: RoutingService
    fake: FakeAsterisk
    adapter: VoiceAdapter
    dispatcher: Dispatcher

    async def events(self, *types: str) -> list[Event]:
        out = [Event.from_stream(i, f) for i, f in await self.redis.xrange("cl:events")]
        return [e for e in out if not types or e.type in types]

    async def wait_for(self, predicate: Callable[[], Any], within_s: float = 5.0) -> None:
        await eventually(predicate, within_s)

    async def wait_event(self, kind: str, count: int = 1, within_s: float = 5.0) -> list[Event]:
        async def enough() -> bool:
            return len(await self.events(kind)) >= count

        await self.wait_for(enough, within_s)
        return await self.events(kind)

    def local_taxes_call(self, number: str) -> CallerHandle:
        """A resident on a SIP line who chooses local taxes in the IVR."""
        caller = self.fake.add_caller(kind="pjsip", callerid_num=number)
        caller.answer_prompts(*LOCAL_TAXES)
        return caller

    async def talking_call(self, number: str) -> CallerHandle:
        """A local-taxes call answered by the agent: returns once they talk."""
        self.fake.set_agent_behaviour(PHONE, "answer")
        await self.service.agent_login(AGENT, ready=True)
        caller = self.local_taxes_call(number)
        await caller.wait_state("talking", within_s=10)
        await self.wait_event("CONNECT")
        return caller

    async def ix_of(self, uniqueid: str) -> dict[str, str]:
        ix_id = await self.service.find_external("voice", uniqueid)  # type: ignore[arg-type]
        assert ix_id is not None, f"no interaction for call {uniqueid}"
        return await self.service.store.interaction(ix_id)


def asterisk_ms(stamp: float) -> int:
    """An event's time as its `Timestamp` header said it (`%.6f`), in whole ms."""
    seconds, _, fraction = f"{stamp:.6f}".partition(".")
    return int(seconds) * 1000 + int(fraction[:3])


@pytest.fixture
async def city(redis: aioredis.Redis) -> AsyncIterator[VoiceCity]:
    cfg = load_config(None, env={})
    voice = cfg.channels.voice
    voice.ami_username = "cityline"
    voice.ami_ping_interval_s = 0.3
    voice.ami_ping_timeout_s = 0.3
    voice.ami_reconnect_max_s = 0.2
    voice.announce_every_s = 0.5
    voice.fastagi_port = 0
    fake = FakeAsterisk(
        users={"cityline": SECRET}, timestampevents=True, time_scale=0.02,
        dialplan=DIALPLAN.read_text(), auth_fail_delay_s=0.05,
    )
    await fake.start()
    voice.ami_port = fake.port
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    adapter = build_voice_adapter(service, cfg,
                                  env={voice.ami_secret_env: SECRET},
                                  ivr_clock=lambda: OFFICE_HOURS)
    await adapter.start()
    fake.route_agi("127.0.0.1:4573", ("127.0.0.1", adapter.agi.port))
    dispatcher = Dispatcher(store, cfg, "voice-test")
    feed = EventFeed(redis, Keys(), adapter, "voice-test")
    await feed.ensure_group()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(dispatcher.run(stop)), asyncio.create_task(feed.run(stop))]
    try:
        yield VoiceCity(cfg, redis, service, fake, adapter, dispatcher)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await adapter.stop()
        await fake.stop()
