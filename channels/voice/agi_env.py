"""The start of a FastAGI session: the agi_* environment, and the caller ID in E.164.

Asterisk opens the connection with one ``agi_name: value`` line per variable and an empty line
("\\n", not "\\r\\n"; CAPTURES.md surprise 23). ``agi_accountcode: `` has one space and an empty
value. Anything else on a fresh connection (an HTTP request, a port scan) is refused.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers

from channels.voice.agi import AgiProtocolError, AgiTimeout, readline

MAX_ENV_LINES = 128  # Asterisk sends about 25 agi_* lines, plus agi_arg_N
_ENV_KEY_RE = re.compile(r"^agi_[a-z0-9_]{1,64}$")


@dataclass(frozen=True, slots=True)
class CallerNumber:
    """The caller ID: as Asterisk gave it and, when it is a valid number, in E.164."""

    raw: str
    e164: str | None
    anonymous: bool

    @property
    def valid(self) -> bool:
        return self.e164 is not None

    @property
    def number(self) -> str:
        """E.164 when valid, else the raw text (kept, flagged by `valid`)."""
        return self.e164 or self.raw


_ANONYMOUS = {"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld"}


def normalise_caller(raw: str, region: str) -> CallerNumber:
    """Caller ID to E.164 with phonenumbers; numbers without a country prefix are read in
    `region` (the city's country). Hidden or invalid numbers keep their raw text."""
    text = raw.strip()
    if text.lower() in _ANONYMOUS:
        return CallerNumber(raw=raw, e164=None, anonymous=True)
    candidates = [text]
    digits = re.sub(r"[\s().-]", "", text)
    if digits.isdigit() and len(digits) > 9:
        # operators often deliver international numbers without '+' ("48221234567")
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            return CallerNumber(raw=raw, e164=e164, anonymous=False)
    return CallerNumber(raw=raw, e164=None, anonymous=False)


@dataclass(frozen=True, slots=True)
class AgiEnv:
    """The agi_* environment of a call, and its caller ID normalised."""

    headers: Mapping[str, str]
    caller: CallerNumber

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], region: str) -> AgiEnv:
        return cls(dict(headers), normalise_caller(headers.get("agi_callerid", ""), region))

    def get(self, name: str, default: str = "") -> str:
        """``env.get("channel")`` reads ``agi_channel``."""
        return self.headers.get(f"agi_{name}", default)

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def script(self) -> str:
        """The AGI URL path: ``ivr`` for agi://host:4573/ivr."""
        return self.get("network_script").strip("/")

    @property
    def caller_name(self) -> str:
        return self.get("calleridname")

    @property
    def args(self) -> tuple[str, ...]:
        """agi_arg_1, agi_arg_2, ... (the AGI() arguments after the URL)."""
        found = []
        i = 1
        while f"agi_arg_{i}" in self.headers:
            found.append(self.headers[f"agi_arg_{i}"])
            i += 1
        return tuple(found)


async def read_env(
    reader: asyncio.StreamReader, *, timeout_s: float = 5.0, max_lines: int = MAX_ENV_LINES
) -> dict[str, str]:
    """The agi_* block Asterisk sends first, up to its empty line (23).

    AgiProtocolError for anything else (an HTTP request, a port scan, garbage, too many lines),
    AgiTimeout when it does not come in time, CallerHungUp on EOF.
    """
    headers: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout_s):
            for _ in range(max_lines + 1):
                line = await readline(reader)
                if line == "":
                    if not headers:
                        raise AgiProtocolError("empty AGI environment")
                    return headers
                key, sep, value = line.partition(":")
                if not sep or not _ENV_KEY_RE.fullmatch(key):
                    raise AgiProtocolError(f"not an agi_* environment line: {line[:80]!r}")
                # "agi_accountcode: " carries one space and an empty value
                headers[key] = value[1:] if value.startswith(" ") else value
    except TimeoutError:
        raise AgiTimeout(f"no complete AGI environment within {timeout_s:g} s") from None
    raise AgiProtocolError(f"AGI environment longer than {max_lines} lines")
