"""What the SMS channel must remember between webhooks: opt-outs, threads, seen message ids,
rate-limit windows, multi-part assemblies and outbound delivery status.

`OptOutRegistry` is the small interface the channel needs for opt-outs. `SmsRedisState` is the
ONE place in channels/sms that touches Redis directly (through `service.store.redis`), under
keys of its own (`<prefix>sms:...`). TODO(lead): channels should get a router API for this
(opt-outs and delivery status belong to the resident/interaction, not to one channel); move it
behind RoutingService and keep this interface.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

import redis.asyncio as aioredis

from queues.keys import Keys

SEEN_TTL_S = 3 * 86_400  # gateways retry a webhook for hours at most


class OptOutRegistry(Protocol):
    async def is_opted_out(self, number: str) -> bool: ...

    async def opt_out(self, number: str) -> None: ...

    async def opt_in(self, number: str) -> None: ...


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class SmsRedisState:
    """Direct Redis access of the SMS channel (see the module docstring: to be moved)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.p = f"{keys.prefix}sms:"

    # --- opt-outs (OptOutRegistry) --------------------------------------------------------

    async def is_opted_out(self, number: str) -> bool:
        return bool(await self.redis.sismember(f"{self.p}optout", number))

    async def opt_out(self, number: str) -> None:
        await self.redis.sadd(f"{self.p}optout", number)

    async def opt_in(self, number: str) -> None:
        await self.redis.srem(f"{self.p}optout", number)

    # --- webhook idempotency ------------------------------------------------------------

    async def seen(self, msg_id: str) -> bool:
        return bool(await self.redis.exists(f"{self.p}seen:{msg_id}"))

    async def claim(self, msg_id: str) -> bool:
        """True for the first caller with this gateway message id."""
        return bool(await self.redis.set(f"{self.p}seen:{msg_id}", "1", nx=True, ex=SEEN_TTL_S))

    async def release(self, msg_id: str) -> None:
        await self.redis.delete(f"{self.p}seen:{msg_id}")

    # --- rate limit ---------------------------------------------------------------------

    async def hit(self, number: str, now_s: float | None = None) -> int:
        """Count one inbound message of `number` in the current minute; returns the count."""
        minute = int((time.time() if now_s is None else now_s) // 60)
        key = f"{self.p}rate:{number}:{minute}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await pipe.execute()
        return int(count)

    # --- threads ------------------------------------------------------------------------

    async def thread(self, number: str) -> tuple[str, float] | None:
        data = await self.redis.hgetall(f"{self.p}thread:{number}")
        if not data:
            return None
        d = {_s(k): _s(v) for k, v in data.items()}
        return d.get("ix", ""), float(d.get("last", 0))

    async def set_thread(self, number: str, ix_id: str, at_s: float, ttl_s: float) -> None:
        key = f"{self.p}thread:{number}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"ix": ix_id, "last": repr(at_s)})
            pipe.expire(key, max(1, int(ttl_s) + 60))
            await pipe.execute()

    # --- multi-part assembly ------------------------------------------------------------

    async def add_part(
        self, ref: str, index: int, total: int, part: dict[str, str], deadline_s: float
    ) -> int:
        """Store one part; returns how many distinct parts of `ref` are stored now."""
        key = f"{self.p}parts:{ref}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(index), json.dumps(part))
            pipe.hset(key, "_total", str(total))
            pipe.expire(key, 86_400)
            pipe.zadd(f"{self.p}parts_due", {ref: deadline_s}, nx=True)
            pipe.hlen(key)
            *_, n = await pipe.execute()
        return int(n) - 1

    async def take_parts(self, ref: str) -> tuple[int, dict[int, dict[str, str]]] | None:
        """The parts of `ref`, for the one caller that wins the assembly; None for the others."""
        if not await self.redis.zrem(f"{self.p}parts_due", ref):
            return None
        key = f"{self.p}parts:{ref}"
        data = {_s(k): _s(v) for k, v in (await self.redis.hgetall(key)).items()}
        await self.redis.delete(key)
        total = int(data.pop("_total", "0") or 0)
        return total, {int(k): json.loads(v) for k, v in data.items()}

    async def overdue_parts(self, now_s: float) -> list[str]:
        return [_s(r) for r in await self.redis.zrangebyscore(f"{self.p}parts_due", 0, now_s)]

    # --- outbound delivery status -------------------------------------------------------

    async def claim_delivery(self, ix_id: str, msg_index: int, record: dict[str, Any]) -> bool:
        """True for the first sender of this agent message (the event feed is at least once)."""
        return bool(
            await self.redis.hsetnx(f"{self.p}dlv:{ix_id}", str(msg_index), json.dumps(record))
        )

    async def set_delivery(self, ix_id: str, msg_index: int, record: dict[str, Any]) -> None:
        key = f"{self.p}dlv:{ix_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(msg_index), json.dumps(record))
            pipe.expire(key, 30 * 86_400)
            await pipe.execute()

    async def deliveries(self, ix_id: str) -> dict[int, dict[str, Any]]:
        """Delivery status of every agent message of `ix_id` (by message index, 1-based)."""
        data = await self.redis.hgetall(f"{self.p}dlv:{ix_id}")
        return {int(_s(k)): json.loads(_s(v)) for k, v in data.items()}
