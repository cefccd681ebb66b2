"""Replay a captured dialog against the fakes and compare what they send with the capture.

A ``*.dialog.txt`` holds both directions with a header per recv()/send chunk (CAPTURES.md).
The replayer sends each client chunk once the fake has sent as many complete messages as the
real Asterisk had before it, so the fake's own timers (scaled) decide the rest.

The comparison normalises only what must differ between two runs: uniqueids/linkedids, channel
sequence numbers and bridge ids (each mapped to a token by first appearance), times and
durations, session ids and ports, AGI thread ids and CommandIds, ``endpos`` of an interrupted
prompt. Then it compares, message by message, the sequence of each channel (and of each
action's replies): Asterisk's threads interleave different channels differently from run to
run (surprise 5), and device state changes come from a separate thread, so those are compared
as multisets; list items must come in the same (hash) order.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "asterisk"
_HEADER = re.compile(rb"^(<<<|>>>) (\S+) \+([0-9.]+)s( \[[^\]]*\])?\n", re.M)
_UID = re.compile(r"^\d{9,11}\.\d+$")
_CHAN_SEQ = re.compile(r"((?:Local/[^\s;,)]+?|PJSIP/[^\s;,)]+?)-)([0-9a-f]{8})\b")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
UID_KEYS = {
    f"{prefix}{key}"
    for prefix in ("", "Dest", "LocalOne", "LocalTwo")
    for key in ("Uniqueid", "Linkedid")
}
VOLATILE_KEYS = {
    "Timestamp", "EventTV", "SessionTV", "Uptime", "LastReload", "SessionID", "LocalAddress",
    "RemoteAddress", "Duration", "Seconds", "CommandId", "LoginTime",
}  # fmt: skip
TIME_VARIABLES = {  # Dial's measured durations (surprise 18)
    f"{name}{unit}" for name in ("ANSWEREDTIME", "DIALEDTIME", "RINGTIME") for unit in ("", "_MS")
}
LIST_ITEMS = {"CoreShowChannel", "Status", "ChannelHungup", "QueueParams", "QueueMember"}


@dataclass
class Chunk:
    outgoing: bool  # sent by the client (">>>")
    data: bytes


def parse_dialog(path: Path, *, agi: bool = False) -> list[Chunk]:
    """The chunks of a dialog. AMI dialogs have one added "\n" after each chunk; AGI
    dialogs have none, but "### ..." note lines."""
    raw = path.read_bytes()
    if agi:
        raw = b"".join(
            line for line in raw.splitlines(keepends=True) if not line.startswith(b"### ")
        )
    headers = list(_HEADER.finditer(raw))
    chunks = []
    for index, match in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(raw)
        body = raw[match.end() : end]
        if not agi and body.endswith(b"\n"):
            body = body[:-1]  # the one "\n" the capture tool added after each chunk
        if match.group(4):  # a note such as "[server closed the TCP connection (EOF)]"
            continue
        chunks.append(Chunk(match.group(1) == b">>>", body))
    return chunks


async def replay_ami(
    host: str, port: int, dialog: list[Chunk], *, within_s: float = 10.0, grace_s: float = 0.05
) -> bytes:
    """Play the client side of `dialog`; returns every byte the server sent (reading on for
    `grace_s` after the last expected message, so extra messages are caught too)."""
    reader, writer = await asyncio.open_connection(host, port)
    received = bytearray()

    async def read_until(count: int) -> bool:
        while received.count(b"\r\n\r\n") < count:
            data = await reader.read(65536)
            if not data:
                return False
            received.extend(data)
        return True

    expected = 0
    try:
        async with asyncio.timeout(within_s):  # on a timeout the comparison shows what is missing
            for chunk in dialog:
                if not chunk.outgoing:
                    expected += chunk.data.count(b"\r\n\r\n")
                    continue
                if not await read_until(expected):
                    break
                writer.write(chunk.data)
                await writer.drain()
            if await read_until(expected):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace_s):
                        await read_until(expected + 1)
    except TimeoutError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return bytes(received)


# --- normalising ------------------------------------------------------------------------------
class Normaliser:
    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, str]] = defaultdict(dict)

    def token(self, kind: str, value: str) -> str:
        table = self.tokens[kind]
        return table.setdefault(value, f"<{kind}{len(table)}>")

    def value(self, key: str, value: str) -> str:
        if key in VOLATILE_KEYS:
            return "<*>"
        if key in UID_KEYS and _UID.match(value):
            return self.token("U", value)
        if key in ("BridgeUniqueid", "BridgeId", "BridgeID") and _UUID.match(value):
            return self.token("B", value)
        if key in ("agi_uniqueid",) and _UID.match(value):
            return self.token("U", value)
        if key == "agi_threadid":
            return "<*>"
        return _CHAN_SEQ.sub(lambda m: m.group(1) + self.token("S", m.group(2)), value)

    def message(self, text: str) -> list[tuple[str, str]]:
        pairs = []
        for line in text.split("\r\n"):
            key, sep, value = line.partition(": ")
            if not sep and line.endswith(":"):
                key, value = line[:-1], ""
            pairs.append((key, self.value(key, value)))
        names = dict(pairs)
        if names.get("Variable") in TIME_VARIABLES and names.get("Value"):
            pairs = [(k, "<*>" if k == "Value" else v) for k, v in pairs]
        return pairs


def split_stream(data: bytes) -> tuple[str, list[str]]:
    text = data.decode("utf-8", "replace")
    banner, _, rest = text.partition("\r\n")
    messages = [m for m in rest.split("\r\n\r\n") if m]
    return banner, messages


def _key(pairs: list[tuple[str, str]], index: int) -> tuple[str, ...]:
    fields = dict(pairs)
    head, name = pairs[0]
    if head == "Response" or name == "OriginateResponse":
        return ("action", fields.get("ActionID", f"#{index}"))
    if name in LIST_ITEMS or name.endswith("Complete"):
        return ("action", fields.get("ActionID", ""))
    if name == "DeviceStateChange":
        return ("device", fields["Device"])
    for key in ("Channel", "DestChannel", "LocalOneChannel"):
        if key in fields:
            return ("channel", fields[key])
    if "BridgeUniqueid" in fields:
        return ("bridge", fields["BridgeUniqueid"])
    if "Queue" in fields:
        return ("queue", fields["Queue"])
    return ("session", name)


def grouped(messages: list[str]) -> dict[tuple[str, ...], list[str]]:
    """Normalised messages by channel / action / device, in the order they were sent."""
    norm = Normaliser()
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for index, message in enumerate(messages):
        pairs = norm.message(message)
        text = "\n".join(f"{k}: {v}" for k, v in pairs)
        groups[_key(pairs, index)].append(text)
    for key, items in groups.items():
        if key[0] == "device":
            groups[key] = sorted(items)
    return groups


def compare(expected: bytes, actual: bytes) -> list[str]:
    """Differences between the captured server bytes and the fake's, after normalising."""
    problems = []
    banner_e, msgs_e = split_stream(expected)
    banner_a, msgs_a = split_stream(actual)
    if banner_e != banner_a:
        problems.append(f"banner {banner_a!r} != {banner_e!r}")
    if not actual.endswith(b"\r\n\r\n"):
        problems.append("the stream does not end with an empty line")
    if b"\n" in actual.replace(b"\r\n", b""):
        problems.append("a bare LF in the stream")
    groups_e, groups_a = grouped(msgs_e), grouped(msgs_a)
    for key in sorted(set(groups_e) | set(groups_a)):
        seq_e, seq_a = groups_e.get(key, []), groups_a.get(key, [])
        if seq_e == seq_a:
            continue
        for index in range(max(len(seq_e), len(seq_a))):
            want = seq_e[index] if index < len(seq_e) else "(nothing)"
            got = seq_a[index] if index < len(seq_a) else "(nothing)"
            if want != got:
                problems.append(f"{key} message {index}:\n--- capture\n{want}\n--- fake\n{got}")
                break
    return problems


