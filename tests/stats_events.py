"""Write synthetic events into `cl:events` exactly as docs/events.md defines them.

Each builder returns the stream fields (all strings) in the order the Lua scripts write them;
`Events.add` XADDs them with the id `<t>-<n>`, so the stream id time equals the event time as it
does when a script appends (abandons may carry an earlier `t`: pass `id_ms`).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

WARSAW = ZoneInfo("Europe/Warsaw")


def local_ms(text: str, tz: ZoneInfo = WARSAW) -> int:
    """Epoch ms of a city-local ISO time, e.g. "2026-03-10T10:00:00"."""
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp() * 1000)


def _common(ev: str, t: int, queue: str, ix: str, agent: str, channel: str) -> dict[str, str]:
    return {"ev": ev, "t": str(t), "queue": queue, "ix": ix, "agent": agent, "channel": channel}


def _s(**fields: object) -> dict[str, str]:
    return {k: str(v) for k, v in fields.items()}


def enterqueue(
    t: int,
    ix: str,
    queue: str,
    channel: str = "voice",
    *,
    first: bool = True,
    pos: int = 1,
    ref: str = "2026-000001",
    priority: int = 0,
) -> dict[str, str]:
    return _common("ENTERQUEUE", t, queue, ix, "", channel) | _s(
        ref=ref if first else "", priority=priority, first=1 if first else 0, pos=pos
    )


def offer(
    t: int, ix: str, queue: str, agent: str, wait_ms: int, channel: str = "voice", attempt: int = 1
) -> dict[str, str]:
    return _common("OFFER", t, queue, ix, agent, channel) | _s(wait_ms=wait_ms, attempt=attempt)


def ringnoanswer(
    t: int,
    ix: str,
    queue: str,
    agent: str,
    ring_ms: int,
    reason: str = "timeout",
    channel: str = "voice",
) -> dict[str, str]:
    return _common("RINGNOANSWER", t, queue, ix, agent, channel) | _s(
        ring_ms=ring_ms, reason=reason
    )


def connect(
    t: int,
    ix: str,
    queue: str,
    agent: str,
    wait_ms: int,
    total_wait_ms: int | None = None,
    ring_ms: int = 2000,
    channel: str = "voice",
) -> dict[str, str]:
    total = wait_ms if total_wait_ms is None else total_wait_ms
    return _common("CONNECT", t, queue, ix, agent, channel) | _s(
        wait_ms=wait_ms, total_wait_ms=total, ring_ms=ring_ms
    )


def complete(
    t: int,
    ix: str,
    queue: str,
    agent: str,
    wait_ms: int,
    talk_ms: int,
    side: str = "caller",
    channel: str = "voice",
) -> dict[str, str]:
    ev = "COMPLETECALLER" if side == "caller" else "COMPLETEAGENT"
    return _common(ev, t, queue, ix, agent, channel) | _s(wait_ms=wait_ms, talk_ms=talk_ms)


def wrapupend(
    t: int,
    ix: str,
    queue: str,
    agent: str,
    wrapup_ms: int,
    by: str = "timer",
    channel: str = "voice",
    disposition: str = "",
    note: str = "",
) -> dict[str, str]:
    return _common("WRAPUPEND", t, queue, ix, agent, channel) | _s(
        wrapup_ms=wrapup_ms, by=by, disposition=disposition, note=note
    )


def abandon(
    t: int,
    ix: str,
    queue: str,
    wait_ms: int,
    total_wait_ms: int | None = None,
    *,
    pos: int = 1,
    origpos: int = 1,
    short_abandon_ms: int = 5000,
    during: str = "queued",
    agent: str = "",
    channel: str = "voice",
) -> dict[str, str]:
    total = wait_ms if total_wait_ms is None else total_wait_ms
    return _common("ABANDON", t, queue, ix, agent, channel) | _s(
        wait_ms=wait_ms,
        total_wait_ms=total,
        pos=pos,
        origpos=origpos,
        short=1 if wait_ms < short_abandon_ms else 0,
        during=during,
    )


def exitwithtimeout(
    t: int,
    ix: str,
    queue: str,
    wait_ms: int,
    total_wait_ms: int | None = None,
    *,
    pos: int = 1,
    origpos: int = 1,
    overflow: str = "",
    channel: str = "voice",
) -> dict[str, str]:
    total = wait_ms if total_wait_ms is None else total_wait_ms
    return _common("EXITWITHTIMEOUT", t, queue, ix, "", channel) | _s(
        wait_ms=wait_ms, total_wait_ms=total, pos=pos, origpos=origpos, overflow=overflow
    )


def transfer(
    t: int,
    ix: str,
    queue: str,
    agent: str,
    target_queue: str,
    *,
    from_state: str = "connected",
    wait_ms: int = 0,
    talk_ms: int = 0,
    target_agent: str = "",
    keep_position: int = 1,
    channel: str = "voice",
    note: str = "",
    by: str = "",
) -> dict[str, str]:
    return _common("TRANSFER", t, queue, ix, agent, channel) | _s(
        from_state=from_state,
        target_queue=target_queue,
        target_agent=target_agent,
        wait_ms=wait_ms,
        talk_ms=talk_ms,
        keep_position=keep_position,
        note=note,
        by=by,
    )


def escalate(
    t: int,
    ix: str,
    queue: str,
    step: int = 0,
    from_queue: str = "",
    priority: int = 1,
    skills: str = "{}",
    channel: str = "voice",
) -> dict[str, str]:
    return _common("ESCALATE", t, queue, ix, "", channel) | _s(
        step=step, from_queue=from_queue or queue, priority=priority, skills=skills
    )


def deflected(
    t: int, ix: str, queue: str = "", channel: str = "voice", reason: str = "ivr-info"
) -> dict[str, str]:
    return _common("DEFLECTED", t, queue, ix, "", channel) | _s(ref="2026-000009", reason=reason)


def message(
    t: int, ix: str, queue: str, sender: str, size: int, agent: str = "", channel: str = "chat"
) -> dict[str, str]:
    return _common("MESSAGE", t, queue, ix, agent, channel) | {"from": sender, "size": str(size)}


def addmember(t: int, agent: str, state: str = "ready", reason: str = "") -> dict[str, str]:
    return _common("ADDMEMBER", t, "", "", agent, "") | _s(state=state, reason=reason)


def removemember(t: int, agent: str, state_ms: int) -> dict[str, str]:
    return _common("REMOVEMEMBER", t, "", "", agent, "") | _s(state_ms=state_ms)


def pause(t: int, agent: str, reason: str, state_ms: int) -> dict[str, str]:
    return _common("PAUSE", t, "", "", agent, "") | _s(reason=reason, state_ms=state_ms)


def unpause(t: int, agent: str, state_ms: int) -> dict[str, str]:
    return _common("UNPAUSE", t, "", "", agent, "") | _s(state_ms=state_ms)


class Events:
    """Appends events to the stream with ids `<ms>-<n>` (strictly increasing)."""

    def __init__(self, redis: aioredis.Redis, stream: str = "cl:events") -> None:
        self.redis = redis
        self.stream = stream
        self.last = (0, 0)

    async def add(self, fields: dict[str, str], id_ms: int | None = None) -> str:
        ms = max(int(fields["t"]) if id_ms is None else id_ms, self.last[0])
        seq = self.last[1] + 1 if ms == self.last[0] else 0
        self.last = (ms, seq)
        return await self.redis.xadd(self.stream, fields, id=f"{ms}-{seq}")

    async def add_all(self, *events: dict[str, str]) -> str:
        last = ""
        for fields in events:
            last = await self.add(fields)
        return last
