"""The Asterisk fakes (tests/fakes/) against the traffic of a real Asterisk 22.10.

The captured dialogs in ../shared/asterisk/ are replayed from the client side and what the fake
sends is compared with the capture's server bytes (tests/fakes/replay.py says what is
normalised: ids, times, ports; per-channel order strict, device states as a multiset). The fake
runs its dialplan 20-50 times faster than real time (`SCALE`), so the whole file takes seconds.
The rest checks the control hooks and faults that the voice tests rely on.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator

import pytest

from tests.fakes import FakeAsterisk
from tests.fakes.raw_ami import RawAmi, parse
from tests.fakes.replay import (
    CAPTURES,
    AgiReplayServer,
    compare,
    normalise_agi,
    parse_dialog,
    replay_ami,
)

pytestmark = pytest.mark.skipif(
    not CAPTURES.is_dir(), reason="the captured Asterisk traffic (../shared/asterisk) is absent"
)
SCALE = 0.03  # the fake's dialplan time per real second


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def like_capture(name: str, **options: object) -> FakeAsterisk:
    """A fake set up as the capture machine was: nothing on the FastAGI port (AGI fails), the
    channel sequence numbers following on from the previous capture."""
    fake = FakeAsterisk(time_scale=SCALE, auth_fail_delay_s=0.05, **options)  # type: ignore[arg-type]
    fake.route_agi("127.0.0.1:4573", ("127.0.0.1", closed_port()))
    text = (CAPTURES / f"{name}.txt").read_text(errors="replace")
    for tech in ("Local", "PJSIP"):
        match = re.search(tech + r"/[^\s;]+?-([0-9a-f]{8})", text)
        if match:
            fake.pbx.continue_sequence(tech, int(match.group(1), 16))
    return fake


async def replay(fake: FakeAsterisk, name: str) -> bytes:
    return await replay_ami("127.0.0.1", fake.port, parse_dialog(CAPTURES / f"{name}.dialog.txt"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=SCALE, auth_fail_delay_s=0.05) as server:
        server.route_agi("127.0.0.1:4573", ("127.0.0.1", closed_port()))
        yield server


# --- replayed captures ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "errors",
        "errors-badlogin",
        "errors-unknownuser",
        "coreshowchannels",
        "abandon-while-waiting-local",
        "connect-agent-answers",
        "connect-agent-noanswer",
        "originate-callback",
        "ami-transcript-basic",
    ],
)
async def test_replayed_dialog_gives_the_captured_bytes(name: str) -> None:
    async with like_capture(name) as fake:
        sent = await replay(fake, name)
    assert compare((CAPTURES / f"{name}.txt").read_bytes(), sent) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", ["connect-agent-answers", "originate-callback"])
async def test_seeded_event_orders_stay_within_what_asterisk_does(name: str, seed: int) -> None:
    """Surprise 5: with an order seed the fake varies the races (which half of a Local pair
    goes up or hangs up first, OriginateResponse before or after DialEnd) and still gives the
    captured bytes channel by channel."""
    async with like_capture(name, order_seed=seed) as fake:
        sent = await replay(fake, name)
    assert compare((CAPTURES / f"{name}.txt").read_bytes(), sent) == []


async def test_replayed_lines_chunking_still_gives_the_captured_bytes() -> None:
    """Surprise 1: messages split across writes at line boundaries parse the same."""
    name = "coreshowchannels"
    async with like_capture(name, chunking="lines", chunk_seed=7, split_probability=0.3) as fake:
        sent = await replay(fake, name)
    assert compare((CAPTURES / f"{name}.txt").read_bytes(), sent) == []


async def test_fastagi_ivr_dtmf_gives_the_captured_ami_and_agi_bytes() -> None:
    name = "fastagi-ivr-dtmf"
    cases = {"1001": "digit", "1002": "timeout", "1003": "hangup"}
    dialogs = {
        number: parse_dialog(CAPTURES / f"{name}.agi-{case}.dialog.txt", agi=True)
        for number, case in cases.items()
    }
    agi = AgiReplayServer(dialogs)
    await agi.start()
    try:
        async with like_capture(name) as fake:
            fake.route_agi("127.0.0.1:4573", ("127.0.0.1", agi.port))
            sent = await replay(fake, name)
    finally:
        await agi.stop()
    assert compare((CAPTURES / f"{name}.txt").read_bytes(), sent) == []
    for number, case in cases.items():
        captured = (CAPTURES / f"{name}.agi-{case}.from-asterisk.raw.txt").read_bytes()
        assert normalise_agi(agi.received[number]) == normalise_agi(captured), case


async def test_sip_caller_abandoning_gives_the_captured_bytes() -> None:
    """abandon-while-waiting: a PJSIP call (sipp) in MOH sends BYE."""
    name = "abandon-while-waiting"
    async with like_capture(name) as fake:
        client = await RawAmi.connect(fake.port, login=False)
        await client.action("Login", ActionID="login-1", Username="router", Secret="routerpass")
        await client.event("SuccessfulAuth")
        caller = fake.add_caller(callerid_num="sipp", callerid_name="sipp", kind="pjsip")
        await caller.wait_state("moh")
        caller.hangup()
        await client.event("DeviceStateChange", State="UNAVAILABLE")
        await client.action("Logoff", ActionID="logoff-2")
        await client.close()
    assert compare((CAPTURES / f"{name}.txt").read_bytes(), bytes(client.raw)) == []


async def test_command_output_gives_the_captured_lines() -> None:
    """Only what another machine and uptime make differ is normalised: the uptime, the calls
    counted since boot, the queue's abandoned counter and the line numbers of the file."""
    name = "command-output"
    async with like_capture(name) as fake:
        sent = await replay(fake, name)

    def cli_volatile(data: bytes) -> bytes:
        text = data.decode()
        text = re.sub(r"(System uptime|Last reload): [^\r]*", r"\1: <*>", text)
        text = re.sub(r"\d+ calls? processed", "<n> calls processed", text)
        text = re.sub(r"A:\d+", "A:<n>", text)
        text = re.sub(r"login was \d+ secs ago", "login was <n> secs ago", text)
        return re.sub(r"\[extensions\.conf:\d+\]", "[extensions.conf:<n>]", text).encode()

    captured = (CAPTURES / f"{name}.txt").read_bytes()
    assert compare(cli_volatile(captured), cli_volatile(sent)) == []


