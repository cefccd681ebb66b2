"""Three `cityline dispatch` processes on one Redis, hundreds of agents and thousands of
residents behaving at random: the stream replayed through an independent model must show no
double offer, no agent over capacity or offered while not ready, and exactly one ending for
every interaction; the stored state must agree with it."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import yaml

from queues.keys import Keys
from queues.store import RoutingStore
from router.config import load_config
from router.errors import CitylineError
from router.models import Channel, Event, IntakeRequest, TransferRequest
from router.service import RoutingService
from router.stats import StatsAggregator
from tests.stream_model import Replay

pytestmark = pytest.mark.slow

AGENTS = 200
RESIDENTS = 2500
DISPATCHERS = 3


def soak_config(tmp_path: Path) -> Path:
    base = yaml.safe_load(Path(__file__).with_name("routing_config.yaml").read_text())
    # no planning lease: all three dispatchers plan every round and race each other's picks
    base["routing"].update(max_misses=2, timer_max_sleep_ms=100, dispatch_lease_ms=0)
    for q in base["queues"].values():
        q["offer_timeout_s"] = 0.25
    base["queues"]["chat"]["wrapup_s"] = 0.05
    base["queues"]["voice"]["wrapup_s"] = 0
    rnd = random.Random(7)
    base["agents"] = {
        f"s{i:03d}": {
            "name": f"Agent {i}",
            "skills": {"general": rnd.randint(3, 9), "taxes": rnd.randint(1, 9),
                       "lang_en": rnd.choice([1, 5])},
            "capacity": {"voice": 1, "chat": rnd.choice([2, 3])},
        }
        for i in range(AGENTS)
    }
    base["users"] = {}
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(base, allow_unicode=True))
    return path


class Crowd:
    """Residents and agents acting at random, driven by the event stream like real clients."""

    def __init__(self, service: RoutingService, redis: aioredis.Redis, seed: int) -> None:
        self.service = service
        self.redis = redis
        self.rnd = random.Random(seed)
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []

    def spawn(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    async def quietly(self, coro: object) -> None:
        """A racing action may lose (the resident hung up first): that is the point."""
        with contextlib.suppress(CitylineError):
            await coro  # type: ignore[misc]

    async def resident(self) -> None:
        r = self.rnd.random()
        queue, channel = ("chat", Channel.chat) if r < 0.3 else (
            ("voice-short", Channel.voice) if r < 0.35 else ("voice", Channel.voice))
        req = IntakeRequest(
            channel=channel, queue=queue,
            topic="taxes" if self.rnd.random() < 0.3 else None,
            language="en" if self.rnd.random() < 0.15 else "pl",
        )
        created = await self.service.create_interaction(req)
        if self.rnd.random() < 0.2:
            await asyncio.sleep(self.rnd.uniform(0, 0.4))
            await self.quietly(self.service.resident_left(created.id))

    async def on_offer(self, ix_id: str, agent: str, queue: str) -> None:
        await asyncio.sleep(self.rnd.uniform(0, 0.03))
        r = self.rnd.random()
        if r < 0.12:
            await self.quietly(self.service.reject(agent, ix_id))
            return
        if r < 0.2:
            return  # lets the offer time out: RINGNOANSWER, maybe a pause
        try:
            await self.service.accept(agent, ix_id)
        except CitylineError:
            return
        await asyncio.sleep(self.rnd.uniform(0, 0.05))
        if queue == "voice" and self.rnd.random() < 0.05:
            await self.quietly(self.service.transfer(
                ix_id, TransferRequest(queue="voice-vip"), by_agent=agent))
        elif self.rnd.random() < 0.3:
            await self.quietly(self.service.resident_ended(ix_id))
        else:
            await self.quietly(self.service.complete(agent, ix_id))
        if self.rnd.random() < 0.03:
            await self.quietly(self.service.agent_state(agent, "not_ready", "break"))

    async def on_pause(self, agent: str) -> None:
        await asyncio.sleep(self.rnd.uniform(0.02, 0.1))
        await self.quietly(self.service.agent_state(agent, "ready"))

    async def agents(self, stop: asyncio.Event) -> None:
        last = "0-0"
        while not stop.is_set():
            reply = await self.redis.xread({"cl:events": last}, count=2000, block=100)
            for _s, entries in reply or []:
                for entry_id, f in entries:
                    last = entry_id
                    if f["ev"] == "OFFER":
                        self.spawn(self.on_offer(f["ix"], f["agent"], f["queue"]))
                    elif f["ev"] == "PAUSE":
                        self.spawn(self.on_pause(f["agent"]))


async def wait_until_all_ended(redis: aioredis.Redis, ids: list[str], within_s: float) -> list:
    deadline = time.monotonic() + within_s
    open_ids = ids
    while open_ids and time.monotonic() < deadline:
        async with redis.pipeline(transaction=False) as pipe:
            for ix in open_ids:
                pipe.hget(f"cl:ix:{ix}", "state")
            states = await pipe.execute()
        open_ids = [ix for ix, st in zip(open_ids, states, strict=True)
                    if st not in ("closed", "abandoned", "timeout")]
        await asyncio.sleep(0.2)
    return open_ids


def start_dispatchers(config: Path, url: str, n: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "router.cli", "dispatch", "--config", str(config),
             "--redis-url", url, "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for _ in range(n)
    ]


async def test_three_dispatchers_random_crowd(redis: aioredis.Redis, redis_url: str,
                                              tmp_path: Path) -> None:
    # thousands of concurrent residents and agents: wait for a connection instead of failing
    pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=30,
                                                    decode_responses=True)
    redis = aioredis.Redis(connection_pool=pool)
    try:
        await _soak(redis, redis_url, tmp_path)
    finally:
        await redis.aclose()
        await pool.disconnect()


async def _soak(redis: aioredis.Redis, redis_url: str, tmp_path: Path) -> None:
    config_path = soak_config(tmp_path)
    cfg = load_config(config_path, env={})
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    for agent in cfg.agents:
        await service.agent_login(agent, ready=True)
    procs = start_dispatchers(config_path, redis_url, DISPATCHERS)
    crowd = Crowd(service, redis, seed=11)
    stop = asyncio.Event()
    agents_task = asyncio.create_task(crowd.agents(stop))
    try:
        residents = []
        for i in range(RESIDENTS):
            residents.append(asyncio.create_task(crowd.resident()))
            if i % 50 == 49:
                await asyncio.sleep(0.08)  # ~600 residents a second
        await asyncio.gather(*residents)
        assert not crowd.errors, crowd.errors[:3]
        ids = [k.split(":", 2)[2] for k in await redis.keys("cl:ix:*")]
        assert len(ids) == RESIDENTS
        still_open = await wait_until_all_ended(redis, ids, within_s=60)
        assert not crowd.errors, crowd.errors[:3]
        assert still_open == [], f"{len(still_open)} interactions never ended"
        for proc in procs:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        stop.set()
        await agents_task
        for task in list(crowd.tasks):
            task.cancel()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            finally:
                if proc.stderr:
                    proc.stderr.close()

    replay = Replay(cfg)
    for entry_id, fields in await redis.xrange("cl:events"):
        replay.apply(Event.from_stream(entry_id, fields))
    replay.finish()
    assert replay.violations == [], replay.violations[:10]
    # the stream and the stored state agree, interaction by interaction
    for ix in ids:
        assert await redis.hget(f"cl:ix:{ix}", "state") == replay.ix_state[ix]
    # and nothing is left held or armed
    for agent in cfg.agents:
        loads = await redis.hmget(f"cl:agent:{agent}", [f"load:{c}" for c in ("voice", "chat")])
        assert loads == ["0", "0"], (agent, loads)
        assert await redis.scard(f"cl:aw:{agent}") == 0
    for zset in ("cl:offers", "cl:due", "cl:wrapups"):
        assert await redis.zcard(zset) == 0, zset
    assert await redis.scard("cl:buckets") == 0
    c = replay.counts
    assert c["ENTERQUEUE"] >= RESIDENTS and c["OFFER"] > RESIDENTS // 2
    assert c["RINGNOANSWER"] > 0 and c["ABANDON"] > 0 and c["TRANSFER"] > 0
    assert c["EXITWITHTIMEOUT"] > 0 and c["PAUSE"] > 0
    await _counters_agree_with_stream(redis, cfg, replay)


async def _counters_agree_with_stream(redis: aioredis.Redis, cfg, replay: Replay) -> None:
    """The statistics folded from the stream by two aggregators at once count every event
    exactly once: per queue, each counter equals the events of that queue; in total, each
    resident's contact counts once."""
    aggs = [StatsAggregator(redis, Keys(), cfg) for _ in range(2)]
    while sum(await asyncio.gather(*(a.fold_once(500) for a in aggs))):
        pass
    entries = [Event.from_stream(i, f) for i, f in await redis.xrange("cl:events")]
    report = await aggs[0].period_report(entries[0].time_ms, entries[-1].time_ms + 1)
    per_queue = {q.name: q.counters for q in report.queues}
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for e in entries:
        name = {"ENTERQUEUE": "offered", "CONNECT": "answered", "ABANDON": "abandoned",
                "RINGNOANSWER": "rona", "TRANSFER": "transfers"}.get(e.type)
        if name:
            expected[e.queue][name] += 1
    for queue, counts in expected.items():
        got = {k: per_queue.get(queue, {}).get(k, 0) for k in counts}
        assert got == dict(counts), queue
    total = report.total.counters
    answered = {e.ix for e in entries if e.type == "CONNECT"}
    # a contact counts once in the total: answered, or (if never answered) how it ended; one
    # answered, transferred and then abandoned in the second queue counts as answered
    ended = Counter(st for ix, st in replay.ix_state.items() if ix not in answered)
    assert total["offered"] == RESIDENTS
    assert total["answered"] == len(answered)
    assert total["abandoned"] == ended["abandoned"]
    assert total.get("timeouts", 0) == ended["timeout"]
