"""Hand the router's events to the channel adapters that must act on them.

A voice adapter must ring the agent when the dispatcher offers a call (OFFER), stop the ringing
when the offer times out (RINGNOANSWER), move the caller on a TRANSFER; a chat adapter must
deliver an agent's MESSAGE. Each channel reads the event stream through its own Redis consumer
group (`ch:<channel>`), so with several cityline processes every event reaches exactly one
adapter instance of that channel, and an event whose handler failed stays pending and is
retried - also by another process, if this one died (XAUTOCLAIM).

Delivery is at least once: handlers must be idempotent (ringing an agent who already rings, or
hanging up a channel already gone, must be harmless). A handler that keeps failing is given up
after `MAX_DELIVERIES`, logged with the event, so one poisoned event cannot block a channel.

The same reader serves workers that are not channel adapters (the case notices,
`router.case_worker`): such a handler names its own group and says which events it `wants`, and
may have a fresh group start some way back in the stream (`replay_ms`) instead of at its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from queues.keys import Keys
from router.models import Event

logger = logging.getLogger(__name__)

# An event whose handler raised is retried after it has been pending this long...
RETRY_IDLE_MS = 5_000
# ... at most this many times in all, then logged and dropped.
MAX_DELIVERIES = 3
# How long one blocking read waits for new events before looking at pending ones again.
BLOCK_MS = 1_000


class EventHandler(Protocol):
    """What a channel adapter offers the feed: its channel, and what to do with an event."""

    channel: str

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None: ...


class EventWorker(Protocol):
    """A handler that is not a channel adapter: its own group, and the events it wants.

    `replay_ms`: a fresh group starts this far back in the stream (0: at its end, like a
    channel's), for a worker that must not miss what happened just before it first ran.
    """

    group: str
    replay_ms: int

    def wants(self, event: Event) -> bool: ...

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None: ...


class EventFeed:
    """One consumer-group reader for one channel's adapter (or one worker)."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, handler: EventHandler | EventWorker,
        consumer: str,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.keys = keys
        self.handler = handler
        self.consumer = consumer
        self.delivered = 0
        self.wants: Callable[[Event], bool]
        self.replay_ms = 0
        if callable(getattr(handler, "wants", None)):  # a worker: its group, its events
            worker: EventWorker = handler  # type: ignore[assignment]
            self.group = worker.group
            self.wants = worker.wants
            self.replay_ms = int(worker.replay_ms)
        else:  # a channel adapter: the events of its channel, in `ch:<channel>`
            channel = handler.channel  # type: ignore[union-attr]
            self.group = f"ch:{channel}"
            self.wants = lambda event: event.channel == channel

    async def ensure_group(self) -> None:
        """Create the group on first use: at the stream's end (history is not replayed), or
        `replay_ms` back by Redis' clock (stream ids are milliseconds of that clock)."""
        start = "$"
        if self.replay_ms > 0:
            seconds, micros = await self.redis.time()
            start = f"{max(0, seconds * 1000 + micros // 1000 - self.replay_ms)}-0"
        try:
            await self.redis.xgroup_create(self.keys.events, self.group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _handle(self, entry_id: str, fields: dict[str, str], deliveries: int) -> None:
        try:
            event = Event.from_stream(entry_id, fields)
        except Exception:
            logger.warning("%s: unreadable event %s dropped: %r", self.group, entry_id, fields)
            await self.redis.xack(self.keys.events, self.group, entry_id)
            return
        if self.wants(event):
            ix = await self.redis.hgetall(self.keys.ix(event.ix)) if event.ix else {}
            try:
                await self.handler.handle_event(event, ix)
                self.delivered += 1
            except Exception:
                if deliveries < MAX_DELIVERIES:
                    logger.warning("%s: handling %s %s failed (try %d); will retry",
                                   self.group, event.type, entry_id, deliveries, exc_info=True)
                    return  # stays pending: retried after RETRY_IDLE_MS
                logger.error("%s: giving up on %s %s after %d tries", self.group, event.type,
                             entry_id, deliveries, exc_info=True)
        await self.redis.xack(self.keys.events, self.group, entry_id)

    async def _retry_pending(self) -> None:
        """Take over events pending too long (our failed handlers, or a dead process's)."""
        _next, claimed, *_ = await self.redis.xautoclaim(
            self.keys.events, self.group, self.consumer, RETRY_IDLE_MS, "0-0", count=100
        )
        if not claimed:
            return
        pending = await self.redis.xpending_range(
            self.keys.events, self.group, min="-", max="+", count=len(claimed) + 100,
            consumername=self.consumer,
        )
        times = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        for entry_id, fields in claimed:
            if fields is None:  # trimmed from the stream meanwhile
                await self.redis.xack(self.keys.events, self.group, entry_id)
                continue
            await self._handle(entry_id, fields, times.get(entry_id, MAX_DELIVERIES))

    async def read_once(self, block_ms: int | None = BLOCK_MS) -> int:
        """Deliver what is new (waiting up to `block_ms`); returns the number of entries read."""
        reply = await self.redis.xreadgroup(
            self.group, self.consumer, {self.keys.events: ">"}, count=200, block=block_ms
        )
        n = 0
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                await self._handle(entry_id, fields, 1)
                n += 1
        return n

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        logger.info("%s: delivering events to %s (consumer %s)", self.group,
                    type(self.handler).__name__, self.consumer)
        loop = asyncio.get_running_loop()
        next_retry = loop.time()
        while not stop.is_set():
            await self.read_once()
            if loop.time() >= next_retry:
                await self._retry_pending()
                next_retry = loop.time() + RETRY_IDLE_MS / 1000
