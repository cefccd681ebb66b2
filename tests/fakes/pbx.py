"""The fake PBX's core: channels, the events they cause, the dialplan runner, hanging up.

Every event goes through `Pbx.emit`, which hands it to the AMI server (tests/fakes/ami_server.py)
and records it with its time in `Pbx.event_log`. The hang-up rules reproduce the captures
(surprise 17 in CAPTURES.md):

* a channel running dialplan that is told to hang up (AMI Hangup, its Local partner, a SIP BYE)
  first finishes its application (``MusicOnHoldStop``), then ``SoftHangupRequest`` with
  ``Cause: 16``, then the ``h`` extension of its context if there is one, then ``Hangup``;
* a hang-up that reaches it from the other side (partner, BYE) is announced first by
  ``HangupRequest`` (with ``Cause`` from the partner; a BYE has no ``Cause`` line);
* a Local half that runs no dialplan (the originated ``;1`` running ``Wait``, the dialled ``;1``
  of a Dial) hangs up at once, without SoftHangupRequest;
* when one Local half hangs up, its partner gets ``HangupRequest`` before the ``Hangup`` of the
  first, and the ``;1`` gets ``VarSet CHANLOCALSTATUS`` first if the ``;2`` had dialled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tests.fakes.ami_codec import CAUSE_TEXT, DOWN, RING, RINGING, UP, Pairs
from tests.fakes.channel import AsyncGoto, Channel, HangUpNow, Interrupt, SoftHangup
from tests.fakes.dialplan import CAPTURE_DIALPLAN, Dialplan
from tests.fakes.dialplan_expr import Expander, channel_expander
from tests.fakes.queues import QueueModel

logger = logging.getLogger(__name__)

EventSink = Callable[[str, Pairs, str, float], None]  # (event, fields, category, time)
APP_RETURN_HANGUP = "hangup"  # an application's result: stop the dialplan and hang up
APP_RETURN_JUMP = "jump"  # an application moved context/exten/priority itself (Goto)
# Lengths of the prompts in the captures, in 8 kHz samples as STREAM FILE's endpos counts them
# (hello-world: endpos=11360; beep: GET DATA beep 5000 took 5.445 s); others play one second.
PROMPT_SAMPLES = {"hello-world": 11360, "beep": 3560, "demo-congrats": 48000}
DEFAULT_PROMPT_SAMPLES = 8000


class Pbx:
    def __init__(
        self,
        *,
        dialplan: str | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        time_scale: float = 1.0,
        order_seed: int | None = None,
        pjsip_caller_end_state: str = "UNAVAILABLE",
    ) -> None:
        self.env = dict(env or {})
        self.dialplan = Dialplan.parse(dialplan or CAPTURE_DIALPLAN, self.env)
        self.globals = self.dialplan.globals
        self.clock = clock
        self.time_scale = time_scale
        self.order_rng = random.Random(order_seed) if order_seed is not None else None
        self.pjsip_caller_end_state = pjsip_caller_end_state
        self.sinks: list[EventSink] = []
        self.event_log: list[tuple[float, str, Pairs]] = []
        self.channels: dict[str, Channel] = {}
        self.queues = QueueModel(self)
        self.boot_time = clock()
        self.calls_processed = 0
        self.endpoint_behaviour: dict[str, str] = {}
        self.prompts: dict[str, int] = dict(PROMPT_SAMPLES)
        # where the FastAGI server named in the dialplan really listens (host, port) -> address
        self.agi_routes: dict[tuple[str, int], tuple[str, int]] = {}
        self.missing_prompts: set[str] = set()
        self._uid = 0
        self._seq: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._change_waiters: set[asyncio.Future[None]] = set()

    # --- time and tasks ----------------------------------------------------------------------
    def scale(self, seconds: float) -> float:
        return seconds * self.time_scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.scale(seconds))

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "fake-pbx") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("fake pbx task %s failed", task.get_name(), exc_info=task.exception())

    async def shutdown(self) -> None:
        """Cancel every call's task (a stop or restart of the fake Asterisk)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def coin(self) -> bool:
        """A thread race Asterisk may win either way (surprise 5): always False without an
        order seed (the captures' most common order), a seeded coin with one."""
        return self.order_rng is not None and self.order_rng.random() < 0.5

    def shuffled(self, items: list[Any]) -> list[Any]:
        """The order Asterisk's threads happen to produce: fixed unless an order seed is set."""
        if self.order_rng is not None:
            items = list(items)
            self.order_rng.shuffle(items)
        return items

    def phone_behaviour(self, resource: str) -> str | None:
        """How the phone dialled as PJSIP/<resource> behaves: by the whole resource
        ("48601234567@trunk"), its user part, or its endpoint ("trunk")."""
        user, _, endpoint = resource.partition("@")
        for key in (resource, user, endpoint):
            if key and key in self.endpoint_behaviour:
                return self.endpoint_behaviour[key]
        return None

    def prompt_samples(self, name: str) -> int:
        base = name.rsplit("/", 1)[-1]
        return self.prompts.get(name, self.prompts.get(base, DEFAULT_PROMPT_SAMPLES))

    # --- events ------------------------------------------------------------------------------
    def emit(self, event: str, fields: Pairs, category: str = "call") -> None:
        """Send an event; its time (the ``Timestamp`` header with timestampevents) is the one
        `event_log` and `FakeAsterisk.find_events` report."""
        stamp = self.clock()
        self.event_log.append((stamp, event, list(fields)))
        for sink in self.sinks:
            sink(event, fields, category, stamp)
        self.poke()

    def poke(self) -> None:
        """Wake `wait_until` callers: something they may be waiting for has changed."""
        waiters, self._change_waiters = self._change_waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool], within_s: float) -> None:
        """Until `predicate()` holds, re-checked after every event; TimeoutError after
        `within_s` real seconds."""
        async with asyncio.timeout(within_s):
            while not predicate():
                waiter = asyncio.get_running_loop().create_future()
                self._change_waiters.add(waiter)
                await waiter

    def chan_event(
        self, event: str, chan: Channel, *extra: tuple[str, str], cat: str = "call"
    ) -> None:
        self.emit(event, [*chan.block_fields(), *extra], cat)

    def newexten(self, chan: Channel, app: str, data: str) -> None:
        self.chan_event(
            "Newexten", chan, ("Extension", chan.exten), ("Application", app), ("AppData", data),
            cat="dialplan",
        )  # fmt: skip

    def varset(self, chan: Channel, name: str, value: str) -> None:
        chan.variables[name] = value
        self.chan_event("VarSet", chan, ("Variable", name), ("Value", value), cat="dialplan")

    def set_global(self, name: str, value: str) -> None:
        self.globals[name] = value
        fields = [("Channel", "none"), ("Uniqueid", "none"), ("Variable", name), ("Value", value)]
        self.emit("VarSet", fields, "dialplan")

    def newstate(self, chan: Channel, state: int) -> None:
        if chan.state == state:
            return
        chan.state = state
        if state == UP and chan.answered is None:
            chan.answered = self.clock()
        self.chan_event("Newstate", chan)
        if state in (UP, RINGING):
            self.device_state(chan.device, "INUSE")

    def callerid_events(self, chan: Channel) -> None:
        pres = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
        self.chan_event("NewCallerid", chan, pres)
        self.chan_event("NewConnectedLine", chan)

    def device_state(self, device: str, state: str) -> None:
        self.emit("DeviceStateChange", [("Device", device), ("State", state)])
        self.queues.device_changed(device, state)

    def moh_start(self, chan: Channel, klass: str) -> None:
        chan.moh_class = klass
        chan.writeformat = "gsm"
        self.chan_event("MusicOnHoldStart", chan, ("Class", klass))

    def moh_stop(self, chan: Channel) -> None:
        if chan.moh_class is None:
            return
        chan.moh_class = None
        chan.writeformat = "slin"
        self.chan_event("MusicOnHoldStop", chan)

    # --- channels ----------------------------------------------------------------------------
    def new_uniqueid(self) -> str:
        uid = f"{int(self.clock())}.{self._uid}"
        self._uid += 1
        return uid

    def continue_sequence(self, tech: str, number: int) -> None:
        """The next `tech` channel gets sequence `number` (channel names carry it in hex:
        the captures follow on from each other, Local/311@city-00000004 after 00000003)."""
        self._seq[tech] = number

    def _next_seq(self, tech: str) -> str:
        number = self._seq.get(tech, 0)
        self._seq[tech] = number + 1
        return f"{number:08x}"

    def new_channel(
        self,
        tech: str,
        resource: str,
        *,
        context: str,
        exten: str,
        state: int,
        linkedid: str | None = None,
        suffix: str = "",
        seq: str | None = None,
        callerid: tuple[str | None, str | None] = (None, None),
    ) -> Channel:
        seq = seq or self._next_seq(tech)
        uid = self.new_uniqueid()
        device = f"{tech}/{resource}"
        chan = Channel(
            name=f"{device}-{seq}{suffix}",
            tech=tech,
            device=device,
            uniqueid=uid,
            linkedid=linkedid or uid,
            created=self.clock(),
            context=context,
            exten=exten,
            state=state,
            time_scale=self.scale,
        )
        chan.cid_num, chan.cid_name = callerid
        self.channels[chan.name] = chan
        self.chan_event("Newchannel", chan)
        return chan

    def new_local_pair(
        self, exten: str, context: str, linkedid: str | None = None
    ) -> tuple[Channel, Channel]:
        seq = self._next_seq("Local")
        one = self.new_channel(
            "Local", f"{exten}@{context}", context=context, exten=exten, state=DOWN,
            linkedid=linkedid, suffix=";1", seq=seq,
        )  # fmt: skip
        two = self.new_channel(
            "Local", f"{exten}@{context}", context=context, exten=exten, state=RING,
            linkedid=one.linkedid, suffix=";2", seq=seq,
        )  # fmt: skip
        one.partner, two.partner = two, one
        one.leg, two.leg = 1, 2
        self.calls_processed += 1
        return one, two

    def local_bridge(self, one: Channel, two: Channel) -> None:
        fields = [*one.block_fields("LocalOne"), *two.block_fields("LocalTwo")]
        fields += [("Context", two.context), ("Exten", two.exten), ("LocalOptimization", "Yes")]
        self.emit("LocalBridge", fields)

    def find(self, name: str) -> Channel | None:
        chan = self.channels.get(name)
        return chan if chan is not None and not chan.dead else None

    def live_channels(self) -> list[Channel]:
        return [chan for chan in self.channels.values() if not chan.dead]

    # --- expansion ---------------------------------------------------------------------------
    def expander(self, chan: Channel | None) -> Expander:
        """${...} as seen from `chan` (its variables, then the globals)."""
        return channel_expander(chan, self.globals, self.env, self.clock)

    def get_variable(self, chan: Channel | None, name: str) -> str:
        return self.expander(chan).expand("${" + name + "}")

    # --- running dialplan --------------------------------------------------------------------
    def start_pbx(self, chan: Channel) -> None:
        chan.runs_pbx = True
        chan.task = self.spawn(self._pbx_loop(chan), name=f"pbx {chan.name}")

    async def _pbx_loop(self, chan: Channel) -> None:
        cause = 16
        while not chan.dead:
            try:
                await self._run_steps(chan)
            except AsyncGoto as goto:
                chan.clear_interrupt()
                self.goto(chan, goto.context, goto.exten, goto.priority)
                continue
            except SoftHangup as hangup:
                cause = 0 if hangup.cause is None else hangup.cause
            except HangUpNow:
                chan.clear_interrupt()
                chan.priority += 1
                chan.app, chan.appdata = "Hangup", ""
                self.newexten(chan, "Hangup", "")
            break
        if not chan.dead:
            await self._hangup_tail(chan, cause)

    async def _run_steps(self, chan: Channel, *, in_h: bool = False) -> None:
        from tests.fakes.apps import run_app  # apps imports this module

        while not chan.dead:
            step = self.dialplan.step(chan.context, chan.exten, chan.priority)
            if step is None and chan.priority == 1 and self.dialplan.exists(chan.context, "i"):
                # no such extension: Asterisk goes to the context's "i" extension
                self.varset(chan, "INVALID_EXTEN", chan.exten)
                chan.exten = "i"
                continue
            if step is None:
                return  # autofallthrough: the channel hangs up
            app, raw = step
            data = self.expander(chan).expand(raw)
            chan.app, chan.appdata = app, data
            self.newexten(chan, app, data)
            result = await run_app(self, chan, app, data, in_h=in_h)
            if result == APP_RETURN_HANGUP:
                return
            if result != APP_RETURN_JUMP:
                chan.priority += 1

    def goto(self, chan: Channel, context: str, exten: str, priority: int | str) -> None:
        chan.context, chan.exten = context or chan.context, exten or chan.exten
        resolved = self.dialplan.resolve_priority(chan.context, chan.exten, priority)
        chan.priority = resolved if resolved is not None else 1

    async def _hangup_tail(self, chan: Channel, cause: int) -> None:
        """SoftHangupRequest, the ``h`` extension, then the Hangup itself."""
        chan.hanging_up = True
        self.chan_event("SoftHangupRequest", chan, ("Cause", "16"))
        if self.dialplan.exists(chan.context, "h"):
            chan.variables["HANGUPCAUSE"] = str(cause)
            chan.exten, chan.priority = "h", 1
            chan.clear_interrupt()
            with contextlib.suppress(Interrupt):
                await self._run_steps(chan, in_h=True)
        self.finalize(chan, chan.hangupcause if chan.hangupcause is not None else cause)

    # --- hanging up --------------------------------------------------------------------------
    def hangup_request(self, chan: Channel, cause: int | None, *, via: str) -> None:
        """Start a hang-up. `via`: "ami" (the Hangup action), "remote" (a partner or far end
        with a Q.850 cause), "bye" (a SIP BYE: HangupRequest without Cause)."""
        if chan.dead or chan.hanging_up:
            return
        if via == "remote":
            self.chan_event("HangupRequest", chan, ("Cause", str(cause or 0)))
        elif via == "bye":
            self.chan_event("HangupRequest", chan)
        self._deliver(chan, cause, remote=via != "ami")

    def _deliver(self, chan: Channel, cause: int | None, *, remote: bool) -> None:
        if chan.runs_pbx and chan.task is not None and not chan.task.done():
            chan.interrupt(SoftHangup(cause, remote=remote))
            return
        if chan.task is not None and not chan.task.done():
            chan.task.cancel()  # an originated application (Wait) just stops
        self.finalize(chan, 0 if cause is None else cause)

    def finalize(self, chan: Channel, cause: int) -> None:
        """The Hangup event of `chan`, and what it does to its partner and bridge."""
        if chan.dead:
            return
        chan.dead = chan.hanging_up = True
        self.moh_stop(chan)
        if chan.bridge is not None:
            chan.bridge.member_hung_up(chan)
        partner = chan.partner
        notify = partner is not None and not partner.dead and not partner.hanging_up
        if notify and partner is not None:
            if chan.leg == 2 and "DIALSTATUS" in chan.variables:
                self.varset(partner, "CHANLOCALSTATUS", chan.variables["DIALSTATUS"] or "NOANSWER")
            self.chan_event("HangupRequest", partner, ("Cause", str(cause)))
        # A partner running no dialplan ends at once; whose Hangup comes first is a race
        # (coreshowchannels.txt has both orders). Not for a bridged partner: the agent's ;2
        # always hung up before its ;1 left the bridge (surprise 19).
        partner_first = (
            notify
            and partner is not None
            and not partner.runs_pbx
            and partner.bridge is None
            and self.coin()
        )
        if partner_first and partner is not None:
            self._deliver(partner, cause, remote=True)
        self.chan_event(
            "Hangup", chan, ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))
        )
        self.device_state(chan.device, chan.end_device_state)
        if notify and partner is not None and not partner_first:
            self._deliver(partner, cause, remote=True)
        for callback in list(chan.on_gone):
            callback(chan)
