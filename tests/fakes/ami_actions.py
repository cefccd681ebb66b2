"""The AMI actions of the fake, with Asterisk 22's replies byte for byte (CAPTURES.md).

Each handler returns an `Outcome`: the messages to write now and what to do after they are
queued (the events an action causes come after its Response, surprise 4). Error texts differ by
action for the same missing channel (surprise 10); list actions answer ``EventList: start`` and
end with ``...Complete`` (surprises 6-9).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tests.fakes import cli
from tests.fakes.ami_call_actions import getvar, hangup, originate, play_dtmf, redirect, setvar
from tests.fakes.ami_codec import (
    Outcome,
    Pairs,
    Request,
    encode,
    error,
    list_complete,
    list_start,
    reply,
    response,
    success,
)
from tests.fakes.channel import Channel

if TYPE_CHECKING:
    from tests.fakes.ami_server import FakeAsterisk
    from tests.fakes.ami_session import AmiSession


Handler = Callable[["FakeAsterisk", "AmiSession", Request], Awaitable[Outcome]]


def event_tv(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"


def security_fields(server: FakeAsterisk, session: AmiSession) -> Pairs:
    return [
        ("EventTV", event_tv(server.pbx.clock())),
        ("Severity", "Error"),
        ("Service", "AMI"),
        ("EventVersion", "1"),
        ("SessionID", session.session_id),
        ("LocalAddress", f"IPV4/TCP/127.0.0.1/{session.local_port}"),
        ("RemoteAddress", f"IPV4/TCP/127.0.0.1/{session.remote_port}"),
    ]


def bad_format_event(server: FakeAsterisk, session: AmiSession, action: str) -> None:
    fields = security_fields(server, session)
    fields += [
        ("RequestType", f"Action: {action}"),
        ("SessionTV", event_tv(session.started)),
        ("AccountID", session.username),
    ]
    server.pbx.emit("RequestBadFormat", fields, "security")


# --- session ----------------------------------------------------------------------------------
async def login(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    if session.authenticated:
        return reply(success(aid, "Already authenticated"))
    username, secret = req.get("Username"), req.get("Secret")
    if server.users.get(username) is None or server.users[username] != secret:
        await asyncio.sleep(server.auth_fail_delay_s)
        return Outcome([error(aid, "Authentication failed")], close=True)
    session.authenticated = True
    session.username = username
    events = req.get("Events", "on").strip().lower()
    if events in ("off", "no", "0", "false"):
        session.categories = set()
    elif events in ("on", "yes", "1", "true", "all", ""):
        session.categories = None
    else:
        session.categories = {part.strip() for part in events.split(",")}

    def after() -> None:
        if session.wants("system"):
            uptime = str(int(server.pbx.clock() - server.pbx.boot_time))
            session.send(
                [
                    ("Event", "FullyBooted"),
                    ("Privilege", "system,all"),
                    ("Uptime", uptime),
                    ("LastReload", uptime),
                    ("Status", "Fully Booted"),
                ]
            )
        fields = security_fields(server, session)
        fields[1] = ("Severity", "Informational")
        fields.insert(4, ("AccountID", username))
        fields += [("UsingPassword", "0"), ("SessionTV", event_tv(session.started))]
        server.pbx.emit("SuccessfulAuth", fields, "security")

    return reply(success(aid, "Authentication accepted"), after=after)


async def logoff(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    goodbye = response("Goodbye", req.action_id, ("Message", "Thanks for all the fish."))
    return Outcome([goodbye], close=True)


async def ping(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    stamp = f"{server.pbx.clock():.6f}"
    return reply(response("Success", req.action_id, ("Ping", "Pong"), ("Timestamp", stamp)))


async def command(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    known, lines = cli.run(server.pbx, req.get("Command"))
    head = response("Success" if known else "Error", req.action_id)
    body = [("Message", "Command output follows"), *(("Output", line) for line in lines)]
    return Outcome([[*head, *body]], split=True)


# --- lists ------------------------------------------------------------------------------------
def _hms(seconds: float) -> str:
    total = int(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


async def core_show_channels(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    now = server.pbx.clock()
    items = []
    for chan in server.pbx.shuffled(cli.hash_order(server.pbx.live_channels())):
        head: Pairs = [("Event", "CoreShowChannel")]
        if aid is not None:
            head.append(("ActionID", aid))
        items.append(
            [
                *head,
                *chan.block_fields(),
                ("Application", chan.app),
                ("ApplicationData", chan.appdata),
                ("Duration", _hms(now - chan.created)),
                ("BridgeId", chan.bridge.uniqueid if chan.bridge else ""),
            ]
        )
    start = list_start(aid, "Channels will follow")
    return reply(start, *items, list_complete("CoreShowChannelsComplete", aid, len(items)))


def status_event(
    server: FakeAsterisk, chan: Channel, aid: str | None, variables: list[str]
) -> Pairs:
    native = "(slin)" if chan.tech == "Local" else "(ulaw)"
    read = "slin" if chan.tech == "Local" else "ulaw"
    write = chan.writeformat if chan.tech == "Local" or chan.writeformat == "gsm" else "ulaw"
    pairs: Pairs = [("Event", "Status"), ("Privilege", "Call"), *chan.block_fields()]
    pairs += [
        ("Type", chan.tech),
        ("DNID", ""),
        ("EffectiveConnectedLineNum", chan.conn_num or "<unknown>"),
        ("EffectiveConnectedLineName", chan.conn_name or "<unknown>"),
        ("TimeToHangup", "0"),
        ("BridgeID", chan.bridge.uniqueid if chan.bridge else ""),
        ("Application", chan.app),
        ("Data", chan.appdata),
        ("Nativeformats", native),
        ("Readformat", read),
        ("Readtrans", ""),
        ("Writeformat", write),
        ("Writetrans", f"(gsm@8000)->({read}@8000)" if write == "gsm" else ""),
        ("Callgroup", "0"),
        ("Pickupgroup", "0"),
        ("Seconds", str(int(server.pbx.clock() - chan.created))),
    ]
    for name in variables:
        pairs.append(("Variable", f"{name}={server.pbx.get_variable(chan, name)}"))
    if aid is not None:
        pairs.append(("ActionID", aid))
    return pairs


async def status(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    name = req.get("Channel")
    variables = [v.strip() for v in req.get("Variables").split(",") if v.strip()]
    if name:
        chan = server.pbx.find(name)
        if chan is None:
            return reply(error(aid, "No such channel"))
        channels = [chan]
    else:
        channels = server.pbx.shuffled(cli.hash_order(server.pbx.live_channels()))
    items = [status_event(server, chan, aid, variables) for chan in channels]
    count = str(len(items))
    done = list_complete("StatusComplete", aid, len(items), ("Items", count))
    return reply(list_start(aid, "Channel status will follow"), *items, done)


async def queue_status(server: FakeAsterisk, session: AmiSession, req: Request) -> Outcome:
    aid = req.action_id
    items = server.pbx.queues.status_items(req.get("Queue"), req.get("Member"), aid)
    done = list_complete("QueueStatusComplete", aid, len(items))
    return reply(list_start(aid, "Queue status will follow"), *items, done)


HANDLERS: dict[str, Handler] = {
    "login": login,
    "logoff": logoff,
    "ping": ping,
    "command": command,
    "coreshowchannels": core_show_channels,
    "status": status,
    "queuestatus": queue_status,
    "hangup": hangup,
    "getvar": getvar,
    "setvar": setvar,
    "redirect": redirect,
    "playdtmf": play_dtmf,
    "originate": originate,
}
UNAUTHENTICATED = {"login", "logoff", "challenge"}


async def process(server: FakeAsterisk, session: AmiSession, req: Request) -> None:
    """One action: the checks Asterisk's process_message makes, then the handler."""
    action = req.action
    lower = action.lower()
    if server.ignores(req):
        return
    if not action:
        session.send(error(req.action_id, "Missing action in request"))
        bad_format_event(server, session, "NONE")
        return
    if not session.authenticated and lower not in UNAUTHENTICATED:
        session.send(error(req.action_id, "Permission denied"))
        return
    handler = HANDLERS.get(lower)
    if handler is None:
        text = (
            f"Invalid/unknown command: {action}. "
            "Use Action: ListCommands to show available commands."
        )
        session.send(error(req.action_id, text))
        bad_format_event(server, session, action)
        return
    outcome = await handler(server, session, req)
    if session.closed:
        return
    for message in outcome.messages:
        if outcome.split:
            head_end = 2 if req.action_id is not None else 1
            pieces = [
                encode(message[:head_end])[:-2],
                encode(message[head_end : head_end + 1])[:-2],
            ]
            pieces += [encode([pair])[:-2] for pair in message[head_end + 1 :]]
            session.send_split([*pieces, b"\r\n"])
        else:
            session.send(message)
    for after in outcome.after:
        after()
    if outcome.close:
        session.close_after_output()