# --- protocol details -------------------------------------------------------------------------
async def test_wrong_secret_is_refused_after_the_configured_delay() -> None:
    async with FakeAsterisk(auth_fail_delay_s=0.2) as fake:
        client = await RawAmi.connect(fake.port, login=False)
        started = time.monotonic()
        reply = await client.action("Login", Username="router", Secret="nope")
        assert reply["Message"] == "Authentication failed"
        assert time.monotonic() - started >= 0.19
        await asyncio.wait_for(client.wait_closed(), 2.0)  # the server closes the connection
        await client.close()


async def test_timestampevents_puts_the_event_time_after_privilege(fake: FakeAsterisk) -> None:
    fake.timestampevents = True
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await client.event("MusicOnHoldStart")
    newchannel = next(m for m in client.messages if m.startswith("Event: Newchannel"))
    lines = newchannel.split("\r\n")
    assert lines[1] == "Privilege: call,all"
    assert re.fullmatch(r"Timestamp: \d{10}\.\d{6}", lines[2])
    stamp = float(lines[2].split(": ")[1])
    logged = fake.find_events("Newchannel", Channel=caller.far_end.name)[0][0]
    assert f"{logged:.6f}" == f"{stamp:.6f}"
    status = await client.action("Status")
    assert status["EventList"] == "start"
    listed = [m for m in client.messages if m.startswith("Event: Status\r\n")]
    assert listed and all("Timestamp:" not in m for m in listed)  # list items have none
    await client.close()


async def test_events_of_an_action_come_after_its_response(fake: FakeAsterisk) -> None:
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    reply = await client.action("Setvar", Channel=caller.name, Variable="ROUTE_X", Value="1")
    varset = await client.event("VarSet", Variable="ROUTE_X")
    order = [parse(m) for m in client.messages]
    assert order.index(reply) < order.index(varset)
    hung = await client.action("Hangup", Channel=caller.name, Cause="16")
    assert hung["Message"] == "Channel Hungup"
    await client.event("Hangup", Channel=caller.name, Cause="16")
    await client.close()


async def test_order_seed_varies_list_order_and_default_is_asterisk_hash_order() -> None:
    orders = []
    for seed in (None, 1, 2):
        async with FakeAsterisk(time_scale=SCALE, order_seed=seed) as fake:
            fake.route_agi("127.0.0.1:4573", ("127.0.0.1", closed_port()))
            callers = [fake.add_caller(callerid_num=f"55500{n}") for n in range(4)]
            for caller in callers:
                await caller.wait_state("moh")
            client = await RawAmi.connect(fake.port)
            await client.action("CoreShowChannels")
            await client.event("CoreShowChannelsComplete")
            orders.append([m["Channel"] for m in client.events("CoreShowChannel")])
            await client.close()
    assert sorted(orders[0]) == sorted(orders[1]) == sorted(orders[2])
    assert orders[1] != orders[0] or orders[2] != orders[0]


