"""What the voice adapter needs from an AMI connection, and Asterisk's event times.

The adapter is written against this small protocol, so its tests and its production use share
every line: production plugs in `channels.voice.ami.AmiConnection` (panoramisk, wrapped), and
nothing in the adapter knows panoramisk.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

EventCallback = Callable[[str, Mapping[str, str]], Awaitable[None]]
ConnectedCallback = Callable[[], Awaitable[None]]


class AmiLink(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def action(self, fields: Mapping[str, str | Sequence[str]]) -> dict[str, Any]:
        """Send one action; its response's fields, and for list actions (CoreShowChannels,
        Status...) the listed events under ``"events"``. Never waits past its timeout."""
        ...

    def on_event(self, callback: EventCallback) -> None: ...

    def on_connected(self, callback: ConnectedCallback) -> None: ...


def event_time_ms(fields: Mapping[str, str], wall_clock: Callable[[], float]) -> int:
    """Asterisk's own time of an event, in ms: its `Timestamp` header (manager.conf
    `timestampevents = yes`, e.g. ``1795814126.348510``), read as text so no float rounding
    moves it by a millisecond; the local clock when the header is missing or unreadable."""
    stamp = fields.get("Timestamp", "")
    seconds, _, fraction = stamp.partition(".")
    if seconds.isdigit() and (not fraction or fraction.isdigit()):
        return int(seconds) * 1000 + int((fraction + "000")[:3])
    return int(wall_clock() * 1000)
