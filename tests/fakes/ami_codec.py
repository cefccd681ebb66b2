"""The AMI wire format exactly as Asterisk 22 writes and reads it.

Everything here follows the captured bytes in ../shared/asterisk/ (CAPTURES.md):

* messages are ``Key: value`` lines ended by ``\\r\\n``, a message ends with an empty line;
* empty values are sent as ``Key: `` (never left out), leading spaces of a value are kept
  (``Value:    minrxmes=...``), and keys may repeat (``Output:``, ``Variable:``);
* the 14 channel fields always come in the same order, optionally prefixed (``Dest``,
  ``LocalOne``, ``LocalTwo``) for the second channel of an event.

Incoming actions are parsed the way Asterisk's manager reads them: a line ends at ``\\n`` (a
``\\r`` before it is dropped), a blank line ends the action, keys are case-insensitive and the
blanks after the colon are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Pairs = list[tuple[str, str]]

BANNER = b"Asterisk Call Manager/11.0.0\r\n"

# ChannelState numbers and their descriptions (include/asterisk/channelstate.h).
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
DOWN, RING, RINGING, UP, BUSY = 0, 4, 5, 6, 7

# Cause-txt for the hang-up causes the captures show (surprise 17).
CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}


def encode(pairs: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message: every pair as ``Key: value\\r\\n`` and the closing empty line."""
    return ("".join(f"{key}: {value}\r\n" for key, value in pairs) + "\r\n").encode()


def split_lines(message: bytes) -> list[bytes]:
    """A message's lines with their ``\\r\\n`` kept: the units a writer may split at."""
    parts = message.split(b"\r\n")
    return [part + b"\r\n" for part in parts[:-1]]


class Request:
    """One action from the client: ordered headers, case-insensitive lookup, repeated keys."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    @classmethod
    def parse(cls, block: str) -> Request:
        pairs: Pairs = []
        for raw in block.split("\n"):
            line = raw.rstrip("\r")
            if not line:
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            pairs.append((key.strip(), value.lstrip(" \t")))
        return cls(pairs)

    def get(self, key: str, default: str = "") -> str:
        wanted = key.lower()
        for name, value in self.pairs:
            if name.lower() == wanted:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self.pairs if name.lower() == wanted]

    def has(self, key: str) -> bool:
        wanted = key.lower()
        return any(name.lower() == wanted for name, _ in self.pairs)

    @property
    def action(self) -> str:
        return self.get("Action")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID") if self.has("ActionID") else None

    def __repr__(self) -> str:
        return f"Request({self.pairs!r})"


def take_blocks(buffer: bytearray) -> list[str]:
    """Cut every complete action (ended by an empty line) off the front of `buffer`."""
    blocks: list[str] = []
    while True:
        end, size = _find_blank_line(buffer)
        if end < 0:
            return blocks
        block = bytes(buffer[:end])
        del buffer[: end + size]
        text = block.decode("utf-8", "replace")
        if text.strip():
            blocks.append(text)


def _find_blank_line(buffer: bytearray) -> tuple[int, int]:
    """Position and length of the first empty line (``\\r\\n\\r\\n`` or a bare ``\\n\\n``)."""
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    candidates = [(pos, size) for pos, size in ((crlf, 4), (lf, 2)) if pos >= 0]
    if not candidates:
        return -1, 0
    return min(candidates)


def response(kind: str, action_id: str | None, *rest: tuple[str, str]) -> Pairs:
    """``Response: <kind>``, then ``ActionID`` only when the action had one (surprise 13)."""
    pairs: Pairs = [("Response", kind)]
    if action_id is not None:
        pairs.append(("ActionID", action_id))
    pairs.extend(rest)
    return pairs


def error(action_id: str | None, message: str) -> Pairs:
    return response("Error", action_id, ("Message", message))


def success(action_id: str | None, message: str) -> Pairs:
    return response("Success", action_id, ("Message", message))


@dataclass
class Outcome:
    messages: list[Pairs] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    close: bool = False
    split: bool = False  # write line by line (Command)


def reply(*messages: Pairs, after: Callable[[], None] | None = None) -> Outcome:
    return Outcome(list(messages), [after] if after else [])


def list_start(aid: str | None, message: str) -> Pairs:
    return response("Success", aid, ("EventList", "start"), ("Message", message))


def list_complete(name: str, aid: str | None, count: int, *extra: tuple[str, str]) -> Pairs:
    pairs: Pairs = [("Event", name)]
    if aid is not None:
        pairs.append(("ActionID", aid))
    return [*pairs, ("EventList", "Complete"), ("ListItems", str(count)), *extra]