@pytest.mark.parametrize(
    ("kind", "cause", "request_cause", "hangup_cause"),
    [("local", None, "0", "0"), ("local", 16, "16", "16"), ("pjsip", None, None, "0")],
)
async def test_resident_hangs_up_in_music_on_hold(
    fake: FakeAsterisk, kind: str, cause: int | None, request_cause: str | None, hangup_cause: str
) -> None:
    """Surprise 17: the cause depends on the path (AMI-like Local hang-up or a SIP BYE)."""
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller(kind=kind)
    await caller.wait_state("moh")
    caller.hangup(cause=cause)
    ended = await client.event("Hangup", Channel=caller.name)
    assert ended["Cause"] == hangup_cause
    request = client.events("HangupRequest", Channel=caller.name)[0]
    assert request.get("Cause") == request_cause
    soft = client.events("SoftHangupRequest", Channel=caller.name)[0]
    assert soft["Cause"] == "16"
    names = [parse(m).get("Event") for m in client.messages]
    assert names.index("MusicOnHoldStop") < names.index("SoftHangupRequest")
    assert await asyncio.wait_for(caller.gone, 1) > 0
    await client.close()


# --- calls driven by the test -----------------------------------------------------------------
async def _connect_to(client: RawAmi, caller_name: str, agent: str, ring_s: str = "5") -> None:
    await client.action("Setvar", Channel=caller_name, Variable="RINGTIME", Value=ring_s)
    await client.action(
        "Redirect", Channel=caller_name, Context="cityline-connect", Exten=agent, Priority="1"
    )


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [("busy", "BUSY"), ("congested", "CONGESTION"), ("noanswer", "NOANSWER")],
)
async def test_agent_that_does_not_take_the_call(
    fake: FakeAsterisk, behaviour: str, status: str
) -> None:
    fake.set_agent_behaviour("anna", behaviour)
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    await _connect_to(client, caller.name, "anna", ring_s="2")
    end = await client.event("DialEnd", Channel=caller.name)
    assert end["DialStatus"] == status
    assert await client.event("VarSet", Channel=caller.name, Variable="DIALSTATUS")
    await caller.wait_state("moh")  # the caller's dialplan goes on: music again
    assert bool(client.events("DialState", Channel=caller.name)) == (behaviour == "noanswer")
    assert not [c for c in fake.channels if c.name.startswith("Local/anna@")]
    await client.close()


async def test_unknown_agent_gives_chanunavail(fake: FakeAsterisk) -> None:
    fake.set_agent_behaviour("agent1", "unavailable")
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    await _connect_to(client, caller.name, "agent1")
    await client.event("VarSet", Channel=caller.name, Variable="DIALSTATUS", Value="CHANUNAVAIL")
    await client.event("DeviceStateChange", Device="Local/agent1@agents", State="INVALID")
    await client.close()


async def test_agent_answers_after_ringing_then_hangs_up(fake: FakeAsterisk) -> None:
    fake.set_agent_behaviour("anna", "answer_after:1")
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    await _connect_to(client, caller.name, "anna", ring_s="15")
    await client.event("DialState", Channel=caller.name, DialStatus="RINGING")
    assert caller.state == "ringing"
    await client.event("DialEnd", Channel=caller.name, DialStatus="ANSWER")
    entered = await client.event("BridgeEnter", Channel=caller.name)
    assert entered["BridgeNumChannels"] == "2"  # the agent leg entered first (surprise 19)
    assert fake.hangup_agent("anna")
    await client.event("Hangup", Channel=caller.far_end.name)
    await client.event("Hangup", Channel=caller.name)
    await client.event("BridgeDestroy")
    await fake.pbx.wait_until(lambda: not fake.channels, 2.0)
    await client.close()


