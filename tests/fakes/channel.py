"""A channel of the fake PBX: its AMI fields, its variables and how a running app is interrupted.

An application that blocks (Wait, MusicOnHold, a ringing Dial, an AGI command reading digits)
waits through `Channel.block`; a hang-up or a Redirect raises `SoftHangup` / `AsyncGoto` inside
it, the way Asterisk's soft-hangup flag makes the running application return. DTMF that arrives
while nothing reads digits is kept (Asterisk leaves the frames on the channel's read queue) and
consumed by the next reader.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.fakes.ami_codec import STATE_DESC, Pairs

if TYPE_CHECKING:
    from tests.fakes.dial import Bridge

UNKNOWN = "<unknown>"
TIMEOUT = object()  # what Channel.block returns when its timeout ran out

CHANNEL_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


class Interrupt(Exception):
    """Raised inside a blocked application when the channel is told to stop what it does."""


class SoftHangup(Interrupt):
    def __init__(self, cause: int | None, *, remote: bool = False) -> None:
        super().__init__(f"soft hangup cause={cause}")
        self.cause = cause
        self.remote = remote


class AsyncGoto(Interrupt):
    def __init__(self, context: str, exten: str, priority: int | str) -> None:
        super().__init__(f"goto {context},{exten},{priority}")
        self.context = context
        self.exten = exten
        self.priority = priority


class HangUpNow(Interrupt):
    """The phone behind this channel is put down: the dialplan goes straight to a Hangup()
    at the next priority (the captured agentquick sequence: Newexten Hangup,
    SoftHangupRequest, HangupRequest on the ;1, Hangup)."""


class Channel:
    """One Asterisk channel (a Local half or a PJSIP channel) as AMI shows it."""

    def __init__(
        self,
        *,
        name: str,
        tech: str,
        device: str,
        uniqueid: str,
        linkedid: str,
        created: float,
        context: str,
        exten: str,
        state: int,
        time_scale: Callable[[float], float],
    ) -> None:
        self.name = name
        self.tech = tech
        self.device = device
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.created = created
        self.answered: float | None = None
        self.state = state
        self.cid_num: str | None = None
        self.cid_name: str | None = None
        self.conn_num: str | None = None
        self.conn_name: str | None = None
        self.language = "en"
        self.accountcode = ""
        self.context = context
        self.exten = exten
        self.priority = 1
        self.variables: dict[str, str] = {}
        self.app = ""
        self.appdata = ""
        self.partner: Channel | None = None
        self.leg: int | None = None
        self.runs_pbx = False
        self.bridge: Bridge | None = None
        self.hangupcause: int | None = None  # set by Busy()/Congestion() before the hang-up
        self.dead = False
        self.hanging_up = False
        self.moh_class: str | None = None
        self.writeformat = "slin"
        self.end_device_state = "NOT_INUSE"  # INVALID: no such extension; UNAVAILABLE: a phone
        self.task: asyncio.Task[Any] | None = None
        self.on_gone: list[Callable[[Channel], None]] = []
        self.watchers: list[Callable[[str], None]] = []  # indications for a ;1's Dial/Originate
        self.on_listen: list[Callable[[], None]] = []  # an AGI command starts reading DTMF
        self.agi: Any = None  # the FastAGI session running on this channel, if any
        self.agi_fault: str | None = None  # broken input for the next FastAGI session
        self.is_caller = False
        self._pending: Interrupt | None = None
        self._wakers: set[asyncio.Future[Any]] = set()
        self._digit_wakers: set[asyncio.Future[str]] = set()
        self._digits: deque[str] = deque()
        self._scale = time_scale

    # --- AMI fields --------------------------------------------------------------------------
    @property
    def state_desc(self) -> str:
        return STATE_DESC.get(self.state, "Unknown")

    def block_fields(self, prefix: str = "") -> Pairs:
        values = (
            self.name,
            str(self.state),
            self.state_desc,
            self.cid_num or UNKNOWN,
            self.cid_name or UNKNOWN,
            self.conn_num or UNKNOWN,
            self.conn_name or UNKNOWN,
            self.language,
            self.accountcode,
            self.context,
            self.exten,
            str(self.priority),
            self.uniqueid,
            self.linkedid,
        )
        return [(prefix + key, value) for key, value in zip(CHANNEL_KEYS, values, strict=True)]

    @property
    def callerid_all(self) -> str:
        if self.cid_name:
            return f'"{self.cid_name}" <{self.cid_num or ""}>'
        return f"<{self.cid_num or ''}>" if self.cid_num else ""

    # --- interruption ------------------------------------------------------------------------
    def interrupt(self, exc: Interrupt) -> None:
        """Make the application blocked on this channel (now or next) raise `exc`."""
        if isinstance(self._pending, SoftHangup) and not isinstance(exc, SoftHangup):
            return  # a hang-up wins over a later Redirect
        self._pending = exc
        for waker in list(self._wakers):
            if not waker.done():
                waker.set_exception(exc)

    def clear_interrupt(self) -> None:
        self._pending = None

    @property
    def interrupted(self) -> Interrupt | None:
        return self._pending

    async def block(self, seconds: float | None, future: asyncio.Future[Any] | None = None) -> Any:
        """Wait `seconds` (scaled; None = until interrupted) or until `future` resolves.

        `future` is only watched, never cancelled or failed here, so it may be shared.
        """
        if self._pending is not None:
            raise self._pending
        waker: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def relay(done: asyncio.Future[Any]) -> None:
            if waker.done() or done.cancelled():
                return
            if done.exception() is not None:
                waker.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                waker.set_result(done.result())

        if future is not None:
            future.add_done_callback(relay)
        self._wakers.add(waker)
        try:
            delay = None if seconds is None else self._scale(seconds)
            async with asyncio.timeout(delay):
                return await waker
        except TimeoutError:
            if self._pending is not None:
                raise self._pending from None
            return TIMEOUT
        finally:
            self._wakers.discard(waker)
            if future is not None:
                future.remove_done_callback(relay)
            if not waker.done():
                waker.cancel()

    # --- DTMF --------------------------------------------------------------------------------
    def deliver_digit(self, digit: str) -> None:
        for waker in list(self._digit_wakers):
            if not waker.done():
                waker.set_result(digit)
                return
        self._digits.append(digit)

    async def read_digit(self, seconds: float | None) -> str | None:
        """The next DTMF digit within `seconds` (scaled), None on timeout."""
        if self._pending is not None:
            raise self._pending
        if self._digits:
            return self._digits.popleft()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._digit_wakers.add(future)
        try:
            result = await self.block(seconds, future)
        finally:
            self._digit_wakers.discard(future)
        return None if result is TIMEOUT else result

    def __repr__(self) -> str:
        return (
            f"<Channel {self.name} {self.state_desc} {self.context},{self.exten},{self.priority}>"
        )
