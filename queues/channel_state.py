"""What channel adapters remember between contacts, in Redis, so any cityline process (and a
restarted one) carries on where another left off.

Small generic primitives, each scoped by channel: one-time claims (webhook and message ids seen),
fixed-window counters (rate limits), links from a channel's conversation key to an interaction,
flags (opt-outs), fragments of messages arriving in parts, and a persistent outbox whose jobs
survive a restart. Delivery records of what was sent to a resident belong to the interaction.
Channels reach these through `router.channel_state`, never directly.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from queues.keys import Keys


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# Taking due outbox jobs: each is pushed a lease into the future in the same atomic step, so two
# processes draining one outbox never both take it, and a process that dies while sending leaves
# the job to be taken again when the lease runs out (at least once, never lost).
_TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[3]), id)
    out[#out + 1] = id
    out[#out + 1] = job
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""


# Writing a delivery record never steps back: a gateway's receipt ("delivered") may arrive before
# the sender has recorded "sent"; the later, lower status is then dropped.
_SET_DELIVERY = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local ok, old = pcall(cjson.decode, cur)
  if ok and type(old) == 'table' then
    local ranks = cjson.decode(ARGV[4])
    local old_rank = ranks[tostring(old.status)] or 0
    if old_rank > tonumber(ARGV[3]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], 7776000)
return 1
"""

# How far along a delivery is: a record is never replaced by one of a lower rank. What the
# peer reports (a receipt: delivered, undelivered) outranks what we concluded ourselves (failed,
# opted out): a job sent again after a crash that then fails does not hide that the first try
# reached the phone.
DELIVERY_RANKS = {"queued": 0, "retrying": 1, "sending": 1, "sent": 2, "failed": 3,
                  "opted_out": 3, "delivered": 4, "undelivered": 4}


class ChannelStateStore:
    """Redis operations behind `router.channel_state.ChannelState`."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._take_due = redis.register_script(_TAKE_DUE)
        self._set_delivery = redis.register_script(_SET_DELIVERY)

    # --- one-time claims ----------------------------------------------------------------

    async def claim(self, channel: str, kind: str, item: str, ttl_s: float) -> bool:
        key = self.keys.claim(channel, kind, item)
        return bool(await self.redis.set(key, "1", nx=True, ex=max(1, int(ttl_s))))

    async def claimed(self, channel: str, kind: str, item: str) -> bool:
        return bool(await self.redis.exists(self.keys.claim(channel, kind, item)))

    async def release(self, channel: str, kind: str, item: str) -> None:
        await self.redis.delete(self.keys.claim(channel, kind, item))

    # --- fixed-window counters ----------------------------------------------------------

    async def hit(self, channel: str, key: str, window_s: float, now_s: float) -> int:
        window = int(now_s // window_s)
        k = self.keys.rate(channel, key, window)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(k)
            pipe.expire(k, max(1, int(window_s * 2)))
            count, _ = await pipe.execute()
        return int(count)

    # --- links --------------------------------------------------------------------------

    async def link(self, channel: str, kind: str, key: str) -> dict[str, str]:
        data = await self.redis.hgetall(self.keys.link(channel, kind, key))
        return {_s(k): _s(v) for k, v in data.items()}

    async def set_link(self, channel: str, kind: str, key: str, fields: dict[str, str],
                       ttl_s: float) -> None:
        k = self.keys.link(channel, kind, key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k, mapping=fields)
            pipe.expire(k, max(1, int(ttl_s)))
            await pipe.execute()

    async def drop_link(self, channel: str, kind: str, key: str) -> None:
        await self.redis.delete(self.keys.link(channel, kind, key))

    # --- flags --------------------------------------------------------------------------

    async def set_flag(self, channel: str, flag: str, key: str, on: bool) -> None:
        k = self.keys.flag(channel, flag)
        await (self.redis.sadd(k, key) if on else self.redis.srem(k, key))

    async def has_flag(self, channel: str, flag: str, key: str) -> bool:
        return bool(await self.redis.sismember(self.keys.flag(channel, flag), key))

    # --- fragments ----------------------------------------------------------------------

    async def add_fragment(self, channel: str, group: str, index: int, total: int,
                           fragment: dict[str, Any], deadline_s: float) -> int:
        key = self.keys.fragments(channel, group)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, str(index), json.dumps(fragment))
            pipe.hset(key, "_total", str(total))
            pipe.expire(key, 86_400)
            pipe.zadd(self.keys.fragments_due(channel), {group: deadline_s}, nx=True)
            pipe.hlen(key)
            *_, n = await pipe.execute()
        return int(n) - 1

    async def take_fragments(self, channel: str, group: str
                             ) -> tuple[int, dict[int, dict[str, Any]]] | None:
        if not await self.redis.zrem(self.keys.fragments_due(channel), group):
            return None
        key = self.keys.fragments(channel, group)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(key)
            pipe.delete(key)
            raw, _ = await pipe.execute()
        data = {_s(k): _s(v) for k, v in raw.items()}
        total = int(data.pop("_total", "0") or 0)
        return total, {int(k): json.loads(v) for k, v in data.items()}

    async def overdue_fragments(self, channel: str, now_s: float) -> list[str]:
        due = await self.redis.zrangebyscore(self.keys.fragments_due(channel), 0, now_s)
        return [_s(g) for g in due]

    # --- outbox -------------------------------------------------------------------------

    async def put_job(self, channel: str, job_id: str, job: dict[str, Any], due_s: float) -> None:
        """Store (or update) a job and schedule it at `due_s`."""
        jobs, due = self.keys.outbox_jobs(channel), self.keys.outbox_due(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(jobs, job_id, json.dumps(job))
            pipe.zadd(due, {job_id: due_s})
            await pipe.execute()

    async def take_due(self, channel: str, now_s: float, limit: int, lease_s: float
                       ) -> list[tuple[str, dict[str, Any]]]:
        keys = [self.keys.outbox_due(channel), self.keys.outbox_jobs(channel)]
        flat = await self._take_due(keys=keys, args=[repr(now_s), limit, repr(lease_s)])
        return [(_s(flat[i]), json.loads(_s(flat[i + 1]))) for i in range(0, len(flat), 2)]

    async def finish_job(self, channel: str, job_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.outbox_jobs(channel), job_id)
            pipe.zrem(self.keys.outbox_due(channel), job_id)
            await pipe.execute()

    async def pending_jobs(self, channel: str) -> int:
        return int(await self.redis.hlen(self.keys.outbox_jobs(channel)))

    async def next_due(self, channel: str) -> float | None:
        head = await self.redis.zrange(self.keys.outbox_due(channel), 0, 0, withscores=True)
        return float(head[0][1]) if head else None

    # --- delivery records ---------------------------------------------------------------

    async def set_delivery(self, ix_id: str, item: str, record: dict[str, Any]) -> bool:
        """Write the record unless the stored one is further along (see DELIVERY_RANKS);
        False when it was dropped for that reason."""
        rank = DELIVERY_RANKS.get(str(record.get("status")), 0)
        done = await self._set_delivery(
            keys=[self.keys.deliveries(ix_id)],
            args=[item, json.dumps(record), rank, json.dumps(DELIVERY_RANKS)])
        return bool(done)

    async def deliveries(self, ix_id: str) -> dict[str, dict[str, Any]]:
        data = await self.redis.hgetall(self.keys.deliveries(ix_id))
        return {_s(k): json.loads(_s(v)) for k, v in data.items()}
