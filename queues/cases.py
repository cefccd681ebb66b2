"""Cases (service requests) in Redis: one method per Lua script, and the reads.

Every change is one script (`case_create`, `case_status`, `case_assign`, `case_link`,
`case_photo`) that checks its preconditions, writes the case, its history, its indexes and
appends CASECREATED or CASESTATUS to the event stream in the same call; a refusal changes
nothing. Who may make a change (unit membership) is the router's decision (`router.cases`); the
scripts re-check that the case is still with the unit the caller checked (StaleError otherwise)
and that the transition is one of the allowed ones (StateError).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from queues.errors import NotFoundError
from queues.keys import Keys
from queues.scripts import Scripts

FINAL_STATUSES = frozenset({"completed", "rejected", "duplicate"})


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_case_id() -> str:
    """Time-ordered (microseconds, hex) plus 40 random bits, like interaction ids."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


@dataclass(frozen=True)
class Created:
    id: str
    number: str
    created_ms: int
    due_ms: int


@dataclass(frozen=True)
class Subscriber:
    """Who is told of a case's outcome, and how: `via` is the channel that carries the notice
    ("" when none can: the public status page only), `to` the address on it, `ix` the
    interaction whose delivery records show it."""

    ix: str
    via: str
    to: str
    language: str
    ref: str = ""
    channel: str = ""
    reply_to_id: str = ""  # e-mail: the Message-ID the notice answers (threading)
    declined: str = ""  # "1": the resident did not want to be told (no contact kept)

    @property
    def key(self) -> str:
        return f"ix:{self.ix}" if self.ix else f"contact:{self.via}:{self.to}"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Subscriber:
        data = json.loads(raw)
        return cls(**{k: str(data.get(k) or "") for k in cls.__dataclass_fields__})


class CaseStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, scripts: Scripts, *,
                 events_maxlen: int = 5_000_000,
                 tz_offset_ms: Callable[[], int] = lambda: 0) -> None:  # fmt: skip
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.events_maxlen = events_maxlen
        self.tz_offset_ms = tz_offset_ms  # the city's UTC offset: the year of case numbers

    # --- changes ------------------------------------------------------------------------

    async def create(
        self, fields: dict[str, str], *, prefix: str, target_ms: int, ix_id: str = "",
        subscriber: Subscriber | None = None, by: str = "", by_agent: str = "",
        note: str = "", public_note: str = "", case_id: str | None = None,
    ) -> Created:  # fmt: skip
        """A new case with `fields` (category, unit, description, address, lat, lon, photos,
        language, channel). ExistsError(number) when `ix_id` already has a case."""
        k = self.keys
        case_id = case_id or new_case_id()
        res = await self.scripts.call(
            "case_create",
            [k.case(case_id), k.case_history(case_id), k.case_subscribers(case_id),
             k.unit_cases(fields["unit"]), k.case_geo(fields["category"]), k.case_seq,
             k.case_numbers, k.events, k.ix(ix_id) if ix_id else k.case(case_id),
             k.case_by_created],
            [case_id, json.dumps(fields), self.tz_offset_ms(), prefix, target_ms,
             subscriber.key if subscriber else "", subscriber.to_json() if subscriber else "",
             ix_id, by, by_agent, note, public_note, self.events_maxlen],
        )  # fmt: skip
        return Created(case_id, _s(res[0]), int(res[1]), int(res[2]))

    async def set_status(
        self, case_id: str, status: str, *, unit: str, category: str, by: str = "",
        by_agent: str = "", note: str = "", public_note: str = "", duplicate_of: str = "",
    ) -> str:  # fmt: skip
        """Move the case to `status`; returns the status it had. `unit` is the unit the caller
        checked the permission against (StaleError if it moved meanwhile); `duplicate_of` the
        id of the open case a `duplicate` joins."""
        k = self.keys
        target = duplicate_of or case_id
        res = await self.scripts.call(
            "case_status",
            [k.case(case_id), k.case_history(case_id), k.unit_cases(unit), k.case_geo(category),
             k.events, k.case(target), k.case_subscribers(target), k.case_subscribers(case_id)],
            [case_id, status, unit, by, by_agent, note, public_note, self.events_maxlen,
             duplicate_of],
        )  # fmt: skip
        return _s(res[1])

    async def set_unit(
        self, case_id: str, *, from_unit: str, unit: str, by: str = "", by_agent: str = "",
        note: str = "", public_note: str = "",
    ) -> None:  # fmt: skip
        k = self.keys
        await self.scripts.call(
            "case_assign",
            [k.case(case_id), k.case_history(case_id), k.unit_cases(from_unit),
             k.unit_cases(unit), k.events],
            [case_id, from_unit, unit, by, by_agent, note, public_note, self.events_maxlen],
        )  # fmt: skip

    async def link(
        self, case_id: str, ix_id: str, subscriber: Subscriber | None, *, by: str = "",
        by_agent: str = "",
    ) -> bool:  # fmt: skip
        """Link interaction `ix_id` to the open case; False if it already was."""
        k = self.keys
        res = await self.scripts.call(
            "case_link",
            [k.case(case_id), k.case_subscribers(case_id), k.ix(ix_id), k.events],
            [case_id, ix_id, subscriber.key if subscriber else "",
             subscriber.to_json() if subscriber else "", by, by_agent, self.events_maxlen],
        )  # fmt: skip
        return bool(int(res[0]))

    async def add_photo(
        self, case_id: str, ref: str, *, unit: str, max_photos: int, by: str = "",
        by_agent: str = "", note: str = "",
    ) -> int:  # fmt: skip
        """Append photo reference `ref` to the case (`case_photo`); returns its index.
        StaleError if the case left `unit`, StateError when it has `max_photos` already."""
        k = self.keys
        res = await self.scripts.call(
            "case_photo",
            [k.case(case_id), k.case_history(case_id), k.events],
            [case_id, ref, unit, max_photos, by, by_agent, note, self.events_maxlen],
        )  # fmt: skip
        return int(res[1])

    # --- reads --------------------------------------------------------------------------

    async def get(self, case_id: str) -> dict[str, str]:
        data = await self.redis.hgetall(self.keys.case(case_id))
        if not data:
            raise NotFoundError(f"no case {case_id}")
        return {"id": case_id, **{_s(a): _s(b) for a, b in data.items()}}

    async def id_of(self, number: str) -> str:
        found = await self.redis.hget(self.keys.case_numbers, number)
        if found is None:
            raise NotFoundError(f"no case {number}")
        return _s(found)

    async def history(self, case_id: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in await self.redis.lrange(self.keys.case_history(case_id),
                                                                0, -1)]

    async def histories(self, case_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The status histories of `case_ids` in one round trip (for lists and reports)."""
        if not case_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for case_id in case_ids:
                pipe.lrange(self.keys.case_history(case_id), 0, -1)
            rows = await pipe.execute()
        return {cid: [json.loads(e) for e in row]
                for cid, row in zip(case_ids, rows, strict=True)}

    async def subscribers(self, case_id: str) -> list[Subscriber]:
        raw = await self.redis.hgetall(self.keys.case_subscribers(case_id))
        return [Subscriber.from_json(_s(v)) for _k, v in sorted(raw.items())]

    async def many(self, case_ids: Sequence[str]) -> list[dict[str, str]]:
        """The cases of `case_ids` in one round trip (missing ones left out)."""
        if not case_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for case_id in case_ids:
                pipe.hgetall(self.keys.case(case_id))
            rows = await pipe.execute()
        return [{"id": cid, **{_s(a): _s(b) for a, b in row.items()}}
                for cid, row in zip(case_ids, rows, strict=True) if row]

    async def created_ids(self, since_ms: float = float("-inf"), until_ms: float = float("inf"),
                          *, limit: int | None = None, newest_first: bool = False) -> list[str]:
        """Ids of the cases made in [since_ms, until_ms] (the creation-time index), oldest
        first or newest first, at most `limit` (None: all, read in pages)."""
        await self.index_created()
        key, page = self.keys.case_by_created, 5000
        lo = "-inf" if since_ms == float("-inf") else int(since_ms)
        hi = "+inf" if until_ms == float("inf") else int(until_ms)
        out: list[str] = []
        while limit is None or len(out) < limit:
            want = page if limit is None else min(page, limit - len(out))
            if newest_first:
                raw = await self.redis.zrevrangebyscore(key, hi, lo, start=len(out), num=want)
            else:
                raw = await self.redis.zrangebyscore(key, lo, hi, start=len(out), num=want)
            out.extend(_s(m) for m in raw)
            if len(raw) < want:
                break
        return out

    async def index_created(self) -> int:
        """Add to the creation-time index the cases made before it existed (an upgrade); returns
        how many. Two O(1) counts when there is nothing to do; ZADD NX with the case's own
        created_ms, so processes doing it at once agree."""
        k = self.keys
        if await self.redis.zcard(k.case_by_created) >= await self.redis.hlen(k.case_numbers):
            return 0
        ids = [_s(raw) async for _number, raw in self.redis.hscan_iter(k.case_numbers,
                                                                         count=1000)]
        added = 0
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            async with self.redis.pipeline(transaction=False) as pipe:
                for case_id in chunk:
                    pipe.hget(k.case(case_id), "created_ms")
                created = await pipe.execute()
            scores = {cid: int(t) for cid, t in zip(chunk, created, strict=True) if t is not None}
            if scores:
                added += int(await self.redis.zadd(k.case_by_created, scores, nx=True))
        return added

    async def unit_open(self, unit: str, limit: int = 500) -> list[str]:
        """Ids of the unit's open cases, the most urgent (earliest due) first."""
        return [_s(m) for m in await self.redis.zrange(self.keys.unit_cases(unit), 0, limit - 1)]

    async def near(self, category: str, lat: float, lon: float, radius_m: float,
                   limit: int = 20) -> list[tuple[str, float]]:
        """Open cases of `category` within `radius_m` of the point: (id, distance m), nearest
        first (GEOSEARCH, Redis 6.2+)."""
        raw = await self.redis.geosearch(
            self.keys.case_geo(category), longitude=lon, latitude=lat, radius=radius_m,
            unit="m", sort="ASC", count=limit, withdist=True,
        )
        return [(_s(member), float(dist)) for member, dist in raw]
