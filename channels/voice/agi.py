"""One FastAGI session: the `AgiSession` protocol and its implementation over panoramisk.

panoramisk's `fast_agi.Request` carries the session (the agi_* headers, the reader and the
writer); its `send_command` is not used, because with the real Asterisk traffic it goes wrong
(../shared/asterisk/CAPTURES.md, surprises 23-27):

* no timeout anywhere: a silent peer blocks the call's task forever;
* the unsolicited ``HANGUP`` line Asterisk sends between replies after a hang-up (25) is taken as
  the reply to the next command, and every later reply is off by one;
* a ``520-`` usage reply is several lines up to ``520 End of proper usage.`` (26); it reads one;
* a line that is not ``NNN ...`` makes ``int('')`` raise ValueError; an oversized one is read
  without bound;
* ``200 result=-1`` is both "the caller hung up" and "the sound file does not exist" (Asterisk's
  STREAM FILE answers ``result=-1 endpos=0`` for a missing file).

So this module reads the replies itself: every command has a deadline, ``HANGUP`` lines are
noted wherever they arrive, multi-line replies are read to their end, ``100 Trying`` is skipped,
and anything malformed or longer than the line limit raises `AgiProtocolError`, which ends the
session (its byte stream can no longer be trusted) without touching the server. A ``-1``
result is told apart by asking ``CHANNEL STATUS``: a dead channel answers 511.

Digits: STREAM FILE, SAY *, WAIT FOR DIGIT return the ASCII code of the key (``result=49`` is
'1', 0 = none), GET DATA the digits themselves, ``result= (timeout)`` when none came (24).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from panoramisk.fast_agi import Request

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 8192  # longest line accepted from Asterisk (a variable value, a usage text)
MAX_REPLY_LINES = 64  # lines of one multi-line (520-) reply
_REPLY_RE = re.compile(r"^(\d{3})([ -])(.*)$")
_RESULT_RE = re.compile(
    r"^result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?P<extra>(?: [A-Za-z_]+=\S*)*)\s*$"
)
_DIGITS_RE = re.compile(r"^[0-9*#]*$")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\([A-Za-z0-9_,]*\))?$")


# --- errors -----------------------------------------------------------------------------------


class AgiError(Exception):
    """Base of every FastAGI failure; ends the session."""


class CallerHungUp(AgiError):
    """The channel is gone: ``result=-1`` with a dead channel, 511, a HANGUP line, or EOF."""


class ChannelDead(CallerHungUp):
    """511: the command is not permitted on a dead channel; the session itself is still fine
    (GET VARIABLE and VERBOSE keep working, 25)."""


class AgiProtocolError(AgiError):
    """Asterisk sent something that is not AGI (malformed, oversized, truncated)."""


class AgiTimeout(AgiError):
    """A command got no complete reply within its deadline."""


class AgiCommandError(AgiError):
    """Asterisk refused a command: 510 unknown command, 520 usage (with the usage text)."""

    def __init__(self, code: int, text: str) -> None:
        self.code = code
        self.text = text
        super().__init__(f"{code} {text}")


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgiReply:
    """A parsed ``200 result=...`` reply."""

    result: str
    data: str | None = None  # the text in parentheses: a variable's value, "timeout"
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. endpos=9760

    @property
    def timed_out(self) -> bool:
        return self.data == "timeout"


def parse_result(text: str) -> AgiReply:
    """The part of a 200 line after ``200 ``; AgiProtocolError if it is not ``result=...``."""
    m = _RESULT_RE.fullmatch(text)
    if m is None:
        raise AgiProtocolError(f"not an AGI result: {text[:80]!r}")
    extra = dict(pair.split("=", 1) for pair in m.group("extra").split())
    return AgiReply(result=m.group("result"), data=m.group("data"), extra=extra)


def _key(code: str) -> str | None:
    """An ASCII code result ('49') as the key pressed ('1'); None for 0."""
    try:
        value = int(code)
    except ValueError:
        raise AgiProtocolError(f"digit result is not a number: {code!r}") from None
    if value == 0:
        return None
    if not 0 < value < 128:
        raise AgiProtocolError(f"digit result out of range: {value}")
    return chr(value)


async def readline(reader: asyncio.StreamReader) -> str:
    """One line from Asterisk without its line end; AgiProtocolError when it is too long or
    cut off by EOF, CallerHungUp at EOF."""
    try:
        raw = await reader.readline()
    except ValueError:  # over the StreamReader's limit (the server sets it to MAX_LINE_BYTES)
        raise AgiProtocolError("line longer than the line limit") from None
    if not raw.endswith(b"\n"):
        if raw:
            raise AgiProtocolError(f"connection closed inside a line: {raw[:80]!r}")
        raise CallerHungUp("Asterisk closed the AGI connection")
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


# --- the session ----------------------------------------------------------------------------


class AgiSession(Protocol):
    """What the IVR engine and the hold loop may do with a call."""

    async def answer(self) -> None: ...

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        """Play a sound; the key that interrupted it, or None."""
        ...

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None:
        """Play `prompt` and collect up to `max_digits` keys ('#' ends); None on timeout."""
        ...

    async def say_number(self, number: int, escape_digits: str = "") -> str | None: ...

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None: ...

    async def set_variable(self, name: str, value: str) -> None: ...

    async def get_variable(self, name: str) -> str | None: ...

    async def wait_for_digit(self, timeout_ms: int) -> str | None: ...

    async def set_music(self, on: bool, moh_class: str = "default") -> None: ...

    async def hangup(self) -> None: ...


class FastAgiSession:
    """`AgiSession` over a panoramisk FastAGI `Request`, with deadlines on every command.

    Commands run one at a time (a lock), as AGI requires. After any AgiError other than a refused
    command the session is `broken`: later commands raise at once instead of reading a stream
    that is out of step.
    """

    def __init__(
        self,
        request: Request,
        *,
        command_timeout_s: float = 10.0,
        media_timeout_s: float = 120.0,
    ) -> None:
        self.request = request
        self.command_timeout_s = command_timeout_s
        # a prompt may be long: STREAM FILE / GET DATA get this on top of their input timeout
        self.media_timeout_s = media_timeout_s
        self.hung_up = False
        self.broken: AgiError | None = None
        self._lock = asyncio.Lock()

    # -- the wire

    async def command(self, *parts: str, timeout_s: float | None = None) -> AgiReply:
        """Send one command and return its 200 reply.

        511 (dead channel) raises CallerHungUp; 510/520 and other codes AgiCommandError.
        """
        line = " ".join(parts)
        if any(c in line for c in "\r\n\0"):
            raise ValueError(f"AGI command with a line break: {line!r}")
        async with self._lock:
            if self.broken is not None:
                raise self.broken
            try:
                return await self._exchange(line, timeout_s or self.command_timeout_s)
            except (AgiCommandError, ChannelDead):
                raise
            except AgiError as exc:
                self.broken = exc
                raise
            except OSError as exc:  # reset by peer while writing
                self.broken = CallerHungUp(f"AGI connection lost: {exc}")
                raise self.broken from exc

    async def _exchange(self, line: str, timeout_s: float) -> AgiReply:
        writer, reader = self.request.writer, self.request.reader
        try:
            async with asyncio.timeout(timeout_s):
                writer.write(line.encode("utf-8") + b"\n")
                await writer.drain()
                return await self._read_reply(reader)
        except TimeoutError:
            raise AgiTimeout(f"no reply to {line.split(' ', 2)[:2]} in {timeout_s:g} s") from None

    async def _read_reply(self, reader: asyncio.StreamReader) -> AgiReply:
        while True:
            line = await readline(reader)
            if line == "HANGUP":  # unsolicited, between replies (25)
                self.hung_up = True
                continue
            m = _REPLY_RE.fullmatch(line)
            if m is None:
                raise AgiProtocolError(f"not an AGI reply: {line[:80]!r}")
            code, sep, text = int(m.group(1)), m.group(2), m.group(3)
            if code == 100:  # "100 result=0 Trying...": the real reply follows
                continue
            if sep == "-":
                text = await self._read_rest(reader, code, text)
            if code == 200:
                return parse_result(text)
            if code == 511:
                self.hung_up = True
                raise ChannelDead(text)
            raise AgiCommandError(code, text)

    async def _read_rest(self, reader: asyncio.StreamReader, code: int, first: str) -> str:
        """The rest of a multi-line reply: free text up to ``<code> <last line>`` (26)."""
        lines = [first]
        end = f"{code} "
        for _ in range(MAX_REPLY_LINES):
            line = await readline(reader)
            if line == "HANGUP":
                self.hung_up = True
                continue
            lines.append(line[len(end) :] if line.startswith(end) else line)
            if line.startswith(end):
                return "\n".join(lines)
        raise AgiProtocolError(f"{code} reply longer than {MAX_REPLY_LINES} lines")

    async def _check_minus_one(self, what: str) -> None:
        """``result=-1``: a hang-up, or a failure on a live channel (a missing sound file)."""
        if not self.hung_up:
            try:
                status = await self.command("CHANNEL", "STATUS")
            except AgiCommandError:
                status = None
            if status is not None and status.result == "-1":  # no such channel
                self.hung_up = True
        if self.hung_up:
            raise CallerHungUp(f"hang-up during {what}")
        logger.warning("agi: %s failed on a live channel (missing sound file?)", what)

    def _alive(self, what: str) -> None:
        """A channel command after the HANGUP line: Asterisk would answer 511 anyway."""
        if self.hung_up:
            raise ChannelDead(f"the caller hung up before {what}")

    async def _digit_command(self, what: str, *parts: str, timeout_s: float) -> str | None:
        self._alive(what)
        reply = await self.command(*parts, timeout_s=timeout_s)
        if reply.result == "-1":
            await self._check_minus_one(what)
            return None
        return _key(reply.result)

    # -- the commands

    async def answer(self) -> None:
        self._alive("ANSWER")
        reply = await self.command("ANSWER")
        if reply.result == "-1":
            await self._check_minus_one("ANSWER")

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        return await self._digit_command(
            f"STREAM FILE {name}", "STREAM", "FILE", _arg(name), _quoted(_digits(escape_digits)),
            timeout_s=self.media_timeout_s,
        )

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> str | None:
        self._alive(f"GET DATA {prompt}")
        reply = await self.command(
            "GET", "DATA", _arg(prompt), str(int(timeout_ms)), str(int(max_digits)),
            timeout_s=self.media_timeout_s + timeout_ms / 1000 * max(1, max_digits),
        )
        if reply.result == "-1":
            await self._check_minus_one(f"GET DATA {prompt}")
            return None
        if not _DIGITS_RE.fullmatch(reply.result):
            raise AgiProtocolError(f"GET DATA result is not digits: {reply.result[:40]!r}")
        if reply.timed_out and not reply.result:
            return None
        return reply.result

    async def say_number(self, number: int, escape_digits: str = "") -> str | None:
        return await self._digit_command(
            "SAY NUMBER", "SAY", "NUMBER", str(int(number)), _quoted(_digits(escape_digits)),
            timeout_s=self.media_timeout_s,
        )

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None:
        return await self._digit_command(
            "SAY DIGITS", "SAY", "DIGITS", _digits(digits) or "0",
            _quoted(_digits(escape_digits)), timeout_s=self.media_timeout_s,
        )

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET", "VARIABLE", _var_name(name), _quoted(value))

    async def get_variable(self, name: str) -> str | None:
        reply = await self.command("GET", "VARIABLE", _var_name(name))
        return reply.data if reply.result == "1" else None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return await self._digit_command(
            "WAIT FOR DIGIT", "WAIT", "FOR", "DIGIT", str(int(timeout_ms)),
            timeout_s=self.command_timeout_s + timeout_ms / 1000,
        )

    async def set_music(self, on: bool, moh_class: str = "default") -> None:
        self._alive("SET MUSIC")
        if on:
            await self.command("SET", "MUSIC", "ON", _arg(moh_class))
        else:
            await self.command("SET", "MUSIC", "OFF")

    async def hangup(self) -> None:
        """Hang the channel up; a channel already gone is no error."""
        with contextlib.suppress(CallerHungUp, AgiCommandError):
            await self.command("HANGUP")


# --- arguments ------------------------------------------------------------------------------


def _arg(value: str) -> str:
    """A bare argument: AGI splits on spaces and quotes, so those are refused."""
    if not value or any(c in value for c in ' "\\\r\n\0'):
        raise ValueError(f"not a valid AGI argument: {value!r}")
    return value


def _quoted(value: str) -> str:
    """A quoted argument; Asterisk's parser unescapes backslashes inside quotes."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"AGI argument with a line break: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digits(value: str) -> str:
    if not _DIGITS_RE.fullmatch(value):
        raise ValueError(f"not DTMF digits: {value!r}")
    return value


def _var_name(name: str) -> str:
    if not _VAR_NAME_RE.fullmatch(name):
        raise ValueError(f"not a channel variable name: {name!r}")
    return name