async def test_caller_hanging_up_while_talking_ends_both_sides(fake: FakeAsterisk) -> None:
    fake.set_agent_behaviour("anna", "answer")
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    await _connect_to(client, caller.name, "anna")
    await caller.wait_state("talking")
    caller.hangup()
    request = await client.event("HangupRequest", Channel=caller.name)
    assert request["Cause"] == "0"
    await client.event("BridgeDestroy")
    await client.event("Hangup", Channel=caller.name)
    await fake.pbx.wait_until(lambda: not fake.channels, 2.0)
    leaves = client.events("BridgeLeave")
    assert leaves[0]["Channel"] == caller.name
    await client.close()


async def test_caller_hanging_up_while_the_agent_rings(fake: FakeAsterisk) -> None:
    fake.set_agent_behaviour("anna", "noanswer")
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    await _connect_to(client, caller.name, "anna", ring_s="30")
    await client.event("DialState", Channel=caller.name)
    caller.hangup()
    end = await client.event("DialEnd", Channel=caller.name)
    assert end["DialStatus"] == "CANCEL"
    await fake.pbx.wait_until(lambda: not fake.channels, 2.0)
    await client.close()


async def test_originate_to_busy_and_unknown_endpoints(fake: FakeAsterisk) -> None:
    fake.set_phone_behaviour("1001", "busy")
    client = await RawAmi.connect(fake.port)
    for channel, reason in (("PJSIP/1001", "5"), ("PJSIP/nobody", "0")):
        reply = await client.action(
            "Originate", Channel=channel, Context="resident", Exten="s", Priority="1",
            Async="true",
        )  # fmt: skip
        assert reply["Message"] == "Originate successfully queued"
        response = await client.event("OriginateResponse", ActionID=reply["ActionID"])
        assert (response["Response"], response["Reason"]) == ("Failure", reason)
        assert response["Uniqueid"] == "<unknown>"
    await client.close()


# --- FastAGI ----------------------------------------------------------------------------------
class TinyIvr:
    """A FastAGI server for the tests: runs `script` (a list of commands) and records replies."""

    def __init__(self, script: list[str], *, close: bool = True) -> None:
        self.script = script
        self.close = close
        self.env: dict[str, str] = {}
        self.replies: list[str] = []
        self.done = asyncio.Event()
        self.port = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> TinyIvr:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (line := (await reader.readline()).decode()) != "\n":
            key, _, value = line.rstrip("\n").partition(": ")
            self.env[key] = value
        for command in self.script:
            writer.write(f"{command}\n".encode())
            reply = (await reader.readline()).decode().rstrip("\n")
            while reply == "HANGUP":
                self.replies.append(reply)
                reply = (await reader.readline()).decode().rstrip("\n")
            self.replies.append(reply)
        if self.close:
            writer.close()
            await writer.wait_closed()
        self.done.set()


async def test_resident_answers_ivr_prompts_over_fastagi(fake: FakeAsterisk) -> None:
    script = ["ANSWER", "GET DATA welcome 3000 2", "STREAM FILE menu 0123", "GET DATA beep 500 1"]
    fake.pbx.prompts.update(welcome=8000 * 60, menu=8000 * 60)  # long: the keys come first
    async with TinyIvr(script) as ivr:
        fake.route_agi("127.0.0.1:4573", ("127.0.0.1", ivr.port))
        client = await RawAmi.connect(fake.port)
        caller = fake.add_caller(kind="pjsip", callerid_num="48601234567", callerid_name="Jan")
        caller.answer_prompts("42", "3", "")
        await asyncio.wait_for(ivr.done.wait(), 5)
        await caller.wait_state("moh")
    assert ivr.env["agi_channel"] == caller.name
    assert ivr.env["agi_type"] == "PJSIP"
    assert ivr.env["agi_accountcode"] == ""
    assert ivr.replies[0] == "200 result=0"
    assert ivr.replies[1] == "200 result=42"
    assert re.fullmatch(r"200 result=51 endpos=\d+", ivr.replies[2])
    assert ivr.replies[3] == "200 result= (timeout)"
    await client.event("VarSet", Channel=caller.name, Variable="AGISTATUS", Value="SUCCESS")
    begins = client.events("DTMFBegin", Channel=caller.name, Direction="Received")
    assert [m["Digit"] for m in begins] == ["4", "2", "3"]
    await client.close()


