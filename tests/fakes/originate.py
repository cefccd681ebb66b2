"""Originate as Asterisk 22 runs it (surprises 14-16, originate-callback.txt, coreshowchannels.txt).

The ;1 half of the Local pair is dialled (``AppDial2``, ``DialBegin``/``DialEnd`` with ``Dest*``
fields only), the ;2 half runs the dialplan of the dialled extension. When ;1 is answered it runs
the Application (``Wait``: no Newexten) or the Context/Exten/Priority given. Async originates get
``OriginateResponse`` with ``ActionID`` second, Reason 4 on success, and on failure the bare dial
string as ``Channel`` with ``Uniqueid: <unknown>`` (0 no such extension or endpoint, 3 ring
timeout, 5 busy, 8 congestion, 1 hung up before answering).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.fakes.ami_codec import Pairs
from tests.fakes.apps import run_app
from tests.fakes.channel import TIMEOUT, Channel
from tests.fakes.dial import (
    Outgoing,
    dial_begin_fields,
    drop_unknown_pair,
    local_callee,
    pjsip_callee,
)

if TYPE_CHECKING:
    from tests.fakes.pbx import Pbx

REASON_SUCCESS, REASON_NO_ROUTE, REASON_HANGUP, REASON_TIMEOUT = 4, 0, 1, 3
REASON_BUSY, REASON_CONGESTION = 5, 8
_CALLERID_RE = re.compile(r'^\s*(?:"?([^"<]*?)"?\s*)?<([^>]*)>\s*$')


def parse_callerid(text: str) -> tuple[str | None, str | None] | None:
    """``"City Callback" <311>`` -> ("311", "City Callback"); a bare number has no name."""
    if not text.strip():
        return None
    match = _CALLERID_RE.match(text)
    if match:
        return match.group(2) or None, (match.group(1) or "").strip() or None
    return text.strip(), None


@dataclass
class OriginateRequest:
    channel: str
    context: str = ""
    exten: str = ""
    priority: str = ""
    application: str = ""
    data: str = ""
    callerid: tuple[str | None, str | None] | None = None
    timeout_ms: int = 30000
    variables: list[tuple[str, str]] = field(default_factory=list)
    action_id: str | None = None


class Originator:
    """One originate: `begin` creates the channels (synchronously), `complete` waits it out."""

    def __init__(self, pbx: Pbx, request: OriginateRequest, *, announce: bool) -> None:
        self.pbx = pbx
        self.request = request
        self.announce = announce  # send OriginateResponse (Async originates only)
        self.one: Channel | None = None
        self.two: Channel | None = None
        self.outgoing: Outgoing | None = None
        self.reason: int | None = None

    def _response(self, success: bool, reason: int) -> Pairs:
        req = self.request
        fields: Pairs = []
        if req.action_id is not None:
            fields.append(("ActionID", req.action_id))
        fields.append(("Response", "Success" if success else "Failure"))
        fields.append(("Channel", self.one.name if success and self.one else req.channel))
        if req.application:
            fields += [("Application", req.application), ("Data", req.data)]
        else:
            fields += [("Context", req.context), ("Exten", req.exten)]
        fields.append(("Reason", str(reason)))
        fields.append(("Uniqueid", self.one.uniqueid if success and self.one else "<unknown>"))
        num, name = self.request.callerid or (None, None)
        fields += [("CallerIDNum", num or "<unknown>"), ("CallerIDName", name or "<unknown>")]
        return fields

    def _finish(self, success: bool, reason: int) -> None:
        self.reason = reason
        if self.announce:
            self.pbx.emit("OriginateResponse", self._response(success, reason))

    def begin(self) -> None:
        req = self.request
        tech, _, resource = req.channel.partition("/")
        resource = resource.split("/")[0]
        if tech.lower() == "local":
            exten, _, context = resource.partition("@")
            one, two, exists = local_callee(
                self.pbx,
                exten,
                context or "default",
                linkedid=None,
                callerid=req.callerid,
                variables=req.variables,
            )
            self.one, self.two = one, two
            if not exists:
                between = None
                if self.announce:
                    between = [[("Event", "OriginateResponse"), *self._response(False, 0)]]
                self.reason = REASON_NO_ROUTE
                drop_unknown_pair(self.pbx, one, two, between)
                return
            self.outgoing = Outgoing(one)
            fields = [*dial_begin_fields(None, one), ("DialString", resource)]
            self.pbx.emit("DialBegin", fields)
            self.pbx.start_pbx(two)
        elif tech.upper() == "PJSIP" and self.pbx.phone_behaviour(resource) is not None:
            self.one = pjsip_callee(self.pbx, resource, linkedid=None, caller=None)
            for name, value in req.variables:
                self.pbx.varset(self.one, name, value)
            if req.callerid is not None:
                self.one.cid_num, self.one.cid_name = req.callerid
                self.pbx.callerid_events(self.one)
            self.outgoing = Outgoing(self.one)
            fields = [*dial_begin_fields(None, self.one), ("DialString", resource)]
            self.pbx.emit("DialBegin", fields)
        else:
            self._finish(False, REASON_NO_ROUTE)

    async def complete(self) -> bool:
        if self.reason is not None or self.outgoing is None or self.one is None:
            return False
        one, out = self.one, self.outgoing
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pbx.scale(self.request.timeout_ms / 1000)
        while True:
            remaining = max(0.0, deadline - loop.time())
            try:
                async with asyncio.timeout(remaining):
                    what = await out.next()
            except TimeoutError:
                what = TIMEOUT
            if what is TIMEOUT:
                self.pbx.finalize(one, 19)
                self._finish(False, REASON_TIMEOUT)
                return False
            if what == "ringing":
                self.pbx.emit(
                    "DialState", [*dial_begin_fields(None, one), ("DialStatus", "RINGING")]
                )
            elif what == "answer":
                break
            elif what in ("busy", "congestion"):
                status = "BUSY" if what == "busy" else "CONGESTION"
                self.pbx.emit("DialEnd", [*dial_begin_fields(None, one), ("DialStatus", status)])
                self.pbx.finalize(one, 0)
                self._finish(False, REASON_BUSY if what == "busy" else REASON_CONGESTION)
                return False
            elif what == "hangup":
                self.pbx.finalize(one, 0)
                self._finish(False, REASON_HANGUP)
                return False
        # OriginateResponse came before DialEnd in one capture and after it in others
        early = self.pbx.coin()
        if early:
            self._finish(True, REASON_SUCCESS)
        self.pbx.emit("DialEnd", [*dial_begin_fields(None, one), ("DialStatus", "ANSWER")])
        if not early:
            self._finish(True, REASON_SUCCESS)
        req = self.request
        if req.application:
            one.app, one.appdata = req.application, req.data
            one.task = self.pbx.spawn(self._run_application(one), name=f"app {one.name}")
        else:
            one.context, one.exten = req.context, req.exten
            one.priority = (
                self.pbx.dialplan.resolve_priority(req.context, req.exten, req.priority) or 1
            )
            self.pbx.start_pbx(one)
        return True

    async def _run_application(self, chan: Channel) -> None:
        """The originated ;1 runs one application (no dialplan) and hangs up when it returns."""
        await run_app(self.pbx, chan, self.request.application, self.request.data)
        if not chan.dead:
            self.pbx.finalize(chan, 16)


def validate(pbx: Pbx, request: OriginateRequest) -> str | None:
    """The synchronous refusals of action_originate, with Asterisk's texts."""
    if not request.channel:
        return "Channel not specified"
    if not request.application:
        if not request.context or not request.priority:
            return "Originate with 'Exten' requires 'Context' and 'Priority'"
        if not pbx.dialplan.exists(request.context, request.exten or "s"):
            return "Extension does not exist."
    return None
