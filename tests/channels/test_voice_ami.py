"""channels.voice.ami against the protocol fake of Asterisk 22 (tests/fakes/).

The connection must never hang (every action ends within its timeout), never leak (no task or
socket after stop), and heal itself: reconnect with backoff after a drop, notice a half-open
connection through its Ping watchdog, survive garbage and drop an oversized frame.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from channels.voice.ami import AmiConnection, AmiEvent, AmiSettings
from channels.voice.errors import AmiActionError, AmiAuthError, AmiDisconnected, AmiTimeout
from tests.fakes import FakeAsterisk

FAST = {
    "action_timeout_s": 1.0,
    "ping_interval_s": 0.2,
    "ping_timeout_s": 0.2,
    "reconnect_min_s": 0.05,
    "reconnect_max_s": 0.4,
    "connect_timeout_s": 1.0,
}


def settings(port: int, **overrides: Any) -> AmiSettings:
    values: dict[str, Any] = {"port": port, "username": "router", "secret": "routerpass"}
    values.update(FAST)
    values.update(overrides)
    return AmiSettings(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def until(predicate: Callable[[], bool], within_s: float = 3.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"still not true after {within_s} s")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.02, auth_fail_delay_s=0.05, timestampevents=True) as f:
        f.route_agi("127.0.0.1:4573", ("127.0.0.1", free_port()))
        yield f


@pytest.fixture
async def ami(fake: FakeAsterisk) -> AsyncIterator[AmiConnection]:
    connection = AmiConnection(settings(fake.port))
    await connection.start()
    yield connection
    await connection.stop()


def other_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


# --- login --------------------------------------------------------------------------------------
async def test_login_is_logged_without_the_secret(
    fake: FakeAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="channels.voice.ami")
    connection = AmiConnection(settings(fake.port))
    await connection.start()
    assert connection.connected
    assert f"ami: connected to 127.0.0.1:{fake.port} as router" in caplog.text
    await connection.stop()
    assert "ami: stopped" in caplog.text
    assert "routerpass" not in caplog.text
    assert "routerpass" not in repr(connection.settings)
    assert fake.actions_seen[-1].action == "Logoff"


async def test_wrong_secret_raises_and_leaves_nothing_running(fake: FakeAsterisk) -> None:
    before = other_tasks()
    connection = AmiConnection(settings(fake.port, secret="wrong"))
    with pytest.raises(AmiAuthError) as refused:
        await connection.start()
    assert refused.value.message == "Authentication failed"
    assert refused.value.error_id == "ami_auth_failed"
    assert other_tasks() <= before
    with pytest.raises(AmiDisconnected):
        await connection.send_action({"Action": "Ping"})


async def test_asterisk_down_at_start_then_up(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    connection = AmiConnection(settings(port))
    await connection.start()  # returns: it keeps trying in the background
    assert not connection.connected
    async with FakeAsterisk(port=port):
        await connection.wait_connected(within_s=3)
        assert (await connection.send_action({"Action": "Ping"}))["Ping"] == "Pong"
        await connection.stop()
    assert "cannot reach" in caplog.text


# --- actions ------------------------------------------------------------------------------------
async def test_actions_with_action_ids_and_list_responses(
    fake: FakeAsterisk, ami: AmiConnection
) -> None:
    pong = await ami.send_action({"Action": "Ping", "ActionID": "mine-1"})
    assert (pong["ActionID"], pong["Ping"]) == ("mine-1", "Pong")
    assert re.fullmatch(r"\d{10}\.\d{6}", pong["Timestamp"])
    caller = fake.add_caller(variables={"RESIDENT_ID": "r-7"})
    await caller.wait_state("moh")
    listing = await ami.send_action({"Action": "CoreShowChannels"})
    assert isinstance(listing, list)
    assert [m.get("Event") for m in listing[1:]] == [
        "CoreShowChannel",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
    ]
    assert {m["Channel"] for m in listing[1:3]} == {caller.name, caller.far_end.name}
    status = await ami.send_action(
        {"Action": "Status", "Channel": caller.name, "Variables": "RESIDENT_ID,AGISTATUS"}
    )
    assert isinstance(status, list)
    assert status[1]["Variable"] == ["RESIDENT_ID=r-7", "AGISTATUS=FAILURE"]
    as_dict = await ami.action({"Action": "CoreShowChannels"})
    assert as_dict["Response"] == "Success"
    assert {e["Uniqueid"] for e in as_dict["events"]} == {caller.uniqueid, caller.far_end.uniqueid}


async def test_error_response_raises_or_is_returned(ami: AmiConnection) -> None:
    with pytest.raises(AmiActionError) as failed:
        await ami.send_action(
            {"Action": "Getvar", "Channel": "Local/x-00000000;2", "Variable": "X"}
        )
    assert failed.value.message == "No such channel"
    assert failed.value.action == "Getvar"
    reply = await ami.send_action(
        {"Action": "Redirect", "Channel": "Local/x-0;2", "Context": "c", "Exten": "e",
         "Priority": "1"},
        raise_on_error=False,
    )  # fmt: skip
    assert reply["Message"] == "Channel does not exist: Local/x-0;2"


async def test_async_originate_returns_at_once_and_its_response_is_an_event(
    fake: FakeAsterisk, ami: AmiConnection
) -> None:
    responses: list[AmiEvent] = []
    ami.on_event(
        lambda event: responses.append(event) if event.name == "OriginateResponse" else None
    )
    fake.set_agent_behaviour("agent1", "answer")
    reply = await ami.send_action(
        {
            "Action": "Originate", "ActionID": "cb-1", "Channel": "Local/agent1@agents",
            "Context": "resident", "Exten": "s", "Priority": "1", "Async": "true",
            "Variable": ["CB_TICKET=T-1", "CB_REASON=callback"],
        }
    )  # fmt: skip
    assert reply["Message"] == "Originate successfully queued"
    await until(lambda: bool(responses))
    assert (responses[0]["ActionID"], responses[0]["Reason"]) == ("cb-1", "4")
    assert fake.find_events("VarSet", Variable="CB_REASON", Value="callback")


async def test_action_timeout_raises_in_time_and_the_connection_lives_on(
    fake: FakeAsterisk, ami: AmiConnection
) -> None:
    fake.ignore_actions("Getvar")
    started = time.monotonic()
    with pytest.raises(AmiTimeout) as late:
        await ami.send_action({"Action": "Getvar", "Variable": "X"}, timeout_s=0.3)
    assert 0.3 <= time.monotonic() - started < 0.9
    assert late.value.error_id == "ami_timeout"
    assert ami.connected
    assert (await ami.send_action({"Action": "Ping"}))["Response"] == "Success"


async def test_disconnect_fails_the_pending_action_at_once(
    fake: FakeAsterisk, ami: AmiConnection
) -> None:
    fake.ignore_actions("Getvar")
    pending = asyncio.get_running_loop().create_task(
        ami.send_action({"Action": "Getvar", "Variable": "X"}, timeout_s=10)
    )
    await until(lambda: any(r.action == "Getvar" for r in fake.actions_seen))
    started = time.monotonic()
    await fake.drop_connections(rst=True)
    with pytest.raises(AmiDisconnected):
        await pending
    assert time.monotonic() - started < 0.8  # not the 10 s of its timeout


async def test_line_breaks_in_values_are_refused(ami: AmiConnection) -> None:
    with pytest.raises(ValueError, match="line break"):
        await ami.send_action({"Action": "Setvar", "Variable": "X", "Value": "1\r\nAction: Hangup"})


# --- reconnecting -------------------------------------------------------------------------------
async def test_reconnects_and_on_connected_runs_each_time_before_events(
    fake: FakeAsterisk,
) -> None:
    connection = AmiConnection(settings(fake.port))
    seen: list[str] = []

    async def reconcile() -> None:
        listing = await connection.action({"Action": "CoreShowChannels"})
        seen.append(f"connected:{len(listing['events'])}")

    connection.on_connected(reconcile)
    connection.on_event(lambda event: seen.append(event.name))
    await connection.start()
    caller = fake.add_caller()
    await caller.wait_state("moh")
    for count, rst in enumerate((False, True), start=1):
        await fake.drop_connections(rst=rst)
        await until(lambda n=count: seen.count("connected:2") == n)
    assert connection.connects == 3
    # each time: the reconciliation first, then that connection's events from FullyBooted on
    marks = [i for i, item in enumerate(seen) if item.startswith("connected:")]
    assert [seen[i] for i in marks] == ["connected:0", "connected:2", "connected:2"]
    assert all(seen[i + 1] == "FullyBooted" for i in marks[1:])
    assert seen[1] == "FullyBooted"
    await connection.stop()


async def test_backoff_grows_exponentially_with_jitter_up_to_the_maximum() -> None:
    connection = AmiConnection(settings(1, reconnect_min_s=0.5, reconnect_max_s=30))
    for failures in range(12):
        ceiling = min(30.0, 0.5 * 2**failures)
        for _ in range(20):
            assert ceiling / 2 <= connection._backoff(failures) <= ceiling


async def test_restart_of_asterisk_reconnects_with_growing_delays(
    fake: FakeAsterisk, ami: AmiConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="channels.voice.ami")
    await fake.restart(downtime_s=0.5)
    await until(lambda: ami.connects == 2)
    delays = [float(d) for d in re.findall(r"reconnecting to \S+ in ([0-9.]+) s", caplog.text)]
    assert len(delays) >= 3
    for attempt, delay in enumerate(delays):
        ceiling = min(0.4, 0.05 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


async def test_half_open_connection_is_noticed_by_the_ping_watchdog(
    fake: FakeAsterisk, ami: AmiConnection, caplog: pytest.LogCaptureFixture
) -> None:
    fake.freeze_connections()
    started = time.monotonic()
    await until(lambda: ami.connects == 2)
    # a Ping at most ping_interval_s later, no Pong for ping_timeout_s, then a backoff of at
    # most reconnect_min_s (the first retry after a good connection); 0.5 s for a slow machine
    assert time.monotonic() - started < 0.2 + 0.2 + 0.05 + 0.5
    assert "half-open" in caplog.text


# --- bad input ----------------------------------------------------------------------------------
async def test_garbage_is_logged_and_dropped(
    fake: FakeAsterisk, ami: AmiConnection, caplog: pytest.LogCaptureFixture
) -> None:
    fake.send_garbage()
    assert (await ami.send_action({"Action": "Ping"}))["Ping"] == "Pong"
    assert "dropped a malformed frame" in caplog.text
    assert ami.frames_dropped >= 1
    assert ami.connects == 1


async def test_truncated_frame_costs_one_reply_not_the_connection(
    fake: FakeAsterisk, ami: AmiConnection
) -> None:
    fake.send_truncated()
    with pytest.raises(AmiTimeout):  # its reply was glued to the cut-off frame
        await ami.send_action({"Action": "Ping"}, timeout_s=0.3)
    assert (await ami.send_action({"Action": "Ping"}))["Ping"] == "Pong"
    assert ami.connects == 1


async def test_oversized_frame_drops_the_connection_which_comes_back(
    fake: FakeAsterisk, ami: AmiConnection, caplog: pytest.LogCaptureFixture
) -> None:
    fake.send_oversized(100_000, terminated=False)
    await until(lambda: ami.connects == 2)
    assert "a frame of more than 65536 bytes" in caplog.text
    assert (await ami.send_action({"Action": "Ping"}))["Ping"] == "Pong"


async def test_frames_split_at_line_boundaries_parse_the_same() -> None:
    async with FakeAsterisk(chunking="lines", chunk_seed=3, time_scale=0.02) as fake:
        fake.route_agi("127.0.0.1:4573", ("127.0.0.1", free_port()))
        async with AmiConnection(settings(fake.port)) as connection:
            caller = fake.add_caller()
            await caller.wait_state("moh")
            listing = await connection.send_action({"Action": "CoreShowChannels"})
            assert len(listing) == 4


# --- events -------------------------------------------------------------------------------------
async def test_events_are_typed_ordered_and_callbacks_cannot_break_delivery(
    fake: FakeAsterisk, ami: AmiConnection, caplog: pytest.LogCaptureFixture
) -> None:
    typed: list[AmiEvent] = []
    pairs: list[tuple[str, Any]] = []

    def broken(event: AmiEvent) -> None:
        raise RuntimeError("handler bug")

    async def slow_but_fine(event: AmiEvent) -> None:
        await asyncio.sleep(0)
        typed.append(event)

    async def link_shape(name: str, fields: Any) -> None:
        pairs.append((name, fields))

    ami.on_event(broken)
    ami.on_event(slow_but_fine)
    ami.on_event(link_shape)
    fake.inject(
        b"Event: UserEvent\r\nPrivilege: user,all\r\nTimestamp: 1795814126.348510\r\n"
        b"Variable: A=1\r\nVariable: B=2\r\nValue:    spaced \r\nEmpty: \r\n\r\n"
    )
    await until(lambda: any(e.name == "UserEvent" for e in typed))
    event = next(e for e in typed if e.name == "UserEvent")
    assert event.get_all("Variable") == ["A=1", "B=2"]
    assert event["Value"] == "   spaced "
    assert event["Empty"] == ""
    assert event.timestamp == pytest.approx(1795814126.348510)
    assert [k for k, _ in event.fields][:3] == ["Privilege", "Timestamp", "Variable"]
    assert ("UserEvent", event) in pairs
    assert "handler bug" in caplog.text


async def test_stop_leaves_no_task_future_or_socket(fake: FakeAsterisk) -> None:
    before = other_tasks()
    connection = AmiConnection(settings(fake.port))
    connection.on_event(lambda event: None)
    await connection.start()
    fake.ignore_actions("Getvar")
    pending = asyncio.get_running_loop().create_task(
        connection.send_action({"Action": "Getvar", "Variable": "X"}, timeout_s=10)
    )
    await until(lambda: any(r.action == "Getvar" for r in fake.actions_seen))
    await connection.stop()
    with pytest.raises(AmiDisconnected):
        await pending
    assert other_tasks() <= before
    assert not connection.connected
    gc.collect()  # an unclosed socket would warn (ResourceWarning: an error under pytest)
