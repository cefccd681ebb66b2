"""The IVR over FastAGI: the real `FastAgiServer` on 127.0.0.1:0, driven by a fake Asterisk that
speaks exactly the captured FastAGI bytes (tests/channels/agi_fake.py), running the packaged
city flow against the packaged default configuration."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from channels.voice.agi import (
    AgiCommandError,
    AgiReply,
    AgiSession,
    CallerHungUp,
    FastAgiSession,
    parse_result,
)
from channels.voice.agi_env import AgiEnv, normalise_caller
from channels.voice.fastagi import Continuation, FastAgiServer
from channels.voice.ivr import (
    CallbackRequested,
    Deflected,
    Ended,
    FlowOutcome,
    HungUp,
    Routed,
)
from router.config import CitylineConfig, load_config
from router.ivr_flow import IvrFlow
from router.ivr_load import default_flows_dir, load_flows
from tests.channels.agi_fake import FakeAsteriskCall, HangUp, Press, Silence

OPEN = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Monday 10:00 in Warsaw
CORPUS_CHRISTI = datetime(2026, 6, 4, 8, 0, tzinfo=UTC)  # Thursday 10:00, a public holiday
SATURDAY = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def cfg() -> CitylineConfig:
    return load_config(None, env={})


@pytest.fixture(scope="module")
def flows(cfg: CitylineConfig) -> dict[str, IvrFlow]:
    return load_flows(default_flows_dir(), cfg)


class Outcomes:
    """The voice adapter's side: records what the server hands over."""

    def __init__(self) -> None:
        self.by_call: dict[str, FlowOutcome] = {}
        self.envs: dict[str, AgiEnv] = {}
        self.then: Continuation | None = None

    async def __call__(self, env: AgiEnv, outcome: FlowOutcome) -> Continuation | None:
        self.by_call[env.uniqueid] = outcome
        self.envs[env.uniqueid] = env
        return self.then


Serve = Callable[..., Awaitable[FastAgiServer]]


@pytest.fixture
async def serve(
    cfg: CitylineConfig, flows: dict[str, IvrFlow]
) -> AsyncIterator[Serve]:
    servers: list[FastAgiServer] = []

    async def start(on_outcome: Any = None, **kwargs: Any) -> FastAgiServer:
        kwargs.setdefault("clock", lambda: OPEN)
        server = FastAgiServer(cfg, flows, on_outcome or Outcomes(), host="127.0.0.1", port=0,
                               **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def call(server: FastAgiServer, *inputs: Any, **kwargs: Any) -> FakeAsteriskCall:
    return await FakeAsteriskCall(server.port, list(inputs), **kwargs).run()


def outcomes_of(server: FastAgiServer) -> Outcomes:
    assert isinstance(server.on_outcome, Outcomes)
    return server.on_outcome


# --- the flow ---------------------------------------------------------------------------------


async def test_language_choice_and_menus_route_to_a_queue(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, Press("2"), Press("3"), Press("4"))  # English, report, fallen tree
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert outcome == Routed(
        queue="voice-interventions", topic="fallen_trees", language="en", priority=5,
        callback_offer=False, announce_every_s=45,
        path=("choose_language", "main_menu", "interventions_hours", "interventions_menu",
              "report_fallen_trees"),
    )
    assert fake.commands[:6] == [
        "ANSWER",
        'STREAM FILE cityline/pl/welcome "123"',
        'STREAM FILE cityline/pl/language-press-1 "123"',
        'STREAM FILE cityline/en/language-press-2 "123"',
        "GET DATA cityline/uk/language-press-3 4000 1",
        'SET VARIABLE CHANNEL(language) "en"',
    ]
    assert "GET DATA cityline/en/interventions-menu 5000 1" in fake.commands
    assert fake.variables | {"CITYLINE_IVR_PATH": ""} == {
        "CHANNEL(language)": "en", "CITYLINE_OUTCOME": "routed", "CITYLINE_IVR_PATH": "",
        "CITYLINE_LANGUAGE": "en", "CITYLINE_QUEUE": "voice-interventions",
        "CITYLINE_TOPIC": "fallen_trees", "CITYLINE_PRIORITY": "5",
        "CITYLINE_CALLBACK_OFFER": "0", "CITYLINE_ANNOUNCE_EVERY": "45",
    }
    # a routed call goes back to the dialplan: no HANGUP, the server closed the socket
    assert "HANGUP" not in fake.commands and fake.closed_by_server and not fake.exhausted
    env = outcomes_of(server).envs[fake.uniqueid]
    assert env.caller.e164 == "+48221234567" and env.channel == fake.channel
    assert env.get("accountcode") == "" and env.script == "ivr"


async def test_ukrainian_caller_reaches_a_topic_of_the_documents_menu(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, Press("3"), Press("2"), Press("1"), Press("1"))
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Routed)
    assert (outcome.queue, outcome.topic, outcome.language) == ("voice-info", "id_cards", "uk")
    assert outcome.callback_offer and outcome.announce_every_s == 60
    assert outcome.path[-3:] == ("matters_menu", "documents_menu", "route_id_cards")
    assert 'STREAM FILE cityline/uk/connecting ""' in fake.commands


