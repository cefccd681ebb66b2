"""The memory a channel adapter keeps between contacts, bound to that channel.

Channels never touch Redis (channels -> router -> queues): `RoutingService.channel_state(name)`
hands an adapter one of these. Everything here is shared by every cityline process and survives
a restart, so a webhook retried to another process, a chat resumed after a restart or a reply
sent by whichever process reads the event behave the same.
"""

from __future__ import annotations

import time
from typing import Any

from queues.channel_state import ChannelStateStore


class ChannelState:
    """Claims, rate windows, conversation links, flags, fragments and delivery records of one
    channel (see `queues.channel_state` for how each is kept)."""

    def __init__(self, store: ChannelStateStore, channel: str) -> None:
        self.store = store
        self.channel = channel

    # one-time claims: True for the first caller with this id within `ttl_s`
    async def claim(self, kind: str, item: str, ttl_s: float) -> bool:
        return await self.store.claim(self.channel, kind, item, ttl_s)

    async def claimed(self, kind: str, item: str) -> bool:
        return await self.store.claimed(self.channel, kind, item)

    async def release(self, kind: str, item: str) -> None:
        """Forget a claim whose work failed, so a retry of the same input may succeed."""
        await self.store.release(self.channel, kind, item)

    async def hit(self, key: str, window_s: float = 60.0, now_s: float | None = None) -> int:
        """Count one contact of `key` in the current window; returns the count so far."""
        now = time.time() if now_s is None else now_s
        return await self.store.hit(self.channel, key, window_s, now)

    # links: the channel's conversation key -> interaction id and a few fields
    async def link(self, kind: str, key: str) -> dict[str, str]:
        return await self.store.link(self.channel, kind, key)

    async def set_link(self, kind: str, key: str, fields: dict[str, str], ttl_s: float) -> None:
        await self.store.set_link(self.channel, kind, key, fields, ttl_s)

    async def drop_link(self, kind: str, key: str) -> None:
        await self.store.drop_link(self.channel, kind, key)

    # flags: e.g. ("opted_out", "+48600100200")
    async def set_flag(self, flag: str, key: str, on: bool = True) -> None:
        await self.store.set_flag(self.channel, flag, key, on)

    async def has_flag(self, flag: str, key: str) -> bool:
        return await self.store.has_flag(self.channel, flag, key)

    # fragments of one message arriving in parts
    async def add_fragment(self, group: str, index: int, total: int, fragment: dict[str, Any],
                           deadline_s: float) -> int:
        """Store one fragment; returns how many distinct fragments of `group` are stored."""
        return await self.store.add_fragment(self.channel, group, index, total, fragment,
                                             deadline_s)

    async def take_fragments(self, group: str) -> tuple[int, dict[int, dict[str, Any]]] | None:
        """(total, fragments by index) for the one caller that wins the assembly, else None."""
        return await self.store.take_fragments(self.channel, group)

    async def overdue_fragments(self, now_s: float | None = None) -> list[str]:
        return await self.store.overdue_fragments(self.channel,
                                                  time.time() if now_s is None else now_s)

    # delivery records of what was sent to the resident, by conversation message index
    async def set_delivery(self, ix_id: str, item: str, record: dict[str, Any]) -> bool:
        """Record how sending went; a record never steps back (a receipt saying "delivered"
        is not replaced by the sender's later "sent"): False when dropped for that."""
        return await self.store.set_delivery(ix_id, item, {"channel": self.channel, **record})

    async def deliveries(self, ix_id: str) -> dict[str, dict[str, Any]]:
        return await self.store.deliveries(ix_id)
