"""A FastAGI client fake: Asterisk's side of one AGI session, byte for byte as captured.

Follows ../shared/asterisk/fastagi-ivr-dtmf.agi-*.from-asterisk.raw.txt: the agi_* environment
(``\\n`` line ends, ``agi_accountcode: `` with its trailing space, one empty line, sent in two
chunks as Asterisk did), then one reply per command:

* ``ANSWER`` -> ``200 result=0``; ``STREAM FILE`` -> ``200 result=0 endpos=11360`` played out,
  ``200 result=49 endpos=9760`` interrupted by '1' (ASCII code), ``200 result=-1 endpos=0`` for a
  sound that does not exist; ``GET DATA`` -> ``200 result=2`` (the digits themselves) or
  ``200 result= (timeout)``;
* a hang-up during a command -> ``200 result=-1``, then the unsolicited ``HANGUP`` line; after
  that channel commands get ``511 Command Not Permitted on a dead channel or intercept routine``
  while GET VARIABLE, SET VARIABLE and VERBOSE still work, and the socket stays open until the
  server closes it;
* an unknown command -> ``510 Invalid or unknown command``; ``GET DATA`` without arguments ->
  the multi-line ``520-`` usage text ending in ``520 End of proper usage.``.

The caller is a script of inputs, consumed by the commands that listen for keys: `Press` (a key,
or digits for GET DATA; with ``barge=True`` it interrupts a STREAM FILE that allows it),
`Silence` (GET DATA times out) and `HangUp` (during the next GET DATA, or with ``in_prompt=True``
during the next STREAM FILE).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from dataclasses import dataclass, field

ENV_TEMPLATE = (
    "agi_network: yes\n"
    "agi_network_script: {script}\n"
    "agi_request: agi://127.0.0.1:{port}/{script}\n"
    "agi_channel: {channel}\n"
    "agi_language: pl\n"
    "agi_type: Local\n"
    "agi_uniqueid: {uniqueid}\n"
    "agi_version: 22.10.1\n"
    "agi_callerid: {callerid}\n"
    "agi_calleridname: {calleridname}\n"
    "agi_callingpres: 0\n"
    "agi_callingani2: 0\n"
    "agi_callington: 0\n"
    "agi_callingtns: 0\n"
    "agi_dnid: unknown\n"
    "agi_rdnis: unknown\n"
    "agi_context: city\n"
    # Asterisk's first write ended here in the capture; the rest came in a second chunk
    "agi_extension: 311\n"
    "agi_priority: 4\n"
    "agi_enhanced: 0.0\n"
    "agi_accountcode: \n"
    "agi_threadid: {threadid}\n"
    "{args}"
    "\n"
)
SPLIT_AFTER = "agi_context: city\n"

R_DEAD = "511 Command Not Permitted on a dead channel or intercept routine\n"
R_UNKNOWN = "510 Invalid or unknown command\n"
R_GET_DATA_USAGE = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
    "Returns the digits received from the channel at the other end.\n"
    "520 End of proper usage.\n"
)
R_STREAM_FILE_USAGE = (
    "520-Invalid command syntax.  Proper usage follows:\n"
    "Send the given file, allowing playback to be interrupted by the given digits, if any.\n"
    "520 End of proper usage.\n"
)
# commands Asterisk still runs on a dead channel (res_agi's "dead" flag)
DEAD_OK = {"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP"}
KNOWN = {
    "ANSWER", "STREAM FILE", "GET DATA", "SAY NUMBER", "SAY DIGITS", "WAIT FOR DIGIT",
    "SET MUSIC", "HANGUP", "CHANNEL STATUS", *DEAD_OK,
}


@dataclass(frozen=True)
class Press:
    keys: str
    barge: bool = False  # pressed while a STREAM FILE plays (if it allows the key)


@dataclass(frozen=True)
class Silence:
    pass


@dataclass(frozen=True)
class HangUp:
    in_prompt: bool = False  # during a STREAM FILE; else during the next GET DATA / WAIT


Input = Press | Silence | HangUp


@dataclass
class FakeAsteriskCall:
    """One call: connect, send the environment, answer every command until the server closes."""

    port: int
    inputs: list[Input] = field(default_factory=list)
    callerid: str = "221234567"
    calleridname: str = "Resident"
    uniqueid: str = "1795814130.30"
    script: str = "ivr"
    args: tuple[str, ...] = ()
    missing_sounds: frozenset[str] = frozenset()
    host: str = "127.0.0.1"
    # what happened
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    dead: bool = False
    exhausted: bool = False  # the server asked for input after the script ran out
    closed_by_server: bool = False

    @property
    def channel(self) -> str:
        return f"Local/311@city-{int(self.uniqueid.split('.')[-1]):08x};2"

    def environment(self) -> str:
        args = "".join(f"agi_arg_{i}: {a}\n" for i, a in enumerate(self.args, 1))
        return ENV_TEMPLATE.format(
            script=self.script, port=self.port, channel=self.channel, uniqueid=self.uniqueid,
            callerid=self.callerid, calleridname=self.calleridname,
            threadid=139701066086080 + int(self.uniqueid.split(".")[-1]), args=args,
        )

    async def run(self, timeout_s: float = 10.0) -> FakeAsteriskCall:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                env = self.environment()
                first, rest = env.split(SPLIT_AFTER, 1)
                writer.write((first + SPLIT_AFTER).encode())
                await writer.drain()
                writer.write(rest.encode())
                await writer.drain()
                while True:
                    line = await reader.readline()
                    if not line:
                        self.closed_by_server = True
                        return self
                    command = line.decode().rstrip("\n")
                    self.commands.append(command)
                    writer.write(self.reply(command).encode())
                    await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                # the server closed first (a refused call): Asterisk sees AGISTATUS=FAILURE
                self.closed_by_server = True
                return self
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    # --- Asterisk's answers

    def _next_input(self) -> Input:
        if not self.inputs:
            self.exhausted = True
            return Silence()
        return self.inputs.pop(0)

    def reply(self, command: str) -> str:
        words = shlex.split(command, posix=True)
        name = " ".join(words[:3]) if " ".join(words[:3]) in KNOWN else " ".join(words[:2])
        if name not in KNOWN:
            name = words[0] if words else ""
        if name not in KNOWN:
            return R_UNKNOWN
        args = words[len(name.split()) :]
        if self.dead and name not in DEAD_OK:
            return R_DEAD
        return getattr(self, "_" + name.lower().replace(" ", "_"))(args)

    def _hang_up_now(self) -> str:
        self.dead = True
        return "200 result=-1\nHANGUP\n"

    def _answer(self, args: list[str]) -> str:
        return "200 result=0\n"

    def _stream_file(self, args: list[str]) -> str:
        if not args:
            return R_STREAM_FILE_USAGE
        if args[0] in self.missing_sounds:
            return "200 result=-1 endpos=0\n"
        escape = args[1] if len(args) > 1 else ""
        nxt = self.inputs[0] if self.inputs else None
        if isinstance(nxt, HangUp) and nxt.in_prompt:
            self.inputs.pop(0)
            self.dead = True
            return "200 result=-1 endpos=4800\nHANGUP\n"
        if isinstance(nxt, Press) and nxt.barge and nxt.keys[0] in escape:
            self.inputs.pop(0)
            return f"200 result={ord(nxt.keys[0])} endpos=9760\n"
        return "200 result=0 endpos=11360\n"

    def _get_data(self, args: list[str]) -> str:
        if not args:
            return R_GET_DATA_USAGE
        step = self._next_input()
        if isinstance(step, HangUp):
            return self._hang_up_now()
        if isinstance(step, Silence):
            return "200 result= (timeout)\n"
        max_digits = int(args[2]) if len(args) > 2 else 1024
        keys = step.keys.split("#")[0]
        return f"200 result={keys[:max_digits]}\n"

    def _wait_for_digit(self, args: list[str]) -> str:
        step = self._next_input()
        if isinstance(step, HangUp):
            return self._hang_up_now()
        if isinstance(step, Silence):
            return "200 result=0\n"
        return f"200 result={ord(step.keys[0])}\n"

    def _say_number(self, args: list[str]) -> str:
        return "200 result=0\n"

    _say_digits = _say_number

    def _set_music(self, args: list[str]) -> str:
        return "200 result=0\n"

    def _channel_status(self, args: list[str]) -> str:
        return "200 result=6\n"  # 6: line is up

    def _set_variable(self, args: list[str]) -> str:
        self.variables[args[0]] = args[1] if len(args) > 1 else ""
        return "200 result=1\n"

    def _get_variable(self, args: list[str]) -> str:
        if args and args[0] == "CHANNEL":
            return f"200 result=1 ({self.channel})\n"
        if args and args[0] in self.variables:
            return f"200 result=1 ({self.variables[args[0]]})\n"
        return "200 result=0\n"

    _get_full_variable = _get_variable

    def _verbose(self, args: list[str]) -> str:
        return "200 result=1\n"

    def _noop(self, args: list[str]) -> str:
        return "200 result=0\n"

    def _hangup(self, args: list[str]) -> str:
        self.dead = True
        return "200 result=1\nHANGUP\n"
