"""The fake's AMI actions on calls and channels: Hangup, Getvar, Setvar, Redirect, PlayDTMF,
Originate (surprises 4, 9, 10, 14, 21, 28 in CAPTURES.md)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.fakes import cli
from tests.fakes.ami_codec import (
    Outcome,
    Pairs,
    Request,
    error,
    list_complete,
    list_start,
    reply,
    response,
    success,
)
from tests.fakes.apps import app_set
from tests.fakes.calls import send_dtmf
from tests.fakes.channel import AsyncGoto
from tests.fakes.originate import OriginateRequest, Originator, parse_callerid, validate

if TYPE_CHECKING:
    from tests.fakes.ami_server import FakeAsterisk
    from tests.fakes.ami_session import AmiSession


def _regex(name: str) -> re.Pattern[str] | None:
    if len(name) > 1 and name.startswith("/") and name.endswith("/"):
        try:
            return re.compile(name[1:-1])
        except re.error:
            return None
    return None


async def hangup(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    name = req.get("Channel")
    if not name:
        return reply(error(aid, "No channel specified"))
    cause_text = req.get("Cause").strip()
    cause = int(cause_text) if cause_text.isdigit() else None
    pattern = _regex(name)
    pbx = server.pbx
    if pattern is not None:
        matched = [c for c in cli.hash_order(pbx.live_channels()) if pattern.search(c.name)]
        items = []
        for chan in matched:
            item: Pairs = [("Event", "ChannelHungup"), ("Channel", chan.name)]
            items.append(item + ([("ActionID", aid)] if aid is not None else []))

        def hang_all() -> None:
            for chan in matched:
                pbx.hangup_request(chan, cause, via="ami")

        start = list_start(aid, "Channels hung up will follow")
        done = list_complete("ChannelsHungupListComplete", aid, len(items))
        return reply(start, *items, done, after=hang_all)
    chan = pbx.find(name)
    if chan is None:
        return reply(error(aid, "No such channel"))
    target = chan
    return reply(
        success(aid, "Channel Hungup"),
        after=lambda: pbx.hangup_request(target, cause, via="ami"),
    )


async def getvar(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    variable = req.get("Variable")
    if not variable:
        return reply(error(aid, "No variable specified"))
    chan = None
    if req.get("Channel"):
        chan = server.pbx.find(req.get("Channel"))
        if chan is None:
            return reply(error(aid, "No such channel"))
    value = server.pbx.get_variable(chan, variable)
    return reply(response("Success", aid, ("Variable", variable), ("Value", value)))


async def setvar(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    variable = req.get("Variable")
    if not variable:
        return reply(error(aid, "Variable not specified"))
    value = req.get("Value")
    pbx = server.pbx
    if req.get("Channel"):
        chan = pbx.find(req.get("Channel"))
        if chan is None:
            return reply(error(aid, "No such channel"))
        target = chan

        def set_on_channel() -> None:
            pbx.spawn(app_set(pbx, target, f"{variable}={value}"), name="setvar")

        return reply(success(aid, "Variable Set"), after=set_on_channel)
    return reply(success(aid, "Variable Set"), after=lambda: pbx.set_global(variable, value))


async def redirect(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    name = req.get("Channel")
    if not name:
        return reply(error(aid, "Channel not specified"))
    context, exten, priority = req.get("Context"), req.get("Exten"), req.get("Priority")
    if not context:
        return reply(error(aid, "Context not specified"))
    if not exten:
        return reply(error(aid, "Exten not specified"))
    if not priority:
        return reply(error(aid, "Priority not specified"))
    pbx = server.pbx
    chan = pbx.find(name)
    if chan is None:
        return reply(error(aid, f"Channel does not exist: {name}"))
    resolved = pbx.dialplan.resolve_priority(context, exten, priority)
    if resolved is None:
        return reply(error(aid, "Invalid priority"))
    target = chan

    def goto() -> None:
        if target.runs_pbx:
            target.interrupt(AsyncGoto(context, exten, resolved))
            return
        if target.task is not None and not target.task.done():
            target.task.cancel()
        pbx.goto(target, context, exten, resolved)
        pbx.start_pbx(target)

    return reply(success(aid, "Redirect successful"), after=goto)


async def play_dtmf(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    name, digit = req.get("Channel"), req.get("Digit")
    if not name:
        return reply(error(aid, "Channel not specified"))
    if not digit:
        return reply(error(aid, "No digit specified"))
    chan = server.pbx.find(name)
    if chan is None:
        return reply(error(aid, "Channel not found"))
    duration_text = req.get("Duration").strip()
    duration = int(duration_text) if duration_text.isdigit() else 100
    await server.pbx.sleep(duration / 1000)  # Asterisk answers once the digit has been sent
    pbx = server.pbx
    receiver = chan.partner if chan.partner is not None else chan
    direction = "Received" if chan.partner is not None else "Sent"  # a PJSIP phone hears it

    def received() -> None:
        dtmf = send_dtmf(
            pbx, receiver, digit[0], duration, local=True, delay=False, direction=direction
        )
        pbx.spawn(dtmf, name="playdtmf")

    return reply(success(aid, "DTMF successfully queued"), after=received)


async def originate(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    timeout_text = req.get("Timeout").strip()
    request = OriginateRequest(
        channel=req.get("Channel"),
        context=req.get("Context"),
        exten=req.get("Exten"),
        priority=req.get("Priority"),
        application=req.get("Application"),
        data=req.get("Data"),
        callerid=parse_callerid(req.get("CallerID")),
        timeout_ms=int(timeout_text) if timeout_text.isdigit() else 30000,
        variables=[tuple(v.split("=", 1)) for v in req.get_all("Variable") if "=" in v],  # type: ignore[misc]
        action_id=aid,
    )
    refusal = validate(server.pbx, request)
    if refusal is not None:
        return reply(error(aid, refusal))
    pbx = server.pbx
    if req.get("Async").strip().lower() in ("true", "yes", "1", "on"):
        originator = Originator(pbx, request, announce=True)

        def start() -> None:
            originator.begin()
            pbx.spawn(originator.complete(), name="originate")

        return reply(success(aid, "Originate successfully queued"), after=start)
    # Synchronous: Asterisk dials before it answers, while the events of the call travel
    # through the event queue and so reach this session only after the response.
    session.hold_events()
    sync = Originator(pbx, request, announce=False)
    try:
        sync.begin()
        answered = await sync.complete()
    except BaseException:
        session.release_events()
        raise
    message = (
        success(aid, "Originate successfully queued")
        if answered
        else error(aid, "Originate failed")
    )
    return reply(message, after=session.release_events)