async def test_invalid_key_then_a_valid_one(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, Press("1"), Press("7"), Press("0"))
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Routed) and outcome.queue == "voice-info" and outcome.topic is None
    assert outcome.path == ("choose_language", "main_menu", "consultant_hours", "consultant")
    assert fake.commands.count("GET DATA cityline/pl/main-menu 5000 1") == 2
    assert 'STREAM FILE cityline/pl/invalid-choice "1230*"' in fake.commands


async def test_a_key_during_the_invalid_message_answers_at_once(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, Press("1"), Press("9"), Press("1", barge=True), Press("2"))
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Deflected) and outcome.topic == "waste_collection"
    assert fake.commands.count("GET DATA cityline/pl/main-menu 5000 1") == 1


async def test_silence_retries_then_the_fallback(serve: Serve) -> None:
    server = await serve()
    # language: 1 + 1 retry, then Polish; main menu: 1 + 2 retries, then a consultant
    fake = await call(server, *[Silence()] * 5)
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Routed)
    assert (outcome.queue, outcome.language) == ("voice-info", "pl")
    assert outcome.path == ("choose_language", "main_menu", "consultant_hours", "consultant")
    assert fake.commands.count("GET DATA cityline/uk/language-press-3 4000 1") == 2
    assert fake.commands.count("GET DATA cityline/pl/main-menu 5000 1") == 3
    # the "no input" message after the first and second silence, not after the last
    assert fake.commands.count('STREAM FILE cityline/pl/no-input "1230*"') == 2
    assert not fake.exhausted


async def test_information_leaf_deflects_and_hangs_up(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, Press("2"), Press("1"), Press("2"))
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert outcome == Deflected(
        topic="waste_collection",
        path=("choose_language", "main_menu", "information", "info_waste_calendar"),
        language="en",
    )
    assert fake.commands[-3:] == [
        'SET VARIABLE CITYLINE_LANGUAGE "en"', 'SET VARIABLE CITYLINE_TOPIC "waste_collection"',
        "HANGUP",
    ]
    assert 'STREAM FILE cityline/en/info-waste-calendar ""' in fake.commands
    assert fake.variables["CITYLINE_OUTCOME"] == "deflected"


# --- closed hours and callbacks ---------------------------------------------------------------


async def test_closed_on_a_holiday_leaves_a_callback_request(serve: Serve) -> None:
    server = await serve(clock=lambda: CORPUS_CHRISTI)
    fake = await call(server, Press("1"), Press("2"), Press("1"))  # Polish, matters, confirm
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert outcome == CallbackRequested(
        queue="voice-info", number="+48221234567", language="pl",
        path=("choose_language", "main_menu", "matters_hours", "closed", "leave_callback"),
    )
    assert 'STREAM FILE cityline/pl/closed-hours ""' in fake.commands
    assert "GET DATA cityline/pl/callback-press-1 6000 1" in fake.commands
    assert fake.commands[-1] == "HANGUP"
    assert fake.variables["CITYLINE_CALLBACK_NUMBER"] == "+48221234567"


