"""Control hooks for tests: residents who call, press keys and hang up; agents' phones.

A resident's call is either a Local pair originated like the captures (``kind="local"``:
``Local/311@city-XXXXXXXX;1`` is the resident's end running ``Wait``, ``;2`` runs the city
dialplan) or one PJSIP channel (``kind="pjsip"``, like the sipp call). Hanging up follows the
captured paths (surprise 17): a Local resident hangs up its ;1 (no Cause: ``HangupRequest`` on
;2 with ``Cause: 0``, ``Hangup`` ``Cause: 0``), a PJSIP resident sends a BYE (RTPAUDIOQOS
VarSets, ``HangupRequest`` without Cause).

DTMF from the resident reaches the dialplan channel as ``DTMFBegin``/``DTMFEnd`` with
``Direction: Received`` (surprise 28). Digits may be scheduled in time (`press`) or typed when
the IVR next listens (`answer_prompts`), which keeps scenario tests independent of prompt
lengths and scheduling.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

from tests.fakes.agi_client import AGI_FAULTS
from tests.fakes.ami_codec import RING
from tests.fakes.channel import Channel, HangUpNow
from tests.fakes.originate import OriginateRequest, Originator

if TYPE_CHECKING:
    from tests.fakes.pbx import Pbx

RTP_QOS = [
    (
        "RTPAUDIOQOS",
        "ssrc=1466545607;themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;"
        "txcount=225;rlp=0;rtt=0.000000;rxmes=0.000000;txmes=0.000000",
    ),
    (
        "RTPAUDIOQOSJITTER",
        "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;"
        "stdevrxjitter=000.000000;mintxjitter=000.000000;maxtxjitter=000.000000;"
        "avgtxjitter=000.000000;stdevtxjitter=000.000000;",
    ),
    (
        "RTPAUDIOQOSLOSS",
        "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  "
        "stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  "
        "avgtxlost=000.000000;  stdevtxlost=000.000000;",
    ),
    (
        "RTPAUDIOQOSRTT",
        "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     "
        "stdevrtt=000.000000;",
    ),
    (
        "RTPAUDIOQOSMES",
        "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   "
        "stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;   "
        "avgtxmes=000.000000;   stdevtxmes=000.000000;",
    ),
]


async def send_dtmf(
    pbx: Pbx,
    receiver: Channel,
    digit: str,
    duration_ms: int,
    *,
    local: bool,
    delay: bool = True,
    direction: str = "Received",
) -> None:
    """A key press `receiver` gets. Through a Local pair the digit arrives whole, after its
    duration (PlayDTMF answers first, then DTMFBegin+DTMFEnd on the other half, surprise 28);
    on PJSIP DTMFBegin comes at the start of the press."""
    begin = [("Digit", digit), ("Direction", direction)]
    end = [("Digit", digit), ("DurationMs", str(duration_ms)), ("Direction", direction)]
    if not local:
        pbx.chan_event("DTMFBegin", receiver, *begin, cat="dtmf")
    if delay:
        await pbx.sleep(duration_ms / 1000)
    if receiver.dead:
        return
    if local:
        pbx.chan_event("DTMFBegin", receiver, *begin, cat="dtmf")
    pbx.chan_event("DTMFEnd", receiver, *end, cat="dtmf")
    if direction == "Received":
        receiver.deliver_digit(digit)


class CallerHandle:
    """One resident's call in the fake, with the hooks a scenario test drives it by."""

    def __init__(self, pbx: Pbx, kind: str, channel: Channel, far_end: Channel) -> None:
        self.pbx = pbx
        self.kind = kind
        self.channel = channel  # the channel in the dialplan (;2 or PJSIP): what AMI reports
        self.far_end = far_end  # the resident's end (;1 for Local, the same channel for PJSIP)
        self._answers: deque[str] = deque()
        self._answer_delay_s = 0.2
        self._answer_gap_s = 0.25
        self._duration_ms = 200
        self.gone: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        channel.on_gone.append(self._on_gone)
        channel.on_listen.append(self._on_listen)

    # --- what the test reads -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def uniqueid(self) -> str:
        return self.channel.uniqueid

    @property
    def linkedid(self) -> str:
        return self.channel.linkedid

    @property
    def state(self) -> str:
        """ivr (in AGI), moh, ringing (Dial to an agent), talking (bridged), dialplan, gone."""
        chan = self.channel
        if chan.dead:
            return "gone"
        if chan.bridge is not None:
            return "talking"
        if chan.app.lower() == "dial":
            return "ringing"
        if chan.agi is not None:
            return "ivr"
        if chan.moh_class is not None:
            return "moh"
        return "dialplan"

    async def wait_state(self, *states: str, within_s: float = 5.0) -> str:
        """Until the call is in one of `states` (checked after every event); returns it."""
        await self.pbx.wait_until(lambda: self.state in states, within_s)
        return self.state

    # --- what the resident does --------------------------------------------------------------
    def press(
        self, digits: str, *, delay_s: float = 0.0, gap_s: float = 0.25, duration_ms: int = 200
    ) -> asyncio.Task[None]:
        """Press `digits` starting `delay_s` from now, `gap_s` apart (fake time)."""

        async def presses() -> None:
            await self.pbx.sleep(delay_s)
            for index, digit in enumerate(digits):
                if index:
                    await self.pbx.sleep(gap_s)
                await self._send(digit, duration_ms)

        return self.pbx.spawn(presses(), name=f"dtmf {self.name}")

    def answer_prompts(
        self, *answers: str, delay_s: float = 0.2, gap_s: float = 0.25, duration_ms: int = 200
    ) -> None:
        """Queue what to type at the next prompts: each time an AGI command starts reading
        DTMF, the next answer is typed `delay_s` later ("" = stay silent at that prompt)."""
        self._answers.extend(answers)
        self._answer_delay_s, self._answer_gap_s = delay_s, gap_s
        self._duration_ms = duration_ms

    def _on_listen(self) -> None:
        if not self._answers:
            return
        answer = self._answers.popleft()
        if answer:
            self.press(
                answer, delay_s=self._answer_delay_s, gap_s=self._answer_gap_s,
                duration_ms=self._duration_ms,
            )  # fmt: skip

    async def _send(self, digit: str, duration_ms: int) -> None:
        await send_dtmf(self.pbx, self.channel, digit, duration_ms, local=self.kind == "local")

    def break_next_agi(self, fault: str) -> None:
        """The next FastAGI session of this call sends broken input, then closes:
        "garbage_env", "truncated_env", "oversized_env" (instead of the environment) or
        "garbage_reply", "truncated_reply", "oversized_reply" (as the first reply)."""
        if fault not in AGI_FAULTS:
            raise ValueError(f"unknown AGI fault {fault!r}: one of {', '.join(AGI_FAULTS)}")
        self.channel.agi_fault = fault

    def hangup(self, cause: int | None = None) -> None:
        """The resident hangs up. Local: the ;1 ends (captured without a cause: ``Cause: 0``
        on both halves); PJSIP: a BYE (RTPAUDIOQOS VarSets, ``HangupRequest`` without a
        Cause line, or with `cause` as a BYE with a Reason header would give it)."""
        if self.far_end.dead:
            return
        if self.kind == "pjsip":
            if self.channel.answered is not None:
                for name, value in RTP_QOS:
                    self.pbx.varset(self.channel, name, value)
            via = "bye" if cause is None else "remote"
            self.pbx.hangup_request(self.channel, cause, via=via)
        else:
            self.pbx.hangup_request(self.far_end, cause, via="ami")

    def _on_gone(self, chan: Channel) -> None:
        if not self.gone.done():
            self.gone.set_result(self.pbx.clock())

    def __repr__(self) -> str:
        return f"<CallerHandle {self.name} {self.state}>"


