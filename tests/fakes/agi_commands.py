"""The AGI commands the fake Asterisk answers, with res_agi's replies (see agi_client.py).

A command is looked up by its longest matching words (``GET FULL VARIABLE`` before ``GET
VARIABLE``); too few arguments give the multi-line ``520-`` usage reply (surprise 26); on a
dead channel only the commands Asterisk marks as allowed there run, the others get 511
(surprise 25); unknown words get 510.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.fakes.ami_codec import UP
from tests.fakes.channel import Interrupt
from tests.fakes.dialplan import split_args

if TYPE_CHECKING:
    from tests.fakes.agi_client import AgiSession

DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
INVALID = "510 Invalid or unknown command"
DIGIT_SAY_S = 0.6  # one spoken digit (digits/N), for SAY NUMBER / SAY DIGITS
# GET DATA's usage text is captured; the others follow res_agi's documentation (not captured).
USAGE = {
    "get data": [
        "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
        "Returns the digits received from the channel at the other end.",
    ],
    "stream file": [
        "Send the given file, allowing playback to be interrupted by the given digits, if any.",
    ],
    "wait for digit": [
        "Waits up to <replaceable>timeout</replaceable> milliseconds for channel to receive a "
        "DTMF digit.",
    ],
    "say number": ["Say a given number, returning early if any of the given DTMF digits are "
                   "received on the channel."],
    "say digits": ["Say a given digit string, returning early if any of the given DTMF digits "
                   "are received on the channel."],
    "set variable": ["Sets a variable to the current channel."],
    "get variable": ["Returns <literal>0</literal> if <replaceable>variablename</replaceable> "
                     "is not set."],
    "get full variable": ["Evaluates the given <replaceable>expression</replaceable> against "
                          "the channel specified by <replaceable>channelname</replaceable>."],
    "exec": ["Executes <replaceable>application</replaceable> with given "
             "<replaceable>options</replaceable>."],
    "verbose": ["Sends <replaceable>message</replaceable> to the console via verbose message "
                "system."],
    "set music": ["Enables/Disables the music on hold generator."],
    "get option": ["Behaves similar to STREAM FILE but used with a timeout option."],
    "database get": ["Retrieves an entry in the Asterisk database for a given "
                     "<replaceable>family</replaceable> and <replaceable>key</replaceable>."],
    "database put": ["Adds or updates an entry in the Asterisk database for a given "
                     "<replaceable>family</replaceable>, <replaceable>key</replaceable>, and "
                     "<replaceable>value</replaceable>."],
}  # fmt: skip


@dataclass
class Reply:
    lines: list[str]  # without the trailing "\n"
    code: int = 200

    @property
    def ami_result(self) -> str:
        if self.code == 200:
            return "Success"
        if self.code == 520:
            return "Usage"
        return self.lines[-1].split(" ", 1)[1]


Handler = Callable[["AgiSession", list[str]], Awaitable[Reply]]


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    handler: Handler
    min_args: int
    dead_ok: bool


def _ok(text: str) -> Reply:
    return Reply([f"200 {text}"])


def usage(name: str) -> Reply:
    lines = ["520-Invalid command syntax.  Proper usage follows:"]
    lines += USAGE.get(name, [f"Usage: {name.upper()}"])
    lines.append("520 End of proper usage.")
    return Reply(lines, 520)


def lookup(words: list[str]) -> tuple[Command | None, list[str]]:
    lowered = [word.lower() for word in words]
    best: Command | None = None
    for command in COMMANDS:
        size = len(command.words)
        if tuple(lowered[:size]) == command.words and (best is None or size > len(best.words)):
            best = command
    if best is None:
        return None, []
    return best, words[len(best.words) :]


# --- command handlers -------------------------------------------------------------------------
async def cmd_answer(session: AgiSession, args: list[str]) -> Reply:
    from tests.fakes.apps import answer

    if session.chan.state != UP:
        answer(session.pbx, session.chan)
    return _ok("result=0")


async def cmd_hangup(session: AgiSession, args: list[str]) -> Reply:
    target = session.pbx.find(args[0]) if args else session.chan
    if target is None:
        return _ok("result=-1")
    session.pbx.hangup_request(target, None, via="ami")
    if target is session.chan:
        session.die_after = True
    return _ok("result=1")


async def cmd_stream_file(session: AgiSession, args: list[str]) -> Reply:
    name, escape = args[0], args[1]
    if name in session.pbx.missing_prompts:
        return _ok("result=-1 endpos=0")
    session._listening()
    digit, endpos = await _play_reporting_endpos(session, name, escape)
    session.pbx.varset(session.chan, "PLAYBACKSTATUS", "FAILED" if digit else "SUCCESS")
    return _ok(f"result={ord(digit) if digit else 0} endpos={endpos}")


async def cmd_get_option(session: AgiSession, args: list[str]) -> Reply:
    name, escape = args[0], args[1]
    timeout_s = int(args[2]) / 1000 if len(args) > 2 and args[2].lstrip("-").isdigit() else 5.0
    session._listening()
    digit, endpos = await _play_reporting_endpos(session, name, escape)
    while digit is None:
        digit = await session.chan.read_digit(timeout_s)
        if digit is None:
            return _ok(f"result=0 endpos={endpos}")
        if digit not in escape:
            digit = None
    return _ok(f"result={ord(digit)} endpos={endpos}")


async def _play_reporting_endpos(
    session: AgiSession, name: str, escape: str
) -> tuple[str | None, int]:
    """STREAM FILE / GET OPTION report how far they played even when the caller hangs up."""
    try:
        return await session.play(name, escape)
    except Interrupt:
        session.interrupted_reply = Reply([f"200 result=-1 endpos={session.played}"])
        raise


async def cmd_get_data(session: AgiSession, args: list[str]) -> Reply:
    name = args[0]
    timeout_s = (
        int(args[1]) / 1000 if len(args) > 1 and args[1].isdigit() and args[1] != "0" else 5.0
    )
    max_digits = int(args[2]) if len(args) > 2 and args[2].isdigit() else 1024
    session._listening()
    digit, _ = await session.play(name, "0123456789*#")
    digits = ""
    while True:
        if digit is None:
            digit = await session.chan.read_digit(timeout_s)
            if digit is None:
                return _ok(f"result={digits} (timeout)")
        if digit == "#":
            break
        digits += digit
        digit = None
        if len(digits) >= max_digits:
            break
    return _ok(f"result={digits}")


async def cmd_wait_for_digit(session: AgiSession, args: list[str]) -> Reply:
    timeout_ms = int(args[0]) if args[0].lstrip("-").isdigit() else 0
    session._listening()
    digit = await session.chan.read_digit(None if timeout_ms < 0 else timeout_ms / 1000)
    return _ok(f"result={ord(digit) if digit else 0}")


async def _say(session: AgiSession, count: int, escape: str) -> Reply:
    session._listening()
    for _ in range(count):
        digit = await session.chan.read_digit(DIGIT_SAY_S)
        if digit is not None and digit in escape:
            return _ok(f"result={ord(digit)}")
    return _ok("result=0")


async def cmd_say_number(session: AgiSession, args: list[str]) -> Reply:
    return await _say(session, len(args[0].lstrip("-")) or 1, args[1])


async def cmd_say_digits(session: AgiSession, args: list[str]) -> Reply:
    return await _say(session, len(args[0]), args[1])


async def cmd_set_variable(session: AgiSession, args: list[str]) -> Reply:
    from tests.fakes.apps import app_set

    await app_set(session.pbx, session.chan, f"{args[0]}={args[1]}")
    return _ok("result=1")


async def cmd_get_variable(session: AgiSession, args: list[str]) -> Reply:
    name = args[0]
    builtin = name in ("CHANNEL", "EXTEN", "CONTEXT", "PRIORITY", "UNIQUEID") or "(" in name
    known = builtin or name in session.chan.variables or name in session.pbx.globals
    value = session.pbx.get_variable(session.chan, name)
    return _ok(f"result=1 ({value})") if known else _ok("result=0")


async def cmd_get_full_variable(session: AgiSession, args: list[str]) -> Reply:
    target = session.pbx.find(args[1]) if len(args) > 1 else session.chan
    if target is None:
        return _ok("result=0")
    return _ok(f"result=1 ({session.pbx.expander(target).expand(args[0])})")


async def cmd_set_music(session: AgiSession, args: list[str]) -> Reply:
    if args[0].lower() == "on":
        session.pbx.moh_start(session.chan, args[1] if len(args) > 1 else "default")
    else:
        session.pbx.moh_stop(session.chan)
    return _ok("result=0")


async def cmd_exec(session: AgiSession, args: list[str]) -> Reply:
    from tests.fakes.apps import APPS, run_app

    app = args[0]
    if app.lower() not in APPS:
        return _ok("result=-2")
    data = ",".join(split_args(" ".join(args[1:]).replace("|", ",")))
    await run_app(session.pbx, session.chan, app, data)
    return _ok("result=0")


async def cmd_verbose(session: AgiSession, args: list[str]) -> Reply:
    return _ok("result=1")


async def cmd_noop(session: AgiSession, args: list[str]) -> Reply:
    return _ok("result=0")


async def cmd_channel_status(session: AgiSession, args: list[str]) -> Reply:
    return _ok(f"result={session.chan.state}")


async def cmd_set_context(session: AgiSession, args: list[str]) -> Reply:
    session.chan.context = args[0]
    return _ok("result=0")


async def cmd_set_extension(session: AgiSession, args: list[str]) -> Reply:
    session.chan.exten = args[0]
    return _ok("result=0")


async def cmd_set_priority(session: AgiSession, args: list[str]) -> Reply:
    resolved = session.pbx.dialplan.resolve_priority(
        session.chan.context, session.chan.exten, args[0]
    )
    session.chan.priority = (resolved or 1) - 1  # the AGI application's return adds one
    return _ok("result=0")


DATABASE: dict[tuple[str, str], str] = {}


async def cmd_database_get(session: AgiSession, args: list[str]) -> Reply:
    value = DATABASE.get((args[0], args[1]))
    return _ok("result=0") if value is None else _ok(f"result=1 ({value})")


async def cmd_database_put(session: AgiSession, args: list[str]) -> Reply:
    DATABASE[(args[0], args[1])] = args[2]
    return _ok("result=1")


COMMANDS = [
    Command(("answer",), cmd_answer, 0, False),
    Command(("hangup",), cmd_hangup, 0, True),
    Command(("stream", "file"), cmd_stream_file, 2, False),
    Command(("get", "option"), cmd_get_option, 2, False),
    Command(("get", "data"), cmd_get_data, 1, False),
    Command(("wait", "for", "digit"), cmd_wait_for_digit, 1, False),
    Command(("say", "number"), cmd_say_number, 2, False),
    Command(("say", "digits"), cmd_say_digits, 2, False),
    Command(("set", "variable"), cmd_set_variable, 2, True),
    Command(("get", "variable"), cmd_get_variable, 1, True),
    Command(("get", "full", "variable"), cmd_get_full_variable, 1, True),
    Command(("set", "music"), cmd_set_music, 1, False),
    Command(("exec",), cmd_exec, 1, True),
    Command(("verbose",), cmd_verbose, 1, True),
    Command(("noop",), cmd_noop, 0, True),
    Command(("channel", "status"), cmd_channel_status, 0, False),
    Command(("set", "context"), cmd_set_context, 1, False),
    Command(("set", "extension"), cmd_set_extension, 1, False),
    Command(("set", "priority"), cmd_set_priority, 1, False),
    Command(("database", "get"), cmd_database_get, 2, True),
    Command(("database", "put"), cmd_database_put, 3, True),
]