async def test_hidden_number_is_keyed_in(serve: Serve) -> None:
    server = await serve(clock=lambda: SATURDAY)
    fake = await call(server, Press("2"), Press("0"), Press("1"), Press("600123456#"),
                      callerid="anonymous")
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, CallbackRequested)
    assert (outcome.number, outcome.number_source, outcome.language) == (
        "+48600123456", "keyed", "en")
    assert "GET DATA cityline/en/callback-enter-number 6000 16" in fake.commands
    env = outcomes_of(server).envs[fake.uniqueid]
    assert env.caller.anonymous and not env.caller.valid and env.caller.number == "anonymous"


async def test_callback_not_confirmed_ends_the_call(serve: Serve) -> None:
    server = await serve(clock=lambda: SATURDAY)
    fake = await call(server, Press("1"), Press("0"), Silence(), Press("5"))
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Ended) and outcome.reason == "callback declined"
    assert outcome.at_node == "leave_callback"
    assert fake.commands[-1] == "HANGUP"


async def test_invalid_caller_id_without_a_keyed_number(serve: Serve) -> None:
    server = await serve(clock=lambda: SATURDAY)
    fake = await call(server, Press("1"), Press("0"), Press("1"), Press("12#"), Silence(),
                      callerid="1001")
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Ended) and outcome.reason == "no callback number"
    env = outcomes_of(server).envs[fake.uniqueid]
    assert (env.caller.valid, env.caller.anonymous, env.caller.number) == (False, False, "1001")


# --- hang-ups -------------------------------------------------------------------------------


async def test_caller_hangs_up_in_the_menu(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, Press("1"), HangUp())
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert outcome == HungUp(path=("choose_language", "main_menu"), at_node="main_menu",
                             language="pl")
    # after "200 result=-1" the server asks the channel, learns it is dead and lets go: no
    # more commands, no variables, no HANGUP
    last_get = max(i for i, c in enumerate(fake.commands) if c.startswith("GET DATA"))
    assert fake.commands[last_get + 1 :] == ["CHANNEL STATUS"]
    assert fake.closed_by_server


async def test_caller_hangs_up_during_a_prompt(serve: Serve) -> None:
    server = await serve()
    fake = await call(server, HangUp(in_prompt=True))  # during the welcome
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, HungUp) and outcome.at_node == "choose_language"
    assert fake.commands == ["ANSWER", 'STREAM FILE cityline/pl/welcome "123"', "CHANNEL STATUS"]