# --- FastAGI ----------------------------------------------------------------------------------
_INTERRUPTED = re.compile(r"result=([1-9]\d*) endpos=\d+")


def normalise_agi(data: bytes) -> list[str]:
    """AST->AGI lines with ids, thread ids, channel numbers and the ``endpos`` of a prompt
    interrupted by a key (it depends on when the key came) normalised."""
    norm = Normaliser()
    out = []
    for line in data.decode("utf-8", "replace").split("\n"):
        key, sep, value = line.partition(": ")
        if sep and key.startswith("agi_"):
            out.append(f"{key}: {norm.value(key, value)}")
            continue
        line = _INTERRUPTED.sub(r"result=\1 endpos=<*>", line)
        out.append(norm.value("", line))
    return out


class AgiReplayServer:
    """A FastAGI server that replays the server side of captured AGI dialogs: the call is
    picked by its ``agi_callerid``; every byte the fake Asterisk sends is recorded."""

    def __init__(self, dialogs: dict[str, list[Chunk]]) -> None:
        self.dialogs = dialogs
        self.received: dict[str, bytes] = {}
        self.server: asyncio.Server | None = None
        self.port = 0
        self.finished: dict[str, asyncio.Event] = {name: asyncio.Event() for name in dialogs}

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = bytearray()
        env = await reader.readuntil(b"\n\n")
        received += env
        callerid = re.search(rb"^agi_callerid: (.*)$", env, re.M)
        name = callerid.group(1).decode() if callerid else ""
        dialog = self.dialogs[name]
        expected = 0
        try:
            for chunk in dialog:
                if not chunk.outgoing:
                    expected += chunk.data.count(b"\n")
                    continue
                while received.count(b"\n") < expected:
                    data = await asyncio.wait_for(reader.read(4096), 10)
                    if not data:
                        break
                    received += data
                writer.write(chunk.data)
                await writer.drain()
            while received.count(b"\n") < expected:
                data = await asyncio.wait_for(reader.read(4096), 10)
                if not data:
                    break
                received += data
        finally:
            self.received[name] = bytes(received)
            writer.close()
            await writer.wait_closed()
            self.finished[name].set()
