"""Redis side of the statistics: read the event stream after a cursor, apply folded batches.

The aggregator (router/stats.py) owns every rule about what an event counts for; this module
only moves data. `apply` runs `stats_apply.lua`, which writes a batch only if the cursor still
holds the id the batch was read after. Several aggregators may therefore run at once: each event
is counted by exactly one of them, and a loser of the race re-reads and finds nothing left to do
(or the next events).

Besides the interval hashes of `queues.keys`, the aggregator keeps two small kinds of its own
state here, written only by the same cursor-checked script, so they always agree with the
cursor:

- `<prefix>st:ix:<interaction>` HASH: how often the interaction was connected (`c`) and
  transferred (`x`) so far, for the per-channel counts (a resident's first answer counts once)
  and first-contact resolution. Deleted when the interaction ends; expires 30 days after its
  last event in case an end is never seen.
- `<prefix>st:ag:<agent>` HASH: the agent's state (`state`, `reason`) as of the cursor, so
  that the `state_ms` of PAUSE/UNPAUSE/REMOVEMEMBER is added to ready or paused time correctly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources

import redis.asyncio as aioredis

from queues.keys import Keys

# A folded interaction's state outlives a silence of this long (a forgotten e-mail) but not more.
IX_STATE_TTL_S = 30 * 86_400


@dataclass
class HashUpdate:
    """Changes to one hash: increments, assignments, or deletion; optionally indexed in a set."""

    key: str
    index: str | None = None
    ttl_s: int = 0
    incr: dict[str, int] = field(default_factory=dict)
    incr_float: dict[str, float] = field(default_factory=dict)
    assign: dict[str, str] = field(default_factory=dict)
    delete: bool = False

    def add(self, name: str, amount: int = 1) -> None:
        self.incr[name] = self.incr.get(name, 0) + amount

    def empty(self) -> bool:
        return not (self.delete or self.assign or any(self.incr.values()) or self.incr_float)


@dataclass(frozen=True)
class StreamEntry:
    id: str
    fields: dict[str, str]


def _stream_id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StatsStore:
    """The statistics' reads and the one cursor-checked write."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        source = resources.files("queues").joinpath("lua", "stats_apply.lua").read_text("utf-8")
        # redis-py's Script calls EVALSHA and loads the source again after a NOSCRIPT (restart)
        self._apply = redis.register_script(source)

    async def cursor(self) -> str:
        """Id of the last folded event; "" before the first fold."""
        return await self.redis.get(self.keys.stats_cursor) or ""

    async def read_after(self, cursor: str, count: int) -> list[StreamEntry]:
        """Up to `count` events after `cursor`, oldest first (exclusive start needs Redis 6.2)."""
        start = f"({cursor}" if cursor else "-"
        rows = await self.redis.xrange(self.keys.events, min=start, max="+", count=count)
        return [StreamEntry(entry_id, dict(fields)) for entry_id, fields in rows]

    async def wait_for_events(self, cursor: str, block_ms: int) -> bool:
        """Block until an event newer than `cursor` exists (or `block_ms` passes)."""
        found = await self.redis.xread({self.keys.events: cursor or "0-0"}, count=1, block=block_ms)
        return bool(found)

    async def apply(self, expected: str, new_cursor: str, updates: Iterable[HashUpdate]) -> bool:
        """Apply a batch if the cursor still equals `expected`; False on a conflict."""
        if expected and _stream_id_tuple(new_cursor) <= _stream_id_tuple(expected):
            raise ValueError("the new cursor must be after the expected one")
        keys: list[str] = [self.keys.stats_cursor]
        positions: dict[str, int] = {}

        def position(key: str) -> int:
            if key not in positions:
                keys.append(key)
                positions[key] = len(keys)  # Lua's KEYS are 1-based
            return positions[key]

        args: list[str | int | float] = [expected, new_cursor, 0]
        count = 0
        seen: set[str] = set()
        for u in updates:
            if u.empty():
                continue
            if u.key in seen:
                raise ValueError(f"hash {u.key} appears twice in one batch")
            seen.add(u.key)
            ops: list[str | int | float] = []
            if not u.delete:
                for name, amount in u.incr.items():
                    if amount:
                        ops += ["i", name, amount]
                for name, fvalue in u.incr_float.items():
                    ops += ["f", name, repr(float(fvalue))]
                for name, text in u.assign.items():
                    ops += ["s", name, text]
            index_at = position(u.index) if u.index and not u.delete else 0
            args += [position(u.key), index_at, u.ttl_s, 1 if u.delete else 0, len(ops) // 3]
            args += ops
            count += 1
        args[2] = count
        result = await self._apply(keys=keys, args=args)
        return int(result[0]) == 1

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, str]]:
        """HGETALL of many hashes in one round trip ({} for a missing one)."""
        if not keys:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return list(await pipe.execute())

    async def day_index(self, day: str) -> set[str]:
        """Names of the interval hashes written for a city-local day (YYYY-MM-DD)."""
        return set(await self.redis.smembers(self.keys.stats_day_index(day)))

    async def now_ms(self) -> int:
        """Redis' clock, the one clock every script uses."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000
