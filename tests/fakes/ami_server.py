"""FakeAsterisk: an AMI server on a loopback port that speaks like a real Asterisk 22.10.

The protocol side reproduces the captured traffic in ../shared/asterisk/ (CAPTURES.md, its 32
surprises); behind it a small PBX runs a real dialplan (by default the capture's own
extensions.conf) with Local and PJSIP channels, Dial and bridges, Originate, MusicOnHold and
FastAGI sessions to a real FastAGI server (tests/fakes/agi_client.py). Tests drive it through
plain methods on the same event loop, as wazo-calld drives its mock_ari through control
endpoints:

    async with FakeAsterisk(time_scale=0.01, timestampevents=True) as fake:
        fake.route_agi("127.0.0.1:4573", ("127.0.0.1", agi_server_port))
        fake.set_agent_behaviour("agent1", "answer_after:2")
        caller = fake.add_caller(callerid_num="601234567", callerid_name="Jan Kowalski")
        caller.answer_prompts("1", "2")  # typed when the IVR next listens for keys
        await caller.wait_state("moh")
        caller.hangup()
        await caller.gone
        stamp, fields = fake.find_events("Hangup", Channel=caller.name)[0]

Faults for the client's robustness tests: `drop_connections` (FIN or RST), `freeze_connections`
(half-open: the socket stays, nothing is answered), `inject` / `send_garbage` /
`send_truncated` / `send_oversized`, `ignore_actions`, and `restart` (all calls gone, the same
port refuses connections for `downtime_s`, uniqueids keep counting up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from tests.fakes import ami_actions
from tests.fakes.ami_codec import Pairs, Request, encode
from tests.fakes.ami_session import AmiSession
from tests.fakes.calls import AgentHandle, CallerHandle, add_caller, behaviour_steps
from tests.fakes.channel import Channel
from tests.fakes.pbx import Pbx

logger = logging.getLogger(__name__)


class FakeAsterisk:
    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        auth_fail_delay_s: float = 1.0,
        timestampevents: bool = False,
        time_scale: float = 1.0,
        chunking: str = "whole",
        chunk_seed: int | None = None,
        split_probability: float = 0.5,
        chunk_delay_s: float = 0.001,
        order_seed: int | None = None,
        dialplan: str | None = None,
        env: Mapping[str, str] | None = None,
        agi_url: str | None = None,
        clock: Callable[[], float] = time.time,
        prompts: Mapping[str, float] | None = None,
        pjsip_caller_end_state: str = "UNAVAILABLE",
    ) -> None:
        """
        users: AMI accounts (manager.conf), default the capture's ``router``/``routerpass``.
        auth_fail_delay_s: Asterisk waits ~1.0 s before ``Authentication failed``.
        timestampevents: add ``Timestamp: <epoch>.<6 digits>`` after ``Privilege`` in events.
        time_scale: every dialplan wait, prompt and ring time is multiplied by it.
        chunking: "whole" (one write per message) or "lines" (random splits at line
            boundaries, seeded by `chunk_seed`, `chunk_delay_s` apart so the reader sees them).
        order_seed: None keeps the captured order of list items; a seed shuffles them.
        dialplan: extensions.conf text (default: the capture's); `env` feeds ${ENV(...)}.
        agi_url: the global AGI_URL the capture dialplan hands to AGI().
        prompts: prompt name -> seconds (hello-world 1.42 s, beep 0.445 s, others 1 s).
        """
        if chunking not in ("whole", "lines"):
            raise ValueError("chunking must be 'whole' or 'lines'")
        self.users = dict(users or {"router": "routerpass"})
        self.host = host
        self._requested_port = port
        self.port = 0
        self.auth_fail_delay_s = auth_fail_delay_s
        self.timestampevents = timestampevents
        self.chunking = chunking
        self.chunk_seed = chunk_seed
        self.split_probability = split_probability
        self.chunk_delay_s = chunk_delay_s
        self.pbx = Pbx(
            dialplan=dialplan,
            env=env,
            clock=clock,
            time_scale=time_scale,
            order_seed=order_seed,
            pjsip_caller_end_state=pjsip_caller_end_state,
        )
        if agi_url is not None:
            self.pbx.globals["AGI_URL"] = agi_url
        for name, seconds in (prompts or {}).items():
            self.pbx.prompts[name] = int(seconds * 8000)
        self.pbx.sinks.append(self._broadcast)
        self.sessions: set[AmiSession] = set()
        self.actions_seen: list[Request] = []
        self._ignored: set[str] = set()
        self._ignore_predicate: Callable[[Request], bool] | None = None
        self._server: asyncio.Server | None = None
        self.connections_accepted = 0

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_session, self.host, self.port or self._requested_port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def _new_session(self) -> AmiSession:
        session = AmiSession(self)
        self.sessions.add(session)
        self.connections_accepted += 1
        return session

    async def stop(self) -> None:
        """Close the listener and every connection, end every call; nothing left running."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._close_sessions(rst=False)
        await self.pbx.shutdown()

    async def __aenter__(self) -> FakeAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _close_sessions(self, *, rst: bool) -> None:
        sessions = list(self.sessions)
        for session in sessions:
            session.abort(rst=rst)
        for session in sessions:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.wait_closed(), 2.0)

    def session_gone(self, session: AmiSession) -> None:
        self.sessions.discard(session)
        self.pbx.poke()

    # --- AMI plumbing ------------------------------------------------------------------------
    def _broadcast(self, event: str, fields: Pairs, category: str, stamp: float) -> None:
        head: Pairs = [("Event", event), ("Privilege", f"{category},all")]
        if self.timestampevents:
            head.append(("Timestamp", f"{stamp:.6f}"))
        data = encode([*head, *fields])
        for session in list(self.sessions):
            session.deliver_event(category, data)

    async def process(self, session: AmiSession, request: Request) -> None:
        self.actions_seen.append(request)
        await ami_actions.process(self, session, request)

    def ignores(self, request: Request) -> bool:
        if request.action.lower() in self._ignored:
            return True
        return self._ignore_predicate is not None and self._ignore_predicate(request)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def authenticated_sessions(self) -> list[AmiSession]:
        return [s for s in self.sessions if s.authenticated and not s.closed]

    async def wait_sessions(self, count: int = 1, within_s: float = 5.0) -> None:
        """Until `count` logged-in connections exist (e.g. after a client reconnected)."""
        await self.pbx.wait_until(lambda: len(self.authenticated_sessions) >= count, within_s)

    # --- calls -------------------------------------------------------------------------------
    def add_caller(
        self,
        exten: str = "311",
        context: str = "city",
        *,
        callerid_num: str | None = "5551234",
        callerid_name: str | None = "Resident Test",
        kind: str = "local",
        variables: dict[str, str] | None = None,
        patience_s: float | None = None,
        endpoint: str = "sipp",
    ) -> CallerHandle:
        """A resident calls `exten@context`. kind="local": a Local pair like the captures'
        Originate (the resident's ;1 runs Wait(patience_s or a day)); kind="pjsip": one
        ``PJSIP/<endpoint>-XXXXXXXX`` channel like the sipp call. Returns the call's handle."""
        return add_caller(
            self.pbx,
            exten=exten,
            context=context,
            callerid_num=callerid_num,
            callerid_name=callerid_name,
            kind=kind,
            variables=variables,
            patience_s=patience_s,
            endpoint=endpoint,
        )

    def set_agent_behaviour(self, exten: str, behaviour: str, context: str = "agents") -> None:
        """How the phone `exten` answers when dialled (Local/<exten>@<context> or
        PJSIP/<exten>, also a number called back as PJSIP/<number>@trunk): "answer",
        "answer_after:<s>", "noanswer", "busy", "congested", "unavailable" (no such
        extension or endpoint: Dial gives CHANUNAVAIL, Originate Reason 0)."""
        steps = behaviour_steps(exten, behaviour)
        if steps is None:
            ctx = self.pbx.dialplan.contexts.get(context)
            if ctx is not None:
                ctx.extensions.pop(exten, None)
            self.pbx.endpoint_behaviour.pop(exten, None)
            return
        self.pbx.dialplan.set_extension(context, exten, steps)
        self.pbx.endpoint_behaviour[exten] = behaviour

    def route_agi(self, named: str, to: tuple[str, int]) -> None:
        """AGI(agi://<named>/...) connects to `to` instead: the dialplan (and every AppData
        and agi_request the router sees) keeps the captured URL, the session reaches the test's
        FastAGI server on its free port. `named` is "host:port"."""
        host, _, port = named.rpartition(":")
        self.pbx.agi_routes[(host, int(port))] = to

    set_phone_behaviour = set_agent_behaviour

    def agent(self, exten: str, context: str = "agents") -> AgentHandle:
        return AgentHandle(self.pbx, exten, context)

    def hangup_agent(self, exten: str, context: str = "agents") -> bool:
        """The agent `exten` puts the phone down (see AgentHandle.hangup)."""
        return self.agent(exten, context).hangup()

    @property
    def channels(self) -> list[Channel]:
        return self.pbx.live_channels()

    def find_events(self, event: str, **fields: str) -> list[tuple[float, dict[str, str]]]:
        """Emitted events named `event` whose fields match, with the time they were sent."""
        found = []
        for stamp, name, pairs in self.pbx.event_log:
            if name != event:
                continue
            values = dict(pairs)
            if all(values.get(key) == value for key, value in fields.items()):
                found.append((stamp, values))
        return found

    # --- faults ------------------------------------------------------------------------------
    async def drop_connections(self, *, rst: bool = False) -> None:
        """Cut every AMI connection (FIN, or RST with `rst`). Calls go on; a client that
        reconnects finds them with CoreShowChannels/Status."""
        await self._close_sessions(rst=rst)

    def freeze_connections(self) -> None:
        """Half-open: every current connection stays open but is never answered again."""
        for session in list(self.sessions):
            session.freeze()

    def inject(self, data: bytes) -> None:
        """Raw bytes into every logged-in connection, in order with the regular output."""
        for session in self.authenticated_sessions:
            session.send_raw(data)

    def send_garbage(self) -> None:
        self.inject(b"\x00\xff\xfegarbage without a colon\r\n\x01\x02: \x03\r\n%%%\r\n\r\n")

    def send_truncated(self) -> None:
        """An event cut off mid-line: the next message completes it into one bad frame."""
        self.inject(b"Event: Newchannel\r\nPrivilege: call,all\r\nChannel: Local/tr")

    def send_oversized(self, size: int = 200_000, *, terminated: bool = True) -> None:
        """One huge event (a VarSet whose Value is `size` bytes)."""
        body = b"Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: none\r\nValue: "
        body += b"x" * size
        self.inject(body + (b"\r\n\r\n" if terminated else b""))

    def ignore_actions(
        self, *actions: str, predicate: Callable[[Request], bool] | None = None
    ) -> None:
        """Never answer these actions (names, case-insensitive) or those `predicate` picks."""
        self._ignored |= {action.lower() for action in actions}
        self._ignore_predicate = predicate

    def answer_all_actions(self) -> None:
        self._ignored.clear()
        self._ignore_predicate = None

    async def restart(self, downtime_s: float = 0.0) -> None:
        """Asterisk restarts: connections cut, every call gone without events, the port refuses
        connections for `downtime_s`, then a fresh boot (uniqueids keep counting up)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._close_sessions(rst=False)
        await self.pbx.shutdown()
        for chan in self.pbx.live_channels():
            chan.dead = True
        self.pbx.channels.clear()
        self.pbx.boot_time = self.pbx.clock()
        await asyncio.sleep(downtime_s)
        await self.start()

    def __repr__(self) -> str:
        return f"<FakeAsterisk {self.host}:{self.port} sessions={len(self.sessions)}>"
