"""The connection to the Asterisk Manager Interface: panoramisk's `Manager`, wrapped.

panoramisk 1.4 gives us the pieces worth having: `Manager` to send actions, `Action` (it writes
the action, keeps its ActionID and knows when a list response such as CoreShowChannels is
complete) and `Message`. Its connection handling cannot be used as it is, and this module
replaces it, because:

* `Manager.connect()` takes `asyncio.get_event_loop()` when no loop is given, and every
  `Action` creates a bare `asyncio.Future()` bound to whatever loop is current. We build the
  Manager inside `start()` with the running loop passed explicitly, and create actions only
  from coroutines on that loop.
* On a disconnect `AMIProtocol.close()` moves unanswered actions to `Manager.awaiting_actions`:
  their futures never resolve (the caller hangs for ever), and if a later connection brings a
  ``FullyBooted`` they are *sent again*, so a Redirect or an Originate could run minutes late,
  twice. We keep our own table of pending actions, fail each one with `AmiDisconnected` the
  moment the connection is lost, and never re-send anything.
* Nothing has a timeout: a half-open TCP connection (the peer gone without a FIN) makes every
  await hang. Here every action has one (`action_timeout_s`), the login and the connect too,
  and a watchdog sends ``Ping`` every `ping_interval_s`: no ``Pong`` within `ping_timeout_s`
  and the connection is dropped and made again.
* Its reconnect is a `loop.call_later` handle nobody keeps (it cannot be cancelled, so it
  outlives `close()`), with a fixed delay. Ours is a task with exponential backoff and jitter,
  which `stop()` ends.
* Event callbacks run inside `data_received`: one exception makes asyncio close the transport,
  and coroutine callbacks become untracked `ensure_future` tasks. Ours run in one dispatcher
  task, in the order the events arrived, each under a timeout, exceptions logged.
* Its parser buffers without limit and drops malformed frames silently. Ours cuts frames at
  ``\\r\\n\\r\\n`` itself, keeps values' leading spaces and repeated keys (CAPTURES.md,
  surprises 1-3), logs and drops garbage, and drops the connection when a frame grows past
  `max_frame_bytes` (then reconnects).

Callbacks: `on_event(cb)` gets every event that does not belong to an action in progress, as an
`AmiEvent` (a callback with two parameters gets ``(name, fields)``, the shape of
`channels.voice.link.AmiLink`). `on_connected(cb)` runs after every connect and login, before
any event of that connection is dispatched, so a reconciliation there sees the events that
follow it. Lifecycle is logged at INFO; the secret never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from panoramisk import Manager
from panoramisk.actions import Action
from panoramisk.message import Message
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from channels.voice.ami_dispatch import (
    ConnectedCallback,
    EventCallback,
    EventDispatcher,
    finish,
)
from channels.voice.ami_frames import (
    AmiEvent,
    AmiProtocol,
    action_name,
    first_values,
    parse_frame,
    pop_field,
    to_message,
)
from channels.voice.errors import (
    AmiActionError,
    AmiAuthError,
    AmiDisconnected,
    AmiError,
    AmiTimeout,
)

logger = logging.getLogger(__name__)

_LOGOFF_TIMEOUT_S = 0.5
_CLOSE_TIMEOUT_S = 1.0
_DRAIN_S = 1.0  # stop() delivers the events already received for at most this long


class AmiSettings(BaseModel):
    """Where and how to reach Asterisk's manager interface (manager.conf)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str
    secret: SecretStr
    connect_timeout_s: float = Field(5.0, gt=0)
    action_timeout_s: float = Field(5.0, gt=0)
    ping_interval_s: float = Field(5.0, gt=0)
    ping_timeout_s: float = Field(3.0, gt=0)
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    callback_timeout_s: float = Field(30.0, gt=0)  # one event or on_connected callback
    max_frame_bytes: int = Field(64 * 1024, ge=1024)


@dataclass
class _Pending:
    action_id: str
    name: str
    action: Action
    future: asyncio.Future[Any]
    started: bool = False  # its Response came: events with its ActionID are list items


