"""The dialplan applications the fake PBX knows, with the events each one causes.

Timings follow the captures: ``Answer()`` on a channel that is not up waits 500 ms before the
next priority (every capture shows Set/AGI 0.5 s after Answer), a prompt plays for its length
(`pbx.PROMPT_SAMPLES`, 8 kHz samples as STREAM FILE's ``endpos`` counts them). An application not
listed here is what Asterisk does with an unknown one: a warning, and the channel hangs up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from tests.fakes.ami_codec import BUSY, RINGING, UP
from tests.fakes.channel import Channel
from tests.fakes.dialplan import split_args
from tests.fakes.dialplan_expr import truthy
from tests.fakes.pbx import APP_RETURN_HANGUP, APP_RETURN_JUMP

if TYPE_CHECKING:
    from tests.fakes.pbx import Pbx

logger = logging.getLogger(__name__)

App = Callable[["Pbx", Channel, str], Awaitable[str | None]]

SAMPLE_RATE = 8000


def answer(pbx: Pbx, chan: Channel) -> None:
    """Answer `chan`; for a Local ;2 the ;1 goes up too and its dialler hears about it."""
    partner = chan.partner
    if partner is None or chan.leg != 2 or partner.dead:
        pbx.newstate(chan, UP)
        return
    # both halves go up; which Newstate comes first is a race (surprise 5)
    first, second = (partner, chan) if pbx.coin() else (chan, partner)
    pbx.newstate(first, UP)
    pbx.newstate(second, UP)
    for watcher in list(partner.watchers):
        watcher("answer")


def indicate(pbx: Pbx, chan: Channel, what: str) -> None:
    """Ringing/Busy/Congestion signalled by `chan` reaches whoever dialled it."""
    target = chan.partner if chan.partner is not None and chan.leg == 2 else chan
    if what == "ringing" and target is not None and target.state != UP:
        pbx.newstate(target, RINGING)
    if target is not None:
        for watcher in list(target.watchers):
            watcher(what)


async def app_noop(pbx: Pbx, chan: Channel, data: str) -> None:
    return None


async def app_answer(pbx: Pbx, chan: Channel, data: str) -> None:
    if chan.state == UP:
        return
    answer(pbx, chan)
    delay_ms = int(data) if data.strip().isdigit() else 500
    await chan.block(delay_ms / 1000)


async def app_set(pbx: Pbx, chan: Channel, data: str) -> None:
    name, _, value = data.partition("=")
    name = name.strip()
    upper = name.upper()
    if upper.startswith("CDR("):
        return
    if upper.startswith("CHANNEL("):
        if upper[8:-1].strip() == "LANGUAGE":
            chan.language = value
        return
    if upper.startswith("GLOBAL("):
        pbx.set_global(name[7:-1], value)
        return
    if upper.startswith("CALLERID("):
        kind = upper[9:-1]
        if kind.startswith("NUM"):
            chan.cid_num = value
        elif kind == "NAME":
            chan.cid_name = value
        return
    pbx.varset(chan, name, value)


async def app_mset(pbx: Pbx, chan: Channel, data: str) -> None:
    for item in split_args(data):
        await app_set(pbx, chan, item)


def _goto(pbx: Pbx, chan: Channel, target: str) -> str:
    parts = [part.strip() for part in split_args(target)]
    if len(parts) == 3:
        pbx.goto(chan, parts[0], parts[1], parts[2])
    elif len(parts) == 2:
        pbx.goto(chan, chan.context, parts[0], parts[1])
    else:
        pbx.goto(chan, chan.context, chan.exten, parts[0])
    return APP_RETURN_JUMP


async def app_goto(pbx: Pbx, chan: Channel, data: str) -> str:
    return _goto(pbx, chan, data)


async def app_gotoif(pbx: Pbx, chan: Channel, data: str) -> str | None:
    cond, _, branches = data.partition("?")
    yes, _, no = branches.partition(":")
    target = yes if truthy(cond) else no
    return _goto(pbx, chan, target) if target.strip() else None


async def app_execif(pbx: Pbx, chan: Channel, data: str) -> str | None:
    cond, _, branches = data.partition("?")
    yes, _, no = branches.partition(":")
    chosen = yes if truthy(cond) else no
    if not chosen.strip():
        return None
    app, _, args = chosen.partition("(")
    return await run_app(pbx, chan, app.strip(), args[:-1] if args.endswith(")") else args)


async def app_wait(pbx: Pbx, chan: Channel, data: str) -> None:
    await chan.block(float(data or 0))


async def app_moh(pbx: Pbx, chan: Channel, data: str) -> None:
    args = split_args(data)
    klass = args[0] or "default"
    duration = float(args[1]) if len(args) > 1 and args[1] else None
    pbx.moh_start(chan, klass)
    try:
        await chan.block(duration)
    finally:
        pbx.moh_stop(chan)


async def app_start_moh(pbx: Pbx, chan: Channel, data: str) -> None:
    pbx.moh_start(chan, split_args(data)[0] or "default")


async def app_stop_moh(pbx: Pbx, chan: Channel, data: str) -> None:
    pbx.moh_stop(chan)


async def app_hangup(pbx: Pbx, chan: Channel, data: str) -> str:
    if data.strip().isdigit():
        chan.hangupcause = int(data)
    return APP_RETURN_HANGUP


async def app_ringing(pbx: Pbx, chan: Channel, data: str) -> None:
    indicate(pbx, chan, "ringing")


async def app_busy(pbx: Pbx, chan: Channel, data: str) -> str:
    chan.hangupcause = 17
    pbx.newstate(chan, BUSY)
    pbx.device_state(chan.device, "NOT_INUSE")  # as captured (originate-callback, busy)
    indicate(pbx, chan, "busy")
    await chan.block(float(data) if data.strip() else None)
    return APP_RETURN_HANGUP


async def app_congestion(pbx: Pbx, chan: Channel, data: str) -> str:
    chan.hangupcause = 34
    pbx.newstate(chan, BUSY)
    pbx.device_state(chan.device, "INUSE")  # as captured (originate-callback, congested)
    indicate(pbx, chan, "congestion")
    await chan.block(float(data) if data.strip() else None)
    return APP_RETURN_HANGUP


def prompt_seconds(pbx: Pbx, name: str) -> float:
    return pbx.prompt_samples(name) / SAMPLE_RATE


async def app_playback(pbx: Pbx, chan: Channel, data: str) -> None:
    for name in split_args(data)[0].split("&"):
        await chan.block(prompt_seconds(pbx, name.strip()))
    pbx.varset(chan, "PLAYBACKSTATUS", "SUCCESS")


async def app_queue(pbx: Pbx, chan: Channel, data: str) -> None:
    """app_queue is not simulated: the caller just hears music (no Queue* events)."""
    logger.warning("fake asterisk: Queue(%s) is not simulated, the caller only hears music", data)
    await app_moh(pbx, chan, "default")


async def app_agi(pbx: Pbx, chan: Channel, data: str) -> None:
    from tests.fakes.agi_client import run_fastagi

    args = split_args(data)
    status = await run_fastagi(pbx, chan, args[0], args[1:])
    pbx.varset(chan, "AGISTATUS", status)
    if chan.interrupted is not None:
        raise chan.interrupted


async def app_dial(pbx: Pbx, chan: Channel, data: str) -> str | None:
    from tests.fakes.dial import dial

    return await dial(pbx, chan, data)


APPS: dict[str, App] = {
    "noop": app_noop,
    "verbose": app_noop,
    "log": app_noop,
    "progress": app_noop,
    "answer": app_answer,
    "set": app_set,
    "mset": app_mset,
    "goto": app_goto,
    "gotoif": app_gotoif,
    "execif": app_execif,
    "wait": app_wait,
    "musiconhold": app_moh,
    "startmusiconhold": app_start_moh,
    "stopmusiconhold": app_stop_moh,
    "hangup": app_hangup,
    "ringing": app_ringing,
    "busy": app_busy,
    "congestion": app_congestion,
    "playback": app_playback,
    "background": app_playback,
    "queue": app_queue,
    "agi": app_agi,
    "dial": app_dial,
}
BLOCKING = {"wait", "musiconhold", "busy", "congestion", "playback", "background", "queue", "dial"}


async def run_app(
    pbx: Pbx, chan: Channel, app: str, data: str, *, in_h: bool = False
) -> str | None:
    name = app.lower()
    handler = APPS.get(name)
    if handler is None:
        logger.warning("fake asterisk: no application %r (channel %s hangs up)", app, chan.name)
        return APP_RETURN_HANGUP
    if in_h and name in BLOCKING:
        return None  # the h extension runs on a channel that is already hung up
    return await handler(pbx, chan, data)
