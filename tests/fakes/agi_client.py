"""The Asterisk side of FastAGI: connects to a FastAGI server and answers like Asterisk 22.

What it reproduces (CAPTURES.md surprises 23-27, fastagi-ivr-dtmf.agi-*.raw.txt):

* the ``agi_*`` environment, one line per write, ``agi_accountcode: `` with its trailing space,
  a random ``agi_threadid``, ended by one bare ``\\n``;
* digit results as ASCII codes for STREAM FILE (``200 result=49 endpos=9760``), the digits
  themselves for GET DATA (``200 result=2``), ``200 result= (timeout)``, ``200 result=-1`` when
  the caller hangs up during a command;
* after a hang-up an unsolicited ``HANGUP\\n`` between replies, the session kept open until the
  server closes it; GET VARIABLE / VERBOSE still 200, channel commands 511, unknown ones 510;
* ``520-`` multi-line usage replies for a bad syntax;
* AMI ``AGIExecStart``/``AGIExecEnd`` per command with a random ``CommandId`` and
  ``ResultCode``/``Result`` (200 Success, 510, 511 with the full text, 520 Usage).

`run_fastagi` is what the fake PBX's ``AGI()`` application calls; the commands and their
replies are in tests/fakes/agi_commands.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tests.fakes.agi_commands import DEAD, INVALID, Reply, lookup, usage
from tests.fakes.channel import Channel, Interrupt

if TYPE_CHECKING:
    from tests.fakes.pbx import Pbx

logger = logging.getLogger(__name__)

AGI_VERSION = "22.10.1"
DEFAULT_PORT = 4573
CONNECT_TIMEOUT_S = 2.0
MAX_COMMAND_BYTES = 8192
FRAME_SAMPLES = 160  # 20 ms at 8 kHz: endpos advances frame by frame


async def run_fastagi(pbx: Pbx, chan: Channel, url: str, args: list[str]) -> str:
    """Run ``AGI(url,args...)`` on `chan`; returns the AGISTATUS value."""
    parts = urlsplit(url)
    if parts.scheme != "agi" or not parts.hostname:
        logger.warning("fake asterisk: AGI %r is not an agi:// URL", url)
        return "FAILURE"
    named = (parts.hostname, parts.port or DEFAULT_PORT)
    host, port = pbx.agi_routes.get(named, named)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return "FAILURE"
    session = AgiSession(pbx, chan, reader, writer, url, args)
    return await session.run()


class AgiSession:
    def __init__(
        self,
        pbx: Pbx,
        chan: Channel,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        url: str,
        args: list[str],
    ) -> None:
        self.pbx = pbx
        self.chan = chan
        self.reader = reader
        self.writer = writer
        self.url = url
        self.args = args
        self.dead = False
        self.hangup_sent = False
        self.die_after = False  # the command hung up the call itself (HANGUP)
        self.interrupted_reply = Reply(["200 result=-1"])
        self.played = 0  # samples of the current prompt played so far
        self.rng = random.Random()

    def environment(self) -> list[tuple[str, str]]:
        chan = self.chan
        script = urlsplit(self.url).path.lstrip("/")
        env = [
            ("agi_network", "yes"),
            ("agi_network_script", script),
            ("agi_request", self.url),
            ("agi_channel", chan.name),
            ("agi_language", chan.language),
            ("agi_type", chan.tech),
            ("agi_uniqueid", chan.uniqueid),
            ("agi_version", AGI_VERSION),
            ("agi_callerid", chan.cid_num or "unknown"),
            ("agi_calleridname", chan.cid_name or "unknown"),
            ("agi_callingpres", "0"),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", "unknown"),
            ("agi_rdnis", "unknown"),
            ("agi_context", chan.context),
            ("agi_extension", chan.exten),
            ("agi_priority", str(chan.priority)),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", chan.accountcode),
            ("agi_threadid", str(self.rng.randrange(139_700_000_000_000, 139_799_999_999_999))),
        ]
        env += [(f"agi_arg_{n}", value) for n, value in enumerate(self.args, start=1)]
        return env

    async def _write(self, text: str) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(text.encode())
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def run(self) -> str:
        self.chan.agi = self
        fault, self.chan.agi_fault = self.chan.agi_fault, None
        try:
            if fault in ENV_FAULTS:
                await self._write(ENV_FAULTS[fault](self.environment()))
                return "FAILURE"  # Asterisk's end of a broken session: it gives up
            for key, value in self.environment():
                await self._write(f"{key}: {value}\n")
            await self._write("\n")
            while True:
                line = await self._next_command()
                if line is None:
                    break
                if fault in REPLY_FAULTS:
                    await self._write(REPLY_FAULTS[fault])
                    return "FAILURE"
                await self.execute(line)
        except ConnectionError:
            pass
        finally:
            self.chan.agi = None
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        return "HANGUP" if self.dead or self.chan.interrupted is not None else "SUCCESS"

    async def _next_command(self) -> str | None:
        read = asyncio.ensure_future(self.reader.readline())
        try:
            if not self.dead:
                try:
                    raw = await self.chan.block(None, read)
                except Interrupt:
                    await self.channel_died()
                    raw = await read
            else:
                raw = await read
        finally:
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await read
        if not raw:
            return None
        return raw[:MAX_COMMAND_BYTES].decode("utf-8", "replace").rstrip("\r\n")

    async def channel_died(self) -> None:
        """The channel hung up (or was redirected): say HANGUP once, go on in dead mode."""
        self.dead = True
        if not self.hangup_sent:
            self.hangup_sent = True
            await self._write("HANGUP\n")

    async def execute(self, line: str) -> None:
        command_id = str(self.rng.randrange(1, 2**31))
        start = [("CommandId", command_id), ("Command", line)]
        self.pbx.chan_event("AGIExecStart", self.chan, *start, cat="agi")
        reply, died = await self._dispatch(line)
        for text in reply.lines:
            await self._write(text + "\n")
        end = [*start, ("ResultCode", str(reply.code)), ("Result", reply.ami_result)]
        self.pbx.chan_event("AGIExecEnd", self.chan, *end, cat="agi")
        if died:
            await self.channel_died()

    async def _dispatch(self, line: str) -> tuple[Reply, bool]:
        try:
            words = shlex.split(line, posix=True)
        except ValueError:
            words = line.split()
        command, args = lookup(words)
        self.interrupted_reply = Reply(["200 result=-1"])
        self.die_after = False
        self.played = 0
        if command is None:
            return Reply([INVALID], 510), False
        if self.dead and not command.dead_ok:
            return Reply([DEAD], 511), False
        if len(args) < command.min_args:
            return usage(" ".join(command.words)), False
        try:
            reply = await command.handler(self, args)
        except Interrupt:
            return self.interrupted_reply, True
        return reply, self.die_after

    # --- media -------------------------------------------------------------------------------
    def _listening(self) -> None:
        for callback in list(self.chan.on_listen):
            callback()

    async def play(self, name: str, escape: str) -> tuple[str | None, int]:
        """Play a prompt; returns (escape digit pressed or None, samples played)."""
        self.pbx.moh_stop(self.chan)
        total = self.pbx.prompt_samples(name)
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            played = (loop.time() - started) / max(self.pbx.time_scale, 1e-9) * 8000
            remaining = max(0.0, (total - played) / 8000)
            if remaining <= 0:
                return None, total
            self.played = _frames(played)
            digit = await self.chan.read_digit(remaining)
            if digit is None:
                return None, total
            if digit in escape:
                elapsed = (loop.time() - started) / max(self.pbx.time_scale, 1e-9)
                return digit, min(total, _frames(elapsed * 8000))


def _env_text(env: list[tuple[str, str]]) -> str:
    return "".join(f"{key}: {value}\n" for key, value in env)


# Broken input for the FastAGI server's robustness tests (CallerHandle.agi_fault): after it
# the session is closed, as when Asterisk or the network fails mid-session.
ENV_FAULTS: dict[str, Callable[[list[tuple[str, str]]], str]] = {
    "garbage_env": lambda env: "\x00\x01\xff not an agi environment\n\x7f\n\n",
    "truncated_env": lambda env: _env_text(env)[:120],
    "oversized_env": lambda env: _env_text(env[:3]) + "agi_junk: " + "x" * 200_000 + "\n\n",
}
REPLY_FAULTS = {
    "garbage_reply": "\x00\xffthis is no reply\n",
    "oversized_reply": "200 result=1 (" + "y" * 200_000 + ")\n",
    "truncated_reply": "200 resu",
}
AGI_FAULTS = (*ENV_FAULTS, *REPLY_FAULTS)


def _frames(samples: float) -> int:
    return int(samples) // FRAME_SAMPLES * FRAME_SAMPLES