class AmiConnection:
    """A long-lived, self-healing AMI session (see the module docstring)."""

    def __init__(self, settings: AmiSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._manager: Manager | None = None
        self._protocol: AmiProtocol | None = None
        self._logged_in = False
        self._stopping = False
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._events = EventDispatcher(settings.callback_timeout_s)
        self._supervisor: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._connected_event: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._held: list[AmiEvent] | None = None  # events that came before the Login answer
        self.connects = 0  # successful logins so far
        self.frames_dropped = 0

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        return self._logged_in and self._protocol is not None and not self._protocol.closed

    # --- subscriptions -----------------------------------------------------------------------
    def on_event(self, callback: EventCallback) -> None:
        """`callback(event: AmiEvent)` (or `callback(name, fields)`) for every event."""
        self._events.on_event(callback)

    def on_connected(self, callback: ConnectedCallback) -> None:
        """`callback()` after every (re)connect and login, before that connection's events."""
        self._events.on_connected(callback)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and log in. Returns once logged in and the on_connected callbacks have run,
        or once the first attempt failed for a reason that may pass (Asterisk not up yet: it
        keeps trying in the background). A refused Login (wrong user or secret) stops
        everything and raises `AmiAuthError`."""
        if self._supervisor is not None:
            return
        loop = asyncio.get_running_loop()
        self._stopping = False
        self._manager = Manager(
            loop=loop,
            host=self.settings.host,
            port=self.settings.port,
            encoding="utf8",
            forgetable_actions=(),
        )
        # No panoramisk callback may run: events are dispatched by us (FullyBooted re-sends).
        self._manager.callbacks.clear()
        self._manager.patterns.clear()
        self._connected_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._first = loop.create_future()
        self._events.start()
        self._supervisor = loop.create_task(self._supervise(), name="ami-supervisor")
        try:
            await asyncio.shield(self._first)
        except AmiAuthError:
            await self.stop()
            raise

    async def wait_connected(self, within_s: float) -> None:
        """Until connected and logged in; `AmiTimeout` after `within_s`."""
        if self._connected_event is None:
            raise AmiDisconnected("not started")
        try:
            async with asyncio.timeout(within_s):
                await self._connected_event.wait()
        except TimeoutError:
            raise AmiTimeout(f"not connected to {self.address} within {within_s} s") from None

    async def stop(self) -> None:
        """Log off and close; fail what is pending; deliver the events already received
        (for at most `_DRAIN_S`); leave no task or future behind."""
        if self._supervisor is None:
            return
        self._stopping = True
        proto = self._protocol
        if proto is not None and self.connected:
            with contextlib.suppress(AmiError):
                await self._send(proto, {"Action": "Logoff"}, _LOGOFF_TIMEOUT_S, check=False)
        if proto is not None:
            proto.close()
        assert self._wake is not None
        self._wake.set()
        await finish(self._supervisor, _CLOSE_TIMEOUT_S * 2)
        await self._events.stop(_DRAIN_S)
        self._supervisor = None
        if self._first is not None and not self._first.done():
            self._first.cancel()
        self._manager = None
        logger.info("ami: stopped (%s)", self.address)

    async def __aenter__(self) -> AmiConnection:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the supervisor: connect, log in, watch, reconnect ------------------------------------
    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._session()
                failures = 0  # it was logged in: the next attempt starts from the minimum
            except AmiAuthError as exc:
                logger.error(
                    "ami: login to %s as %s refused: %s",
                    self.address,
                    self.settings.username,
                    exc.message,
                )
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    return
            except (AmiError, OSError) as exc:
                logger.warning("ami: cannot reach %s: %s", self.address, exc)
            except Exception:  # a bug must not end the reconnecting for good
                logger.exception("ami: the connection to %s failed unexpectedly", self.address)
            self._settle_first()
            if self._stopping:
                return
            delay = self._backoff(failures)
            failures += 1
            logger.info("ami: reconnecting to %s in %.2f s", self.address, delay)
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()  # set by stop()

    def _settle_first(self) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    def _backoff(self, failures: int) -> float:
        """Exponential from reconnect_min_s to reconnect_max_s, with "equal jitter"."""
        ceiling = min(self.settings.reconnect_max_s, self.settings.reconnect_min_s * 2**failures)
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _session(self) -> None:
        """One connection, from connect to loss. Returns (or raises) when it is over."""
        assert self._manager is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                _, proto = await loop.create_connection(
                    self._new_protocol, self.settings.host, self.settings.port
                )
        except TimeoutError:
            raise AmiTimeout(f"connect to {self.address} timed out") from None
        self._protocol = proto
        self._manager.protocol = proto
        self._held = []  # FullyBooted can come in the same read as the Login answer
        watchdog: asyncio.Task[None] | None = None
        try:
            reply = await self._send(
                proto, self._login_action(), self.settings.action_timeout_s, check=False
            )
            if not isinstance(reply, Message) or reply.get("Response") != "Success":
                message = (
                    reply.get("Message", "Login refused") if isinstance(reply, Message) else ""
                )
                raise AmiAuthError(message or "Login refused", action="Login")
            self._logged_in = True
            self.connects += 1
            logger.info("ami: connected to %s as %s", self.address, self.settings.username)
            assert self._connected_event is not None
            reconciled = self._events.push_connected()
            reconciled.add_done_callback(lambda _: self._settle_first())
            for event in self._held or []:
                self._events.push(event)
            self._held = None
            self._connected_event.set()
            watchdog = loop.create_task(self._watchdog(proto), name="ami-watchdog")
            reason = await proto.lost
            if not self._stopping:
                logger.warning("ami: disconnected from %s: %s", self.address, reason)
        finally:
            self._logged_in = False
            self._held = None
            if self._connected_event is not None:
                self._connected_event.clear()
            if watchdog is not None:
                watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watchdog
            await self._close(proto)

    def _login_action(self) -> dict[str, str]:
        return {
            "Action": "Login",
            "Username": self.settings.username,
            "Secret": self.settings.secret.get_secret_value(),
            "Events": "on",
        }

    async def _close(self, proto: AmiProtocol) -> None:
        proto.close()
        self._fail_pending("connection closed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await asyncio.shield(proto.gone)  # the socket really closed: no ResourceWarning
        if self._protocol is proto:
            self._protocol = None

    def _new_protocol(self) -> AmiProtocol:
        return AmiProtocol(
            address=self.address,
            max_frame_bytes=self.settings.max_frame_bytes,
            on_frame=self._frame,
            on_lost=self._fail_pending,
        )

    async def _watchdog(self, proto: AmiProtocol) -> None:
        """A Ping every ping_interval_s; no Pong within ping_timeout_s: half-open, drop it."""
        while not proto.closed:
            await asyncio.sleep(self.settings.ping_interval_s)
            try:
                await self._send(
                    proto, {"Action": "Ping"}, self.settings.ping_timeout_s, check=False
                )
            except AmiTimeout:
                logger.warning(
                    "ami: no answer to Ping from %s within %.1f s: the connection is half-open",
                    self.address,
                    self.settings.ping_timeout_s,
                )
                proto.drop("half-open (no Pong)")
                return
            except AmiDisconnected:
                return

    def _fail_pending(self, reason: str) -> None:
        """The connection is gone: every action waiting for an answer fails now (there is
        only ever one connection, so every pending action was sent on it)."""
        for pending in list(self._pending.values()):
            if not pending.future.done():
                error = AmiDisconnected(
                    f"{reason} before {pending.name} was answered", action=pending.name
                )
                pending.future.set_exception(error)

    # --- actions -----------------------------------------------------------------------------
    async def send_action(
        self,
        action: Mapping[str, str | Sequence[str]],
        *,
        timeout_s: float | None = None,
        raise_on_error: bool = True,
    ) -> Message | list[Message]:
        """Send `action` and return its Response (a list for list actions: the Response, the
        events, the ...Complete event). Always returns or raises within `timeout_s` (default
        action_timeout_s): `AmiTimeout`, `AmiDisconnected`, or `AmiActionError` for
        ``Response: Error`` unless `raise_on_error` is false. An Originate returns at its
        first Response; its OriginateResponse arrives as an event."""
        proto = self._protocol
        if self._stopping or proto is None or not self.connected:
            raise AmiDisconnected(f"not connected to {self.address}", action=action_name(action))
        return await self._send(
            proto, action, timeout_s or self.settings.action_timeout_s, check=raise_on_error
        )

    async def action(self, fields: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
        """`send_action` for channels.voice.link.AmiLink: the Response's fields (first value
        of each key) and, for list actions, the listed events under ``"events"``. A
        ``Response: Error`` is returned, not raised."""
        reply = await self.send_action(fields, raise_on_error=False)
        if isinstance(reply, list):
            head = dict(first_values(reply[0]))
            items = [m for m in reply[1:] if "Event" in m and m.get("EventList") != "Complete"]
            head["events"] = [dict(first_values(m)) for m in items]
            return head
        return dict(first_values(reply))

    async def _send(
        self,
        proto: AmiProtocol,
        action: Mapping[str, str | Sequence[str]],
        within_s: float,
        *,
        check: bool,
    ) -> Message | list[Message]:
        assert self._manager is not None
        fields: dict[str, str | list[str]] = {}
        for key, value in action.items():
            values = [value] if isinstance(value, str) else list(value)
            if any("\r" in v or "\n" in v for v in [key, *values]):
                # a line break would end the header early: another header, or another action
                raise ValueError(f"AMI field {key!r} contains a line break")
            fields[key] = value if isinstance(value, str) else values
        name = action_name(fields)
        if not name:
            raise ValueError("an AMI action needs an 'Action' field")
        action_id = str(pop_field(fields, "ActionID") or f"cityline-{next(self._ids)}")
        if action_id in self._pending:
            raise ValueError(f"ActionID {action_id!r} is already in use")
        # An Async Originate is answered "successfully queued" at once; waiting for its
        # OriginateResponse (panoramisk's default) could take the whole ring time.
        as_list = False if name.lower() == "originate" else None
        sent = Action({**fields, "ActionID": action_id}, as_list=as_list)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = _Pending(action_id, name, sent, future)
        sent.future.add_done_callback(lambda done: _relay(done, future))
        self._pending[action_id] = pending
        try:
            self._manager.send_action(sent, as_list=as_list)
            async with asyncio.timeout(within_s):
                result = await future
        except TimeoutError:
            raise AmiTimeout(f"no answer to {name} within {within_s} s", action=name) from None
        finally:
            self._pending.pop(action_id, None)
            if not sent.future.done():
                sent.future.cancel()
        head = result[0] if isinstance(result, list) else result
        if check and head.get("Response") == "Error":
            raise AmiActionError(head.get("Message", "Error"), action=name, response=result)
        return result

    # --- incoming frames ---------------------------------------------------------------------
    def _frame(self, frame: bytes) -> None:
        """One frame (without its closing empty line): route it or queue it as an event."""
        pairs = parse_frame(frame)
        if pairs is None:
            self.frames_dropped += 1
            logger.warning(
                "ami: dropped a malformed frame of %d bytes from %s: %r",
                len(frame),
                self.address,
                frame[:80],
            )
            return
        action_id = next((value for key, value in pairs if key == "ActionID"), None)
        pending = self._pending.get(action_id) if action_id is not None else None
        if pairs[0][0] == "Response":
            if pending is None:
                logger.debug("ami: a Response for no pending action (ActionID %r)", action_id)
                return
            pending.started = True
            pending.action.add_message(to_message(pairs))
            return
        if pending is not None and pending.started and not pending.action.future.done():
            pending.action.add_message(to_message(pairs))  # an item of a list response
            return
        event = AmiEvent(pairs[0][1], tuple(pairs[1:]))
        if self._held is not None:
            self._held.append(event)
        else:
            self._events.push(event)


def _relay(done: asyncio.Future[Any], future: asyncio.Future[Any]) -> None:
    if future.done() or done.cancelled():
        return
    if done.exception() is not None:
        future.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        future.set_result(done.result())