def add_caller(
    pbx: Pbx,
    *,
    exten: str,
    context: str,
    callerid_num: str | None,
    callerid_name: str | None,
    kind: str,
    variables: dict[str, str] | None,
    patience_s: float | None,
    endpoint: str,
) -> CallerHandle:
    if kind == "local":
        request = OriginateRequest(
            channel=f"Local/{exten}@{context}",
            application="Wait",
            data=str(int(patience_s)) if patience_s is not None else "86400",
            callerid=(callerid_num, callerid_name) if callerid_num or callerid_name else None,
            variables=list((variables or {}).items()),
        )
        originator = Originator(pbx, request, announce=False)
        originator.begin()
        assert originator.one is not None and originator.two is not None
        handle = CallerHandle(pbx, "local", originator.two, originator.one)
        pbx.spawn(originator.complete(), name=f"originate {originator.one.name}")
        return handle
    if kind != "pjsip":
        raise ValueError(f"kind must be 'local' or 'pjsip', not {kind!r}")
    # A Newchannel for PJSIP already carries the caller ID (abandon-while-waiting.txt)
    chan = pbx.new_channel(
        "PJSIP", endpoint, context=context, exten=exten, state=RING,
        callerid=(callerid_num, callerid_name),
    )  # fmt: skip
    chan.is_caller = True
    chan.end_device_state = pbx.pjsip_caller_end_state
    pbx.calls_processed += 1
    pbx.varset(chan, "SIPDOMAIN", "127.0.0.1")
    for name, value in (variables or {}).items():
        pbx.varset(chan, name, value)
    handle = CallerHandle(pbx, "pjsip", chan, chan)
    pbx.start_pbx(chan)
    if patience_s is not None:
        pbx.spawn(_give_up(pbx, handle, patience_s))
    return handle


