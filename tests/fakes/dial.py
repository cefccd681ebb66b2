"""Dial(), the outgoing channels it creates and the two-party bridge, as in the captures.

connect-agent-answers.txt / connect-agent-noanswer.txt fix the order (surprises 16, 18-20):
Dial resets its eleven output variables, creates the Local pair of the agent's phone
(``AppDial`` on the ;1), ``DialBegin`` carries the caller's and the callee's fields; ringing
gives ``RINGTIME=0`` and ``DialState RINGING``; an answer gives ``DIALSTATUS=ANSWER`` ...
``DialEnd ANSWER``, ``BridgeCreate`` and ``BridgeEnter`` (agent leg first). When one side hangs
up, both get ``BRIDGEPEER`` cleared, the leaving one gets ``BridgeLeave`` then ``Hangup``, the
caller leaves, Dial sets ANSWEREDTIME/DIALEDTIME and the bridge is destroyed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from typing import TYPE_CHECKING

from tests.fakes.ami_codec import DOWN, Pairs
from tests.fakes.apps import indicate
from tests.fakes.channel import TIMEOUT, Channel, Interrupt
from tests.fakes.dialplan import split_args
from tests.fakes.pbx import APP_RETURN_HANGUP

if TYPE_CHECKING:
    from tests.fakes.pbx import Pbx

DIAL_VARIABLES = (
    "DIALSTATUS",
    "DIALEDPEERNUMBER",
    "DIALEDPEERNAME",
    "ANSWEREDTIME",
    "ANSWEREDTIME_MS",
    "DIALEDTIME",
    "DIALEDTIME_MS",
    "RINGTIME",
    "RINGTIME_MS",
    "PROGRESSTIME",
    "PROGRESSTIME_MS",
)
INDICATION_STATUS = {"busy": "BUSY", "congestion": "CONGESTION", "hangup": "NOANSWER"}


class Bridge:
    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx
        self.uniqueid = str(uuid.uuid4())
        self.members: list[Channel] = []
        self.dissolving = False
        self.ended: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()

    def _fields(self) -> Pairs:
        return [
            ("BridgeUniqueid", self.uniqueid),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
            ("BridgeNumChannels", str(len(self.members))),
            ("BridgeVideoSourceMode", "none"),
        ]

    def create(self) -> None:
        self.pbx.emit("BridgeCreate", self._fields())

    def enter(self, chan: Channel) -> None:
        self.members.append(chan)
        chan.bridge = self
        self.pbx.emit("BridgeEnter", [*self._fields(), *chan.block_fields()])

    def leave(self, chan: Channel) -> None:
        if chan not in self.members:
            return
        self.members.remove(chan)
        chan.bridge = None
        self.dissolving = True
        self.pbx.emit("BridgeLeave", [*self._fields(), *chan.block_fields()])

    def clear_peers(self, first: Channel) -> None:
        if self.dissolving:
            return
        for member in [first, *(m for m in self.members if m is not first)]:
            self.pbx.varset(member, "BRIDGEPEER", "")

    def member_hung_up(self, chan: Channel) -> None:
        """Called from the Hangup of a member: it leaves, the other side is told."""
        self.clear_peers(chan)
        self.leave(chan)
        if not self.ended.done():
            self.ended.set_result(chan)

    def destroy(self) -> None:
        self.pbx.emit("BridgeDestroy", self._fields())


class Outgoing:
    """A channel being dialled and the indications (ringing, answer, busy...) it sends back."""

    def __init__(self, chan: Channel) -> None:
        self.chan = chan
        self._items: deque[str] = deque()
        self._waiter: asyncio.Future[str] | None = None
        chan.watchers.append(self.push)
        chan.on_gone.append(lambda _chan: self.push("hangup"))

    def push(self, what: str) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(what)
        else:
            self._items.append(what)

    def next(self) -> asyncio.Future[str]:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()  # the previous wait timed out: later indications queue up
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self._items:
            future.set_result(self._items.popleft())
        else:
            self._waiter = future
        return future


def set_callerid(chan: Channel, num: str | None, name: str | None) -> None:
    chan.cid_num, chan.cid_name = num, name


def local_callee(
    pbx: Pbx,
    exten: str,
    context: str,
    *,
    linkedid: str | None,
    caller: Channel | None = None,
    callerid: tuple[str | None, str | None] | None = None,
    variables: list[tuple[str, str]] | None = None,
) -> tuple[Channel, Channel, bool]:
    """Create the Local pair to dial and emit its set-up events. Returns (;1, ;2, exists).

    Dial (a `caller` given): ``VarSet DIALEDPEERNUMBER`` on ;1, ``Newexten AppDial``, the
    caller-ID events, the same for ;2. Originate: ``Newexten AppDial2`` on ;1, the Variables
    (on ;1 in reverse order, as captured), the caller-ID events, then ;2.
    """
    one, two = pbx.new_local_pair(exten, context, linkedid)
    exists = pbx.dialplan.exists(context, exten)
    dialled = f"{exten}@{context}"
    if caller is not None:
        pbx.varset(one, "DIALEDPEERNUMBER", dialled)
        set_callerid(one, exten, caller.cid_name)
        one.conn_num, one.conn_name = caller.cid_num, caller.cid_name
        one.app, one.appdata = "AppDial", "(Outgoing Line)"
        pbx.newexten(one, "AppDial", "(Outgoing Line)")
        pbx.callerid_events(one)
        pbx.varset(two, "DIALEDPEERNUMBER", dialled)
        set_callerid(two, caller.cid_num, caller.cid_name)
        two.conn_num, two.conn_name = exten, caller.cid_name
        pbx.callerid_events(two)
    else:
        one.app, one.appdata = "AppDial2", "(Outgoing Line)"
        pbx.newexten(one, "AppDial2", "(Outgoing Line)")
        for name, value in reversed(variables or []):
            pbx.varset(one, name, value)
        if callerid is not None:
            set_callerid(one, *callerid)
            pbx.chan_event("NewCallerid", one, ("CID-CallingPres", _PRES))
            one.conn_num, one.conn_name = callerid
            pbx.chan_event("NewConnectedLine", one)
        for name, value in variables or []:
            pbx.varset(two, name, value)
        if callerid is not None:
            set_callerid(two, *callerid)
            two.conn_num, two.conn_name = callerid
            pbx.callerid_events(two)
    if exists:
        pbx.local_bridge(one, two)
    return one, two, exists


_PRES = "0 (Presentation Allowed, Not Screened)"


def drop_unknown_pair(
    pbx: Pbx, one: Channel, two: Channel, between: list[Pairs] | None = None
) -> None:
    """A Local pair to an extension that does not exist: both halves end, cause 0, INVALID."""
    for chan in (two, one):
        chan.dead = chan.hanging_up = True
        chan.end_device_state = "INVALID"
        pbx.chan_event("Hangup", chan, ("Cause", "0"), ("Cause-txt", "Unknown"))
        if chan is two and between:
            for pairs in between:
                pbx.emit(pairs[0][1], pairs[1:])
    for chan in (one, two):
        pbx.device_state(chan.device, "INVALID")
        for callback in list(chan.on_gone):
            callback(chan)


def pjsip_callee(
    pbx: Pbx, resource: str, *, linkedid: str | None, caller: Channel | None
) -> Channel:
    """An outgoing PJSIP channel (not captured: modelled on the dialled Local ;1). Its name
    carries the endpoint: PJSIP/1001-0000000a, PJSIP/trunk-0000000b for 4860...@trunk."""
    user, _, endpoint = resource.partition("@")
    chan = pbx.new_channel(
        "PJSIP", endpoint or user, context="default", exten="s", state=DOWN, linkedid=linkedid
    )
    if caller is not None:
        set_callerid(chan, user, caller.cid_name)
        chan.conn_num, chan.conn_name = caller.cid_num, caller.cid_name
        pbx.callerid_events(chan)
    chan.app, chan.appdata = "AppDial", "(Outgoing Line)"
    pbx.spawn(_run_phone(pbx, chan, pbx.phone_behaviour(resource) or "answer"))
    return chan


async def _run_phone(pbx: Pbx, chan: Channel, behaviour: str) -> None:
    """What a (PJSIP) agent phone does when called: the same behaviours as Local agents."""
    from tests.fakes.apps import answer

    kind, _, arg = behaviour.partition(":")
    await asyncio.sleep(0)  # the caller's DialBegin goes first
    if kind in ("busy", "congested"):
        chan.hangupcause = 17 if kind == "busy" else 34
        indicate(pbx, chan, "busy" if kind == "busy" else "congestion")
        return
    indicate(pbx, chan, "ringing")
    if kind == "noanswer":
        return
    if kind == "answer_after":
        await pbx.sleep(float(arg or 0))
    if not chan.dead:
        answer(pbx, chan)
        for watcher in list(chan.watchers):
            watcher("answer")


def dial_begin_fields(caller: Channel | None, callee: Channel) -> Pairs:
    return [*(caller.block_fields() if caller else []), *callee.block_fields("Dest")]


async def dial(pbx: Pbx, chan: Channel, data: str) -> str | None:
    args = split_args(data)
    target = args[0].split("&")[0].strip()
    timeout = float(args[1]) if len(args) > 1 and args[1].strip() else None
    options = args[2] if len(args) > 2 else ""
    for name in DIAL_VARIABLES:
        pbx.varset(chan, name, "")
    started = pbx.clock()
    tech, _, resource = target.partition("/")
    resource = resource.split("/")[0]
    if tech.lower() == "local":
        exten, _, context = resource.partition("@")
        one, two, exists = local_callee(
            pbx, exten, context or "default", linkedid=chan.linkedid, caller=chan
        )
        if not exists:
            drop_unknown_pair(pbx, one, two)
            pbx.varset(chan, "DIALSTATUS", "CHANUNAVAIL")
            return None
        callee, dial_string = one, resource
    elif tech.upper() == "PJSIP" and pbx.phone_behaviour(resource) is not None:
        callee = pjsip_callee(pbx, resource, linkedid=chan.linkedid, caller=chan)
        dial_string, two = resource, None
    else:
        pbx.varset(chan, "DIALSTATUS", "CHANUNAVAIL")
        return None
    out = Outgoing(callee)
    pbx.emit("DialBegin", [*dial_begin_fields(chan, callee), ("DialString", dial_string)])
    if two is not None:
        pbx.start_pbx(two)
    moh = _moh_option(options)
    if moh:
        pbx.moh_start(chan, moh)
    status = await _wait_answer(pbx, chan, out, timeout, started)
    pbx.moh_stop(chan)
    if status != "ANSWER":
        pbx.emit("DialEnd", [*dial_begin_fields(chan, callee), ("DialStatus", status)])
        pbx.finalize(callee, 0)
        pbx.varset(chan, "DIALSTATUS", status)
        return None
    return await _bridge(pbx, chan, callee, dial_string, options)


def _moh_option(options: str) -> str | None:
    index = options.find("m")
    if index < 0:
        return None
    rest = options[index + 1 :]
    if rest.startswith("("):
        return rest[1 : rest.index(")")] or "default"
    return "default"


async def _wait_answer(
    pbx: Pbx, chan: Channel, out: Outgoing, ring_s: float | None, started: float
) -> str:
    deadline = None if ring_s is None else asyncio.get_running_loop().time() + pbx.scale(ring_s)
    rang = False
    while True:
        remaining = None
        if deadline is not None:
            remaining = max(0.0, deadline - asyncio.get_running_loop().time()) / pbx.time_scale
        try:
            what = await chan.block(remaining, out.next())
        except Interrupt:
            pbx.moh_stop(chan)
            pbx.emit("DialEnd", [*dial_begin_fields(chan, out.chan), ("DialStatus", "CANCEL")])
            pbx.finalize(out.chan, 0)
            pbx.varset(chan, "DIALSTATUS", "CANCEL")
            raise
        if what is TIMEOUT:
            return "NOANSWER"
        if what == "ringing" and not rang:
            rang = True
            elapsed_ms = int((pbx.clock() - started) * 1000)
            pbx.varset(chan, "RINGTIME", str(elapsed_ms // 1000))
            pbx.varset(chan, "RINGTIME_MS", str(elapsed_ms))
            fields = [*dial_begin_fields(chan, out.chan), ("DialStatus", "RINGING")]
            pbx.emit("DialState", fields)
        elif what == "answer":
            return "ANSWER"
        elif what in INDICATION_STATUS:
            return INDICATION_STATUS[what]


async def _bridge(
    pbx: Pbx, chan: Channel, callee: Channel, dialled: str, options: str
) -> str | None:
    pbx.varset(chan, "DIALSTATUS", "ANSWER")
    pbx.varset(chan, "DIALEDPEERNAME", callee.name)
    pbx.varset(chan, "DIALEDPEERNUMBER", dialled)
    if callee.tech == "Local":
        callee.exten = ""
    pbx.emit("DialEnd", [*dial_begin_fields(chan, callee), ("DialStatus", "ANSWER")])
    bridge = Bridge(pbx)
    bridge.create()
    if callee.tech == "Local":
        pbx.newexten(callee, "AppDial", "(Outgoing Line)")
    bridge.enter(callee)
    bridge.enter(chan)
    pbx.varset(callee, "BRIDGEPEER", chan.name)
    pbx.varset(chan, "BRIDGEPEER", callee.name)
    try:
        await chan.block(None, bridge.ended)
    except Interrupt:
        bridge.clear_peers(callee)
        bridge.leave(chan)
        _answered_times(pbx, chan)
        pbx.finalize(callee, 16)
        bridge.destroy()
        raise
    bridge.leave(chan)
    _answered_times(pbx, chan)
    bridge.destroy()
    return None if "g" in options.split("(")[0] else APP_RETURN_HANGUP


def _answered_times(pbx: Pbx, chan: Channel) -> None:
    # As captured: both equal the time since the caller's channel was created (5008 ms for a
    # 3.5 s conversation on a channel 5 s old), not the time since the answer.
    elapsed_ms = int((pbx.clock() - chan.created) * 1000)
    for name in ("ANSWEREDTIME", "DIALEDTIME"):
        pbx.varset(chan, name, str(elapsed_ms // 1000))
        pbx.varset(chan, f"{name}_MS", str(elapsed_ms))
    pbx.varset(chan, "DIALSTATUS", "ANSWER")