async def test_redirect_during_agi_sends_hangup_and_continues_at_the_target(
    fake: FakeAsterisk,
) -> None:
    fake.set_agent_behaviour("anna", "answer")
    async with TinyIvr(["ANSWER", "WAIT FOR DIGIT -1", "GET VARIABLE CHANNEL"]) as ivr:
        fake.route_agi("127.0.0.1:4573", ("127.0.0.1", ivr.port))
        client = await RawAmi.connect(fake.port)
        caller = fake.add_caller()
        await client.event("AGIExecStart", Command="WAIT FOR DIGIT -1")
        await _connect_to(client, caller.name, "anna")
        await asyncio.wait_for(ivr.done.wait(), 5)
        await caller.wait_state("talking")
    assert ivr.replies[1:] == ["200 result=-1", "HANGUP", f"200 result=1 ({caller.name})"]
    await client.event("VarSet", Channel=caller.name, Variable="AGISTATUS", Value="HANGUP")
    await client.close()


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ("garbage_env", b"not an agi environment"),
        ("truncated_env", b"agi_network: yes\n"),
        ("oversized_env", b"x" * 200_000),
        ("garbage_reply", b"this is no reply"),
        ("truncated_reply", b"\n\n200 resu"),
        ("oversized_reply", b"y" * 200_000),
    ],
)
async def test_broken_agi_input_for_the_fastagi_server(
    fake: FakeAsterisk, fault: str, expect: bytes
) -> None:
    received = bytearray()
    closed = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ANSWER\n")
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    fake.route_agi("127.0.0.1:4573", ("127.0.0.1", server.sockets[0].getsockname()[1]))
    caller = fake.add_caller()
    caller.break_next_agi(fault)
    await asyncio.wait_for(closed.wait(), 5)
    server.close()
    await server.wait_closed()
    assert expect in received
    await caller.wait_state("moh")  # the call goes on in the dialplan (AGISTATUS=FAILURE)
    assert fake.find_events("VarSet", Variable="AGISTATUS", Value="FAILURE")


# --- faults -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rst", [False, True])
async def test_drop_connections_keeps_the_calls(fake: FakeAsterisk, rst: bool) -> None:
    client = await RawAmi.connect(fake.port)
    caller = fake.add_caller()
    await caller.wait_state("moh")
    await fake.drop_connections(rst=rst)
    await asyncio.wait_for(client.wait_closed(), 2)
    assert client.reset is rst
    again = await RawAmi.connect(fake.port)
    await again.action("CoreShowChannels")
    await again.event("CoreShowChannelsComplete", ListItems="2")
    await client.close()
    await again.close()


async def test_frozen_connection_stays_open_and_silent(fake: FakeAsterisk) -> None:
    client = await RawAmi.connect(fake.port)
    fake.freeze_connections()
    with pytest.raises(TimeoutError):
        await client.action("Ping", within_s=0.3)
    assert not client.closed
    fresh = await RawAmi.connect(fake.port)
    assert (await fresh.action("Ping"))["Ping"] == "Pong"
    await client.close()
    await fresh.close()


async def test_injected_frames_reach_the_client_in_order(fake: FakeAsterisk) -> None:
    client = await RawAmi.connect(fake.port)
    fake.send_garbage()
    fake.send_oversized(70_000)
    fake.send_truncated()
    with pytest.raises(TimeoutError):  # its reply completes the truncated frame
        await client.action("Ping", within_s=0.3)
    assert (await client.action("Ping"))["Ping"] == "Pong"
    assert b"garbage without a colon" in client.raw
    assert b"x" * 70_000 in client.raw
    assert b"Channel: Local/trResponse: Success\r\n" in client.raw
    await client.close()


async def test_ignored_actions_get_no_answer(fake: FakeAsterisk) -> None:
    client = await RawAmi.connect(fake.port)
    fake.ignore_actions("Ping")
    with pytest.raises(TimeoutError):
        await client.action("Ping", within_s=0.2)
    fake.answer_all_actions()
    assert (await client.action("Ping"))["Response"] == "Success"
    await client.close()


async def test_restart_drops_calls_refuses_then_boots_again(fake: FakeAsterisk) -> None:
    client = await RawAmi.connect(fake.port)
    first = fake.add_caller()
    await first.wait_state("moh")
    restart = asyncio.get_running_loop().create_task(fake.restart(downtime_s=0.3))
    await asyncio.wait_for(client.wait_closed(), 2)
    await asyncio.sleep(0.05)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", fake.port)
    await restart
    again = await RawAmi.connect(fake.port)
    booted = await again.event("FullyBooted")
    assert booted["Uptime"] == "0"
    await again.action("CoreShowChannels")
    assert (await again.event("CoreShowChannelsComplete"))["ListItems"] == "0"
    second = fake.add_caller()
    assert float(second.uniqueid) > float(first.uniqueid)
    await client.close()
    await again.close()