async def _give_up(pbx: Pbx, handle: CallerHandle, patience_s: float) -> None:
    await pbx.sleep(patience_s)
    handle.hangup()


class AgentHandle:
    """An agent's phone (Local/<exten>@<context> or PJSIP/<exten>) as the test sees it."""

    def __init__(self, pbx: Pbx, exten: str, context: str) -> None:
        self.pbx = pbx
        self.exten = exten
        self.context = context

    def _phone(self) -> Channel | None:
        local = f"Local/{self.exten}@{self.context}-"
        for chan in reversed(self.pbx.live_channels()):
            if chan.name.startswith(local) and chan.name.endswith(";2"):
                return chan
            if chan.name.startswith(f"PJSIP/{self.exten}-") and not chan.is_caller:
                return chan
        return None

    @property
    def channel(self) -> Channel | None:
        """The phone's channel now (the Local ;2 running the phone's dialplan), or None."""
        return self._phone()

    @property
    def ringing(self) -> bool:
        phone = self._phone()
        return phone is not None and phone.bridge is None and phone.answered is None

    def hangup(self) -> bool:
        """The agent puts the phone down: a Local phone's dialplan runs Hangup() next (the
        captured agentquick sequence); a PJSIP phone sends a BYE."""
        phone = self._phone()
        if phone is None:
            return False
        if phone.tech == "Local":
            phone.interrupt(HangUpNow())
        else:
            self.pbx.hangup_request(phone, None, via="bye")
        return True


BEHAVIOURS = ("answer", "answer_after", "noanswer", "busy", "congested", "unavailable")


def behaviour_steps(exten: str, behaviour: str) -> list[tuple[str, str]] | None:
    """The agents-context extension that makes a Local phone behave as asked."""
    kind, _, arg = behaviour.partition(":")
    if kind not in BEHAVIOURS:
        raise ValueError(f"unknown agent behaviour {behaviour!r}: one of {', '.join(BEHAVIOURS)}")
    noop = ("NoOp", f"Agent phone {exten} ({behaviour}) on ${{CHANNEL}}")
    if kind == "answer":
        return [noop, ("Answer", ""), ("Wait", "86400"), ("Hangup", "")]
    if kind == "answer_after":
        seconds = str(float(arg or 0))
        return [noop, ("Ringing", ""), ("Wait", seconds), ("Answer", ""), ("Wait", "86400"),
                ("Hangup", "")]  # fmt: skip
    if kind == "noanswer":
        return [noop, ("Ringing", ""), ("Wait", "86400"), ("Hangup", "")]
    if kind == "busy":
        return [("Busy", "10")]
    if kind == "congested":
        return [("Congestion", "10")]
    return None