async def test_missing_sound_file_is_skipped(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve()
    with caplog.at_level(logging.WARNING):
        fake = await call(server, Press("1"), Press("0"),
                          missing_sounds=frozenset({"cityline/pl/not-emergency-112"}))
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    assert isinstance(outcome, Routed) and outcome.queue == "voice-info"
    at = fake.commands.index('STREAM FILE cityline/pl/not-emergency-112 "1230*"')
    assert fake.commands[at + 1 : at + 3] == [
        "CHANNEL STATUS", "GET DATA cityline/pl/main-menu 5000 1"
    ]
    assert "missing sound file" in caplog.text


# --- many callers -----------------------------------------------------------------------------


SCRIPTS: list[tuple[list[Any], type, str | None]] = [
    ([Press("2"), Press("3"), Press("1")], Routed, "voice-interventions"),
    ([Press("1"), Press("2"), Press("2")], Routed, "voice-info"),
    ([Press("3"), Press("0")], Routed, "voice-info"),
    ([Press("1"), Press("1"), Press("1")], Deflected, None),
    ([Press("2"), HangUp()], HungUp, None),
]


async def test_fifty_callers_at_once(serve: Serve) -> None:
    arrived = 0
    everyone_in = asyncio.Event()
    outcomes = Outcomes()

    async def on_outcome(env: AgiEnv, outcome: FlowOutcome) -> None:
        nonlocal arrived
        await outcomes(env, outcome)
        arrived += 1
        if arrived == 50:
            everyone_in.set()
        # every session stays open until all 50 are here: they really run side by side
        await everyone_in.wait()

    server = await serve(on_outcome)
    fakes = [
        FakeAsteriskCall(server.port, list(SCRIPTS[i % len(SCRIPTS)][0]),
                         uniqueid=f"1795814200.{i}", callerid=f"60012{i:04d}")
        for i in range(50)
    ]
    async with asyncio.timeout(20):
        await asyncio.gather(*(fake.run() for fake in fakes))
    assert arrived == 50
    for i, fake in enumerate(fakes):
        _, kind, queue = SCRIPTS[i % len(SCRIPTS)]
        outcome = outcomes.by_call[fake.uniqueid]
        assert isinstance(outcome, kind), (i, outcome)
        if queue is not None:
            assert outcome.queue == queue  # type: ignore[union-attr]
        assert outcomes.envs[fake.uniqueid].caller.e164 == f"+4860012{i:04d}"
    assert server.stats.completed == 50 and server.stats.failed == 0
    assert server.active_sessions == 0


async def test_sessions_over_the_cap_are_refused(serve: Serve) -> None:
    release = asyncio.Event()
    both_in = asyncio.Event()
    waiting = 0

    async def on_outcome(env: AgiEnv, outcome: FlowOutcome) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 2:
            both_in.set()
        await release.wait()

    server = await serve(on_outcome, max_sessions=2)
    first = [asyncio.ensure_future(call(server, Press("1"), Press("1"), Press("1"),
                                        uniqueid=f"1.{i}")) for i in range(2)]
    async with asyncio.timeout(5):
        await both_in.wait()
    assert server.active_sessions == 2
    refused = await call(server, Press("1"))
    assert refused.commands == [] and refused.closed_by_server
    assert server.stats.refused == 1
    release.set()
    await asyncio.gather(*first)
    assert server.stats.completed == 2


async def test_stop_cancels_running_sessions(serve: Serve) -> None:
    stuck = asyncio.Event()

    async def on_outcome(env: AgiEnv, outcome: FlowOutcome) -> None:
        stuck.set()
        await asyncio.Event().wait()  # a voice adapter that never returns

    server = await serve(on_outcome, outcome_timeout_s=60)
    caller = asyncio.ensure_future(call(server, Press("1"), Press("0")))
    async with asyncio.timeout(5):
        await stuck.wait()
    assert server.active_sessions == 1
    async with asyncio.timeout(2):
        await server.stop()
    assert server.active_sessions == 0
    assert (await caller).closed_by_server


# --- bad input --------------------------------------------------------------------------------


async def raw_session(port: int, data: bytes, *, eof: bool = False) -> bytes:
    """Send `data`, return everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    if eof:
        writer.write_eof()
    async with asyncio.timeout(5):
        received = await reader.read()
    writer.close()
    await writer.wait_closed()
    return received


class GarbageAsterisk(FakeAsteriskCall):
    """Answers ANSWER with whatever `answer` holds."""

    answer: str = ""

    def reply(self, command: str) -> str:
        return self.answer if command == "ANSWER" else super().reply(command)


async def test_garbage_and_oversized_input_are_logged_and_survived(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve(env_timeout_s=0.3, command_timeout_s=1.0)
    with caplog.at_level(logging.WARNING):
        # not AGI at all
        assert await raw_session(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == b""
        # an environment line far over the line limit
        assert await raw_session(server.port, b"agi_channel: " + b"x" * 100_000 + b"\n") == b""
        # cut off inside the environment (EOF): no spinning, just closed
        assert await raw_session(server.port, b"agi_network: yes\nagi_chan", eof=True) == b""
        # a peer that says nothing
        assert await raw_session(server.port, b"") == b""
        # a valid environment, then garbage and an oversized line as replies
        for answer in ("garbage\n", "200 " + "y" * 20_000 + "\n", "HANGUP\n200 result=-1\n",
                       "200 result=1 (unterminated\n", "999x\n"):
            fake = GarbageAsterisk(server.port, [Press("1")], uniqueid=f"9.{len(answer)}")
            fake.answer = answer
            await fake.run()
            assert fake.commands == ["ANSWER"] and fake.closed_by_server
            outcome = outcomes_of(server).by_call.get(fake.uniqueid)
            assert isinstance(outcome, Ended | HungUp), outcome
    assert "not an agi_* environment line: 'GET / HTTP/1.1'" in caplog.text
    assert "line longer than the line limit" in caplog.text
    assert "no complete AGI environment within 0.3 s" in caplog.text
    assert "not an AGI reply: 'garbage'" in caplog.text
    assert "AgiProtocolError" in caplog.text
    # and the server goes on serving
    fake = await call(server, Press("1"), Press("1"), Press("3"))
    assert isinstance(outcomes_of(server).by_call[fake.uniqueid], Deflected)
    assert server.active_sessions == 0


async def test_every_command_has_a_deadline(serve: Serve) -> None:
    server = await serve(command_timeout_s=0.2)
    fake = GarbageAsterisk(server.port, [], uniqueid="7.7")
    fake.answer = ""  # never answers ANSWER
    async with asyncio.timeout(5):
        await fake.run()
    outcome = outcomes_of(server).by_call[fake.uniqueid]
    # ANSWER comes before the first node: no node in the path yet
    assert outcome == Ended("error: AgiTimeout", (), "choose_language", "pl")
    assert server.stats.failed == 1


# --- the session API: multi-line replies, handlers, continuations ----------------------------


async def test_usage_and_unknown_command_replies_keep_the_session_in_step(serve: Serve) -> None:
    seen: dict[str, Any] = {}

    async def probe(session: AgiSession, env: AgiEnv) -> None:
        assert isinstance(session, FastAgiSession)
        with pytest.raises(AgiCommandError) as usage:
            await session.command("GET", "DATA")
        with pytest.raises(AgiCommandError) as unknown:
            await session.command("BOGUS", "COMMAND")
        seen["usage"], seen["unknown"] = usage.value, unknown.value
        seen["channel"] = await session.get_variable("CHANNEL")
        seen["unset"] = await session.get_variable("NO_SUCH_VAR")
        seen["digit"] = await session.wait_for_digit(1000)

    server = await serve(handlers={"probe": probe})
    fake = await call(server, Press("5"), script="probe")
    assert seen["usage"].code == 520
    assert seen["usage"].text == (
        "Invalid command syntax.  Proper usage follows:\n"
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
        "Returns the digits received from the channel at the other end.\n"
        "End of proper usage."
    )
    assert (seen["unknown"].code, seen["unknown"].text) == (510, "Invalid or unknown command")
    assert seen["channel"] == fake.channel and seen["unset"] is None and seen["digit"] == "5"


async def test_continuation_runs_on_the_same_session(serve: Serve) -> None:
    outcomes = Outcomes()

    async def hold(session: AgiSession) -> None:
        await session.set_music(True)
        await session.say_number(3)
        await session.set_music(False)

    outcomes.then = hold
    server = await serve(outcomes)
    fake = await call(server, Press("1"), Press("0"))
    assert isinstance(outcomes.by_call[fake.uniqueid], Routed)
    assert fake.commands[-3:] == ["SET MUSIC ON default", 'SAY NUMBER 3 ""', "SET MUSIC OFF"]


async def test_flow_chosen_by_script_or_argument(serve: Serve) -> None:
    server = await serve()
    by_name = await call(server, Press("1"), Press("1"), Press("1"), script="city",
                         uniqueid="5.1")
    by_arg = await call(server, Press("1"), Press("1"), Press("1"), args=("city",),
                        uniqueid="5.2")
    unknown = await call(server, Press("1"), script="nosuchflow", uniqueid="5.3")
    by_call = outcomes_of(server).by_call
    assert isinstance(by_call["5.1"], Deflected) and isinstance(by_call["5.2"], Deflected)
    assert by_name.commands == by_arg.commands
    assert unknown.commands == [] and "5.3" not in by_call


async def test_the_captured_hangup_dialog(serve: Serve) -> None:
    """fastagi-ivr-dtmf.agi-hangup: -1 during GET DATA, the HANGUP line arrives before the reply
    to the next command, GET VARIABLE still answers, channel commands are refused."""
    seen: dict[str, Any] = {}

    async def probe(session: AgiSession, env: AgiEnv) -> None:
        assert isinstance(session, FastAgiSession)
        await session.answer()
        seen["played"] = await session.stream_file("hello-world", "0123456789#*")
        reply = await session.command("GET", "DATA", "beep", "5000", "1")  # the raw reply
        seen["result"] = reply.result
        seen["channel"] = await session.get_variable("CHANNEL")  # HANGUP comes first
        seen["hung_up"] = session.hung_up
        with pytest.raises(CallerHungUp):
            await session.get_data("beep", 1000, 1)
        with pytest.raises(CallerHungUp):
            await session.command("WAIT", "FOR", "DIGIT", "1000")  # 511 from Asterisk
        seen["trying"] = await session.command("NOOP")

    class Capture(FakeAsteriskCall):
        def reply(self, command: str) -> str:
            if command == "GET DATA beep 5000 1":
                self.dead = True
                return "200 result=-1\n"  # the HANGUP line follows later, see below
            if command == "GET VARIABLE CHANNEL" and self.dead:
                return "HANGUP\n" + super().reply(command)
            if command == "NOOP":
                return "100 result=0 Trying...\n200 result=0\n"
            return super().reply(command)

    server = await serve(handlers={"probe": probe})
    fake = await Capture(server.port, [], script="probe").run()
    assert seen == {
        "played": None, "result": "-1", "channel": fake.channel, "hung_up": True,
        "trying": AgiReply("0"),
    }
    # the second GET DATA was never sent: the HANGUP line had already said it all
    assert fake.commands == [
        "ANSWER", 'STREAM FILE hello-world "0123456789#*"', "GET DATA beep 5000 1",
        "GET VARIABLE CHANNEL", "WAIT FOR DIGIT 1000", "NOOP",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("result=0", AgiReply("0")),
        ("result=49 endpos=9760", AgiReply("49", None, {"endpos": "9760"})),
        ("result= (timeout)", AgiReply("", "timeout")),
        ("result=12 (timeout)", AgiReply("12", "timeout")),
        ("result=1 (Local/311@city-00000010;2)", AgiReply("1", "Local/311@city-00000010;2")),
        ("result=1 (a (b) c)", AgiReply("1", "a (b) c")),
        ("result=-1 endpos=0", AgiReply("-1", None, {"endpos": "0"})),
    ],
)
def test_result_lines(text: str, expected: AgiReply) -> None:
    assert parse_result(text) == expected


@pytest.mark.parametrize(
    ("raw", "e164", "anonymous"),
    [
        ("221234567", "+48221234567", False),
        ("+48 22 123 45 67", "+48221234567", False),
        ("0048221234567", "+48221234567", False),
        ("48600123456", "+48600123456", False),  # international without '+'
        ("+380441234567", "+380441234567", False),
        ("1001", None, False),  # an internal extension: kept raw, flagged invalid
        ("anonymous", None, True),
        ("", None, True),
    ],
)
def test_caller_id_to_e164(raw: str, e164: str | None, anonymous: bool) -> None:
    number = normalise_caller(raw, "PL")
    assert (number.e164, number.anonymous, number.valid) == (e164, anonymous, e164 is not None)
    assert number.number == (e164 or raw)
