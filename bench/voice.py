"""Voice benchmark: AMI events per second through the voice adapter (parse -> state change)
against FakeAsterisk at 1,000 concurrent calls, beside the same byte stream merely parsed by
panoramisk (the ceiling).

Run: `python bench/voice.py` (about a minute; `--quick`: 200 calls, about 20 s). It starts its
own redis-server the way the tests do, prints progress on stderr, a summary on stdout, and ends
with one line of JSON holding every figure.

How the stream is made. Events are not written by hand: the benchmark first runs four calls
through a whole voice city (FakeAsterisk running asterisk_conf/extensions.conf, the production
adapter with its FastAGI IVR and hold loop, the dispatcher and the event feed, as in
tests/channels/voice_city.py) and keeps every event frame a second, passive AMI client received:

    answered    IVR, hold, ring, the agent answers, the resident hangs up    (60 % of calls)
    agent_ends  the same, the agent hangs up first                           (20 %)
    abandon     IVR, hold, the resident hangs up while waiting               (15 %)
    rna         IVR, hold, the agent does not answer, back on hold, hang-up  ( 5 %)

Each call is then cloned the way Asterisk would number a new call (uniqueids and linkedids,
channel sequence numbers, bridge ids) with its `Timestamp`s shifted; the clones start a fraction
of the shortest call's length apart, so all of them are up at once, and are merged in timestamp
order. The bytes are rendered once and are the fake's own (ami_codec.encode): 88 to 140 events
a call, Newchannel, Newexten, VarSet, AGIExecStart/End, MusicOnHoldStart/Stop, DialBegin,
DialState, DialEnd, BridgeCreate/Enter/Leave, Hangup, DeviceStateChange...

Three runs then receive exactly these bytes from one idle FakeAsterisk (`inject`, all at once,
after the banner, Login and FullyBooted), each timed from the inject to the last event handled;
the three are repeated in rounds (`--repeat`, 3) and the medians reported:

1. ceiling: panoramisk's `Manager` (its AMIProtocol parser and its dispatch) with a callback for
   every event that only counts;
2. reader: the production `AmiConnection` (its own framing, parse_frame, the ordered dispatcher
   task with a deadline per callback) with an async callback that only counts;
3. adapter: the same `AmiConnection` with a real `VoiceAdapter` (built by the production factory)
   on a real `RoutingService` and Redis. Before the inject every call's interaction is created
   through `VoiceAdapter.on_outcome`, as the IVR would (queued, call tracked by its uniqueid), the
   dispatcher offers the answered and ring-no-answer ones to as many logged-in agents, and the
   abandons stay queued; so the stream's DialEnd ANSWER accepts, BridgeLeave completes, DialEnd
   NOANSWER is a ring-no-answer and Hangup abandons. The router's own events are counted after
   the run and must be exactly the expected state changes.

Per-event time in the adapter comes from a subclass that wraps `on_ami_event` in two
`perf_counter` calls (so it includes the Redis round trips, and any reading the event loop does
while one is awaited). What is not measured: the router's events coming back through the event
feed (`handle_event`: Redirect, Hangup actions), the IVR's FastAGI traffic, the dispatcher.

Caveats. The whole stream arrives at once, so these are capacity figures (a backlog drained as
fast as possible), not latency at a real call rate; `max_lag_s` says how far behind the wire the
adapter fell. The fake, the client and the benchmark share one process and event loop (the fake
only writes pre-rendered bytes), Redis runs beside them on the same 2 cores. The stream's times
are those of the recording (the fake runs its dialplan 50 times faster than real time) and lie
before the interactions were created, so the router clamps them to the offer time: the recorded
waits and talk times mean nothing here, the paths taken are the same. Clones keep the recorded
caller ID and agent endpoint. Compare the ratios, measured in the same run, more than the
absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402
from panoramisk import Manager  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.figures import pct, say  # noqa: E402
from channels.voice import factory  # noqa: E402
from channels.voice.adapter import VoiceAdapter  # noqa: E402
from channels.voice.agi_env import AgiEnv  # noqa: E402
from channels.voice.ami import AmiConnection, AmiSettings  # noqa: E402
from channels.voice.ivr import Routed  # noqa: E402
from queues.embedded import EmbeddedRedis  # noqa: E402
from queues.keys import Keys  # noqa: E402
from queues.store import RoutingStore  # noqa: E402
from router.config import CitylineConfig, load_config  # noqa: E402
from router.dispatcher import Dispatcher  # noqa: E402
from router.event_feed import EventFeed  # noqa: E402
from router.models import AgentProfile, Channel  # noqa: E402
from router.service import RoutingService  # noqa: E402
from tests.channels.voice_city import DIALPLAN, LOCAL_TAXES, OFFICE_HOURS  # noqa: E402
from tests.fakes.ami_codec import encode  # noqa: E402
from tests.fakes.ami_server import FakeAsterisk  # noqa: E402
from tests.fakes.raw_ami import RawAmi  # noqa: E402

SECRET = "bench-secret"
AGENT, PHONE = "katarzyna.wisniewska", "1004"  # the voice-info agent of the default config
TAP_USER, TAP_SECRET = "router", "routerpass"  # RawAmi's account: the passive recorder
TIME_SCALE = 0.02
HOLD_S, TALK_S = 1.5, 0.4  # real seconds on hold before an agent is free, and talking
# (scenario, share of calls in 20); the order is the order calls are recorded in
MIX = (("abandon", 3), ("answered", 12), ("agent_ends", 4), ("rna", 1))
# the router events each scenario must cause: the state changes the stream drives
EXPECTED = {
    "answered": ("CONNECT", "COMPLETECALLER"),
    "agent_ends": ("CONNECT", "COMPLETEAGENT"),
    "abandon": ("ABANDON",),
    "rna": ("RINGNOANSWER", "ABANDON"),
}
OFFERED = frozenset({"answered", "agent_ends", "rna"})  # offered to an agent before the stream
ACTED_ON = frozenset({"Hangup", "BridgeLeave", "DialBegin", "DialEnd", "OriginateResponse"})
RUN_TIMEOUT_S = 150.0

_UID_KEYS = {
    f"{prefix}{key}"
    for prefix in ("", "Dest", "LocalOne", "LocalTwo")
    for key in ("Uniqueid", "Linkedid")
}
_CHAN_SEQ = re.compile(r"((?:Local|PJSIP)/[^\s;,)]+?-)([0-9a-f]{8})\b")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def micros(stamp: str) -> int:
    seconds, _, fraction = stamp.partition(".")
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


async def until(predicate: Callable[[], Awaitable[bool] | bool], within_s: float,
                what: str) -> None:
    deadline = time.monotonic() + within_s
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within_s} s")
        await asyncio.sleep(0.02)


# --- 1. recording one call per scenario from a whole voice city -------------------------------

@dataclass
class Template:
    """One recorded call: its event frames as (key, value) pairs, and what the IVR decided."""

    scenario: str
    events: list[list[tuple[str, str]]]
    caller_uniqueid: str
    caller_channel: str
    caller_number: str
    outcome: dict[str, str]  # CITYLINE_* variables the IVR set on the caller's channel
    stamps: list[int] = field(default_factory=list)  # µs, one per event

    def __post_init__(self) -> None:
        self.stamps = [micros(dict(e)["Timestamp"]) for e in self.events]

    @property
    def duration_us(self) -> int:
        return self.stamps[-1] - self.stamps[0]

    def routed(self) -> Routed:
        o = self.outcome
        return Routed(queue=o["CITYLINE_QUEUE"], topic=o.get("CITYLINE_TOPIC") or None,
                      language=o.get("CITYLINE_LANGUAGE") or "pl",
                      priority=int(o.get("CITYLINE_PRIORITY") or 0), callback_offer=False,
                      announce_every_s=None, path=tuple(o.get("CITYLINE_IVR_PATH", "").split("/")))


def recording_config() -> CitylineConfig:
    cfg = load_config(None, env={})
    for q in cfg.queues.values():
        q.wrapup_s = 0  # the agent is free for the next recorded call at once
    cfg.routing.max_misses = 1  # after the ring-no-answer the agent pauses: no second offer
    voice = cfg.channels.voice
    voice.ami_username = "cityline"
    voice.fastagi_port = 0
    return cfg


async def record_templates(redis: aioredis.Redis) -> dict[str, Template]:
    cfg = recording_config()
    voice = cfg.channels.voice
    fake = FakeAsterisk(users={"cityline": SECRET, TAP_USER: TAP_SECRET}, timestampevents=True,
                        time_scale=TIME_SCALE, dialplan=DIALPLAN.read_text(),
                        auth_fail_delay_s=0.05)
    await fake.start()
    voice.ami_port = fake.port
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    adapter = factory.build_voice_adapter(service, cfg,
                                          env={voice.ami_secret_env: SECRET},
                                          ivr_clock=lambda: OFFICE_HOURS)
    await adapter.start()
    fake.route_agi("127.0.0.1:4573", ("127.0.0.1", adapter.agi.port))
    dispatcher = Dispatcher(store, cfg, "bench-recording")
    feed = EventFeed(redis, Keys(), adapter, "bench-recording")
    await feed.ensure_group()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(dispatcher.run(stop)), asyncio.create_task(feed.run(stop))]
    tap = await RawAmi.connect(fake.port)
    templates: dict[str, Template] = {}
    try:
        for number, (scenario, _share) in enumerate(MIX):
            templates[scenario] = await record_call(fake, service, tap, scenario,
                                                    f"60123450{number}")
            say(f"  {scenario}: {len(templates[scenario].events)} events, "
                f"{templates[scenario].duration_us / 1e6:.2f} s")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await tap.close()
        await adapter.stop()
        await fake.stop()
    return templates


async def router_events(service: RoutingService, kind: str) -> int:
    return sum(f.get("ev") == kind for _id, f in await service.store.redis.xrange("cl:events"))


async def record_call(fake: FakeAsterisk, service: RoutingService, tap: RawAmi, scenario: str,
                      number: str) -> Template:
    first = len(tap.messages)
    caller = fake.add_caller(kind="pjsip", callerid_num=number, callerid_name="Jan Kowalski")
    caller.answer_prompts(*LOCAL_TAXES)

    async def queued() -> bool:
        return await service.find_external(Channel.voice, caller.uniqueid) is not None

    await until(queued, 15, f"recording {scenario}: the IVR did not queue the call")
    await asyncio.sleep(HOLD_S)  # music on hold, position announcements
    if scenario == "abandon":
        caller.hangup()
    else:
        fake.set_agent_behaviour(PHONE, "noanswer" if scenario == "rna" else "answer_after:3")
        misses = await router_events(service, "RINGNOANSWER")
        await service.agent_login(AGENT, ready=True)
        if scenario == "rna":
            async def missed() -> bool:
                return await router_events(service, "RINGNOANSWER") > misses

            await until(missed, 15, "recording rna: no ring-no-answer")
            await asyncio.sleep(HOLD_S / 2)  # back on hold for a while
            caller.hangup()
        else:
            await caller.wait_state("talking", within_s=15)
            await asyncio.sleep(TALK_S)
            if scenario == "agent_ends":
                fake.hangup_agent(PHONE)
            else:
                caller.hangup()
    await asyncio.wait_for(caller.gone, 15)
    await until(lambda: not fake.channels, 15, f"recording {scenario}: channels left")
    await asyncio.sleep(0.3)  # the last frames reach the tap
    if scenario != "abandon":
        await service.agent_state(AGENT, "offline")
    events = []
    for message in tap.messages[first:]:
        pairs = [tuple(line.split(": ", 1)) for line in message.split("\r\n")]
        if pairs and pairs[0][0] == "Event" and all(len(p) == 2 for p in pairs):
            events.append([(p[0], p[1]) for p in pairs])
    outcome = {
        d["Variable"]: d.get("Value", "")
        for d in map(dict, events)
        if d["Event"] == "VarSet" and d.get("Uniqueid") == caller.uniqueid
        and d.get("Variable", "").startswith("CITYLINE_")
    }
    if "CITYLINE_QUEUE" not in outcome:
        raise RuntimeError(f"recording {scenario}: the IVR did not route the call")
    return Template(scenario, events, caller.uniqueid, caller.name, number, outcome)


# --- 2. cloning the calls into one stream -----------------------------------------------------

@dataclass
class Clone:
    template: Template
    shift_us: int
    uids: dict[str, str]
    seqs: dict[str, str]
    bridges: dict[str, str]

    def rewrite(self, key: str, value: str) -> str:
        if key == "Timestamp":
            us = micros(value) + self.shift_us
            return f"{us // 1_000_000}.{us % 1_000_000:06d}"
        if value in self.uids:
            return self.uids[value]
        if value in self.bridges:
            return self.bridges[value]
        if "/" in value:
            return _CHAN_SEQ.sub(lambda m: m.group(1) + self.seqs.get(m.group(2), m.group(2)),
                                 value)
        return value

    @property
    def uniqueid(self) -> str:
        return self.uids[self.template.caller_uniqueid]

    @property
    def channel(self) -> str:
        return self.rewrite("Channel", self.template.caller_channel)


@dataclass
class Stream:
    data: bytes
    events: int
    clones: list[Clone]
    peak_concurrent: int
    per_call: dict[str, int]


def scenario_of(index: int) -> str:
    slot = index % sum(share for _, share in MIX)
    for scenario, share in MIX:
        if slot < share:
            return scenario
        slot -= share
    raise AssertionError("unreachable")


def build_stream(templates: Mapping[str, Template], calls: int, seed: int) -> Stream:
    rng = random.Random(seed)
    born: dict[str, dict[str, int]] = {}  # per call: uniqueid -> stamp of its first event
    for name, t in templates.items():
        first: dict[str, int] = {}
        for event, stamp in zip(t.events, t.stamps, strict=True):
            for key, value in event:
                if key in _UID_KEYS and value:
                    first.setdefault(value, stamp)
        born[name] = first
    shortest = min(t.duration_us for t in templates.values())
    stagger = max(1, shortest // (2 * calls))  # every call has started before any has ended
    longest = max(t.duration_us for t in templates.values())
    start = int(time.time() * 1e6) - longest - stagger * calls  # a stretch of the recent past
    uid_seq, chan_seq = 1000, 0x1000
    clones = []
    for i in range(calls):
        t = templates[scenario_of(i)]
        shift = start + i * stagger - t.stamps[0]
        uids = {}  # Asterisk's uniqueid: the channel's creation second, a global sequence
        for old, stamp in sorted(born[t.scenario].items(), key=lambda item: item[1]):
            uids[old] = f"{(stamp + shift) // 1_000_000}.{uid_seq}"
            uid_seq += 1
        seqs = {}
        bridges = {}
        for event in t.events:
            for _key, value in event:
                for m in _CHAN_SEQ.finditer(value):
                    if m.group(2) not in seqs:
                        seqs[m.group(2)] = f"{chan_seq:08x}"
                        chan_seq += 1
                if _UUID.match(value) and value not in bridges:
                    bridges[value] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        clones.append(Clone(t, shift, uids, seqs, bridges))
    order = sorted((c.template.stamps[k] + c.shift_us, i, k)
                   for i, c in enumerate(clones) for k in range(len(c.template.events)))
    frames = []
    for _stamp, i, k in order:
        c = clones[i]
        frames.append(encode((key, c.rewrite(key, value)) for key, value in c.template.events[k]))
    # the most calls up at one moment: each call lives from its first to its last event
    edges = sorted([(c.template.stamps[0] + c.shift_us, 1) for c in clones]
                   + [(c.template.stamps[-1] + c.shift_us, -1) for c in clones])
    live = peak = 0
    for _stamp, step in edges:
        live += step
        peak = max(peak, live)
    per_call = {name: len(t.events) for name, t in templates.items()}
    return Stream(b"".join(frames), len(frames), clones, peak, per_call)


# --- 3. the runs ------------------------------------------------------------------------------

@dataclass
class Run:
    seconds: float
    events: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def logged_in(fake: FakeAsterisk) -> None:
    await fake.wait_sessions(1, within_s=10)
    await asyncio.sleep(0.2)  # FullyBooted and the like are read before the stream starts


async def time_inject(fake: FakeAsterisk, stream: Stream, done: asyncio.Future[float]) -> Run:
    started = time.perf_counter()
    fake.inject(stream.data)
    finished = await asyncio.wait_for(done, RUN_TIMEOUT_S)
    return Run(finished - started, stream.events)


class Counting:
    """Counts events; resolves `done` (with the time) when `target` more have been seen."""

    def __init__(self) -> None:
        self.count = 0
        self.target: int | None = None
        self.done: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def expect(self, more: int) -> None:
        self.target = self.count + more

    def seen(self) -> None:
        self.count += 1
        if self.count == self.target and not self.done.done():
            self.done.set_result(time.perf_counter())


async def ceiling_run(fake: FakeAsterisk, stream: Stream) -> Run:
    """panoramisk alone: its parser and its dispatch, a callback that only counts."""
    counter = Counting()
    manager = Manager(loop=asyncio.get_running_loop(), host=fake.host, port=fake.port,
                      username="cityline", secret=SECRET, ping_delay=3600, ping_interval=3600)
    manager.register_event("*", lambda _manager, _message: counter.seen())
    await manager.connect()
    try:
        await until(lambda: manager.authenticated, 10, "panoramisk login")
        await logged_in(fake)
        counter.expect(stream.events)
        return await time_inject(fake, stream, counter.done)
    finally:
        # closed from our side first, so panoramisk schedules no reconnect
        manager.close()
        await until(lambda: not fake.sessions, 5, "panoramisk disconnect")


def ami_settings(fake: FakeAsterisk) -> AmiSettings:
    return AmiSettings(host=fake.host, port=fake.port, username="cityline",
                       secret=SecretStr(SECRET))


async def reader_run(fake: FakeAsterisk, stream: Stream) -> Run:
    """The production AmiConnection with an async callback that only counts."""
    counter = Counting()

    async def noop(_name: str, _event: Mapping[str, str]) -> None:
        counter.seen()

    ami = AmiConnection(ami_settings(fake))
    ami.on_event(noop)
    await ami.start()
    try:
        await logged_in(fake)
        counter.expect(stream.events)
        return await time_inject(fake, stream, counter.done)
    finally:
        await ami.stop()
        await until(lambda: not fake.sessions, 5, "AmiConnection disconnect")


class TimedVoiceAdapter(VoiceAdapter):
    """The production adapter; `on_ami_event` timed and counted (nothing else differs)."""

    counter: Counting
    times: dict[str, list[float]]
    max_lag_s: float

    def arm(self) -> None:
        self.counter = Counting()
        self.times = {"acted_on": [], "ignored": []}
        self.max_lag_s = 0.0

    async def on_ami_event(self, name: str, fields: Mapping[str, str]) -> None:
        t0 = time.perf_counter()
        received = getattr(fields, "received_at", None)
        if received is not None:
            self.max_lag_s = max(self.max_lag_s, time.time() - received)
        await super().on_ami_event(name, fields)
        self.times["acted_on" if name in ACTED_ON else "ignored"].append(
            time.perf_counter() - t0)
        self.counter.seen()


def bench_config(fake: FakeAsterisk) -> CitylineConfig:
    cfg = load_config(None, env={})
    voice = cfg.channels.voice
    voice.ami_username = "cityline"
    voice.ami_port = fake.port
    voice.fastagi_port = 0
    return cfg


async def prepare_calls(service: RoutingService, cfg: CitylineConfig, adapter: VoiceAdapter,
                        stream: Stream) -> Counter[str]:
    """Every call as the IVR leaves it (queued, tracked), the answered and ring-no-answer ones
    offered to an agent each. Returns the router events the stream must cause."""
    sem = asyncio.Semaphore(32)

    async def route(clone: Clone) -> None:
        env = AgiEnv.from_headers({
            "agi_channel": clone.channel, "agi_uniqueid": clone.uniqueid,
            "agi_callerid": clone.template.caller_number, "agi_calleridname": "Jan Kowalski",
            "agi_network_script": "ivr",
        }, cfg.city.country)
        async with sem:
            await adapter.on_outcome(env, clone.template.routed())

    offered = [c for c in stream.clones if c.template.scenario in OFFERED]
    waiting = [c for c in stream.clones if c.template.scenario not in OFFERED]
    await asyncio.gather(*(route(c) for c in offered))
    model = service.profile(AGENT)

    async def login(i: int) -> None:
        profile = AgentProfile(id=f"bench.agent{i:04d}", name=f"Agent {i}",
                               skills=dict(model.skills), capacity=dict(model.capacity),
                               endpoint=f"PJSIP/{2000 + i}")
        async with sem:
            await service.store.agent_login(profile, service.blending, ready=True)

    await asyncio.gather(*(login(i) for i in range(len(offered))))
    dispatcher = Dispatcher(service.store, cfg, "bench")
    made = 0
    for _ in range(100):
        made += await dispatcher.match_round()
        if made >= len(offered):
            break
    if made != len(offered):
        raise RuntimeError(f"only {made} of {len(offered)} calls were offered to an agent")
    await asyncio.gather(*(route(c) for c in waiting))  # no free agent left: they wait
    expected: Counter[str] = Counter()
    for clone in stream.clones:
        expected.update(EXPECTED[clone.template.scenario])
    return expected


async def adapter_run(fake: FakeAsterisk, redis: aioredis.Redis, stream: Stream
                      ) -> dict[str, Any]:
    cfg = bench_config(fake)
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    with mock.patch.object(factory, "VoiceAdapter", TimedVoiceAdapter):
        adapter = factory.build_voice_adapter(service, cfg,
                                              env={cfg.channels.voice.ami_secret_env: SECRET})
    assert isinstance(adapter, TimedVoiceAdapter)
    adapter.arm()
    # connect (and reconcile, with no call yet) before the interactions exist
    await adapter.start()
    try:
        await logged_in(fake)
        expected = await prepare_calls(service, cfg, adapter, stream)
        last = (await redis.xrevrange("cl:events", count=1))[0][0]
        adapter.arm()
        adapter.counter.expect(stream.events)
        run = await time_inject(fake, stream, adapter.counter.done)
    finally:
        await adapter.stop()
        await until(lambda: not fake.sessions, 5, "adapter disconnect")
    seen: Counter[str] = Counter()
    for _id, f in await redis.xrange("cl:events", min=f"({last}"):
        if f.get("ev") in {e for v in EXPECTED.values() for e in v}:
            seen[f["ev"]] += 1
    times = adapter.times
    every = times["acted_on"] + times["ignored"]

    def summary(values: list[float]) -> dict[str, float]:
        us = [v * 1e6 for v in values]
        return {"n": len(us), "p50_us": round(pct(us, 0.5), 1), "p99_us": round(pct(us, 0.99), 1),
                "mean_us": round(statistics.mean(us), 1) if us else float("nan"),
                "max_us": round(max(us or [0.0]), 1)}

    changes = sum(seen.values())
    return {
        "run": run,
        "state_changes": dict(sorted(seen.items())),
        "state_changes_total": changes,
        "state_changes_expected": sum(expected.values()),
        "state_changes_ok": seen == expected,
        "state_changes_per_s": round(changes / run.seconds),
        "handler_all": summary(every),
        "handler_acted_on": summary(times["acted_on"]),
        "handler_ignored": summary(times["ignored"]),
        "max_lag_s": round(adapter.max_lag_s, 2),
    }


async def main(calls: int, seed: int, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {"calls": calls, "seed": seed, "repeat": repeat}
    rates: dict[str, list[float]] = {"ceiling": [], "reader": [], "adapter": []}
    adapter_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", appendonly=False)
        server.start()
        redis = aioredis.Redis.from_url(server.url, decode_responses=True, max_connections=64)
        try:
            results["redis_version"] = server.version()
            say("1/3 recording one call per scenario through a voice city ...")
            t0 = time.perf_counter()
            templates = await record_templates(redis)
            results["recording_s"] = round(time.perf_counter() - t0, 1)
            say(f"2/3 cloning into {calls} concurrent calls ...")
            t0 = time.perf_counter()
            stream = build_stream(templates, calls, seed)
            results["render_s"] = round(time.perf_counter() - t0, 1)
            results["events"] = stream.events
            results["bytes"] = len(stream.data)
            results["events_per_call"] = stream.per_call
            results["calls_per_scenario"] = dict(Counter(c.template.scenario
                                                         for c in stream.clones))
            results["peak_concurrent_calls"] = stream.peak_concurrent
            say(f"  {stream.events} events, {len(stream.data) / 1e6:.1f} MB, "
                f"peak {stream.peak_concurrent} calls up at once")
            fake = FakeAsterisk(users={"cityline": SECRET}, timestampevents=True)
            await fake.start()
            try:
                for r in range(1, repeat + 1):
                    say(f"3/3 round {r}/{repeat}: ceiling, reader, adapter ...")
                    ceiling = await ceiling_run(fake, stream)
                    reader = await reader_run(fake, stream)
                    await redis.flushall()
                    adapted = await adapter_run(fake, redis, stream)
                    run: Run = adapted.pop("run")
                    adapted["rate"] = run.rate
                    adapted["seconds"] = run.seconds
                    adapter_runs.append(adapted)
                    for name, value in (("ceiling", ceiling.rate), ("reader", reader.rate),
                                        ("adapter", run.rate)):
                        rates[name].append(value)
                    say(f"  panoramisk {ceiling.rate:,.0f}/s, AmiConnection {reader.rate:,.0f}/s,"
                        f" adapter {run.rate:,.0f}/s ({run.seconds:.2f} s, "
                        f"{adapted['state_changes_total']} state changes)")
            finally:
                await fake.stop()
        finally:
            await redis.aclose()
            server.stop()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        results[f"{name}_events_per_s"] = round(value)
        results[f"{name}_events_per_s_runs"] = [round(v) for v in rates[name]]
    results["ratio_adapter_to_ceiling"] = round(medians["adapter"] / medians["ceiling"], 3)
    results["ratio_reader_to_ceiling"] = round(medians["reader"] / medians["ceiling"], 3)
    results["ratio_adapter_to_reader"] = round(medians["adapter"] / medians["reader"], 3)
    # every adapter run must have made exactly the expected state changes; the details below
    # are those of the median run
    ok = all(a["state_changes_ok"] for a in adapter_runs)
    median_run = sorted(adapter_runs, key=lambda a: a["rate"])[len(adapter_runs) // 2]
    median_run.pop("rate")
    results["adapter_s"] = round(median_run.pop("seconds"), 3)
    results.update(median_run)
    results["state_changes_ok"] = ok
    return results


def report(f: dict[str, Any]) -> None:
    mix = ", ".join(f"{n} {name}" for name, n in f["calls_per_scenario"].items())
    print(f"stream: {f['calls']} calls ({mix}), {f['events']:,} AMI events, "
          f"{f['bytes'] / 1e6:.1f} MB, {f['peak_concurrent_calls']} calls up at once")
    print(f"events per second, median of {f['repeat']} rounds:")
    c = f["ceiling_events_per_s"]
    print(f"ceiling, panoramisk parse only:   {c:>9,} events/s")
    print(f"AmiConnection, no-op callback:    {f['reader_events_per_s']:>9,} events/s "
          f"({f['ratio_reader_to_ceiling']:.0%} of the ceiling)")
    print(f"adapter, parse -> state change:   {f['adapter_events_per_s']:>9,} events/s "
          f"({f['ratio_adapter_to_ceiling']:.0%} of the ceiling)")
    ok = "as expected" if f["state_changes_ok"] else "NOT AS EXPECTED"
    kinds = ", ".join(f"{k} {v}" for k, v in f["state_changes"].items())
    print(f"state changes: {f['state_changes_total']:,} of {f['state_changes_expected']:,} "
          f"({ok}: {kinds}), {f['state_changes_per_s']:,}/s")
    for label, key in (("every event", "handler_all"), ("acted on", "handler_acted_on"),
                       ("ignored", "handler_ignored")):
        h = f[key]
        print(f"adapter time per event, {label:<11} p50 {h['p50_us']:>7} us, "
              f"p99 {h['p99_us']:>8} us  (n={h['n']:,})")
    print(f"the adapter fell up to {f['max_lag_s']} s behind the wire (whole stream at once)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="concurrent calls (1000)")
    parser.add_argument("--quick", action="store_true", help="200 calls")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the three runs; medians are reported (3)")
    parser.add_argument("--seed", type=int, default=7, help="bridge ids of the clones")
    args = parser.parse_args()
    figures = asyncio.run(main(200 if args.quick else args.calls, args.seed,
                               max(1, args.repeat)))
    report(figures)
    if not figures["state_changes_ok"]:
        say("the adapter did not make the expected state changes: the rate is not valid")
    print(json.dumps(figures, sort_keys=True))
    sys.exit(0 if figures["state_changes_ok"] else 1)
