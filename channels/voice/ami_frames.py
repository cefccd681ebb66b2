"""The AMI wire for `channels.voice.ami`: framing, parsing, the event type.

Asterisk's manager writes ``Key: value`` lines ended by ``\\r\\n`` and a message ends with an
empty line; writes split messages anywhere between lines, or carry many at once (CAPTURES.md,
surprise 1). Values keep their leading spaces after the one that follows the colon (surprise
2: ``Value:    minrxmes=...``), keys may repeat (surprise 3). A frame that is not ``Event:`` or
``Response:`` first is garbage: logged and dropped; a frame larger than `max_frame_bytes` ends
the connection (a peer that streams without end cannot make us buffer without end).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

logger = logging.getLogger("channels.voice.ami")

BANNER_PREFIX = b"Asterisk Call Manager/"
MAX_BANNER_BYTES = 256
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_frame(frame: bytes) -> list[tuple[str, str]] | None:
    """The header lines of one frame in order, or None when it is not an AMI message."""
    pairs: list[tuple[str, str]] = []
    for line in frame.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep or not _KEY_RE.match(key):
            continue
        pairs.append((key, value[1:] if value.startswith(" ") else value))
    if not pairs or pairs[0][0] not in ("Event", "Response"):
        return None
    return pairs


def to_message(pairs: list[tuple[str, str]]) -> Message:
    """A panoramisk Message (what panoramisk's Action collects): repeated keys as lists."""
    headers: dict[str, Any] = {}
    for key, value in pairs:
        if key not in headers:
            headers[key] = value
        elif isinstance(headers[key], list):
            headers[key].append(value)
        else:
            headers[key] = [headers[key], value]
    return Message(headers)


def first_values(message: Message) -> Iterator[tuple[str, str]]:
    """Each header of a Message once, with its first value."""
    for key, value in message.items():
        if key != "content":  # panoramisk's body slot, empty for every AMI 22 message
            yield key, value[0] if isinstance(value, list) else value


def action_name(action: Mapping[str, Any]) -> str:
    for key, value in action.items():
        if key.lower() == "action":
            return str(value)
    return ""


def pop_field(fields: dict[str, Any], key: str) -> Any:
    """Remove and return `key` from `fields`, whatever its case; None when absent."""
    for name in list(fields):
        if name.lower() == key.lower():
            return fields.pop(name)
    return None


@dataclass(frozen=True, slots=True)
class AmiEvent(Mapping[str, str]):
    """One AMI event: its name and every other header line in order, repeated keys kept.

    As a mapping it gives the first value of a key (exact spelling); `get_all` gives all.
    """

    name: str
    fields: tuple[tuple[str, str], ...]
    received_at: float = field(default_factory=time.time)

    def __getitem__(self, key: str) -> str:
        for name, value in self.fields:
            if name == key:
                return value
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self.fields))

    def __len__(self) -> int:
        return len(dict.fromkeys(name for name, _ in self.fields))

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.fields if name == key]

    @property
    def timestamp(self) -> float | None:
        """Asterisk's own time of the event (``Timestamp:`` with timestampevents = yes)."""
        try:
            return float(self["Timestamp"])
        except (KeyError, ValueError):
            return None


class AmiProtocol(AMIProtocol):
    """panoramisk's AMIProtocol for writing actions; reading, framing and closing are ours.

    Complete frames go to `on_frame` (bytes without the closing empty line); `on_lost` is
    told why the connection ended as soon as the socket is gone.
    """

    def __init__(
        self,
        *,
        address: str,
        max_frame_bytes: int,
        on_frame: Callable[[bytes], None],
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.address = address
        self.max_frame_bytes = max_frame_bytes
        self.on_frame = on_frame
        self.on_lost = on_lost
        self.buffer = bytearray()
        self.banner_seen = False
        loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[str] = loop.create_future()  # the reason, as soon as known
        self.gone: asyncio.Future[None] = loop.create_future()  # the socket is closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.log = logger
        self.encoding = "utf8"

    def send(self, data: Action, as_list: bool | None = False) -> asyncio.Future[Any]:
        """Write one action. Unlike panoramisk's, it keeps no table of its own (the
        connection keeps one) and never logs the action (a Login carries the secret)."""
        data.as_list = as_list
        self.transport.write(str(data).encode(self.encoding))
        return data.future

    def data_received(self, data: bytes) -> None:
        try:
            self._feed(data)
        except Exception:  # a bug here must not let asyncio kill the transport silently
            logger.exception("ami: failed to read from %s", self.address)
            self.drop("reader error")

    def _feed(self, data: bytes) -> None:
        self.buffer += data
        limit = self.max_frame_bytes
        if not self.banner_seen:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_BANNER_BYTES:
                    self._not_ami()
                return
            if not self.buffer.startswith(BANNER_PREFIX):
                self._not_ami()
                return
            self.version = self.buffer[len(BANNER_PREFIX) : end].decode("ascii", "replace")
            del self.buffer[: end + 2]
            self.banner_seen = True
        while not self.closed:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > limit:
                    self._oversized(len(self.buffer))
                return
            if end > limit:
                self._oversized(end)
                return
            frame = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            self.on_frame(frame)

    def _not_ami(self) -> None:
        logger.error(
            "ami: %s did not greet like Asterisk (%r); closing",
            self.address,
            bytes(self.buffer[:60]),
        )
        self.drop("no AMI banner")

    def _oversized(self, size: int) -> None:
        logger.error(
            "ami: a frame of more than %d bytes (%d so far) from %s: dropping the connection",
            self.max_frame_bytes,
            size,
            self.address,
        )
        self.buffer.clear()
        self.drop("oversized frame")

    def drop(self, reason: str) -> None:
        """Cut the connection now (no FIN handshake to wait for): the supervisor reconnects."""
        if not self.lost.done():
            self.lost.set_result(reason)
        if not self.closed:
            self.closed = True
            self.transport.abort()

    def close(self) -> None:
        """Close without panoramisk's re-queueing of unanswered actions (see module doc)."""
        if not self.closed:
            self.closed = True
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        reason = f"connection lost ({exc})" if exc else "connection closed by Asterisk"
        if not self.lost.done():
            self.lost.set_result(reason)
        if not self.gone.done():
            self.gone.set_result(None)
        self.on_lost(self.lost.result())
