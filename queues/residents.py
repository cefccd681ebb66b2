"""Residents recognised across channels, with their consent, in Redis.

A resident is a random id standing for one person who agreed to be recognised: the identities
they were seen with (canonical contacts, `router.identity`), their consent and a history of their
interactions. Nothing is kept for anyone who did not consent: a contact whose identity belongs to
no consenting resident leaves no trace here. Every change is one Lua script (`resident_link`,
`resident_withdraw`), so linking, merging and withdrawing never leave half a resident behind.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from queues.errors import NotFoundError, StaleError
from queues.keys import Keys
from queues.scripts import Scripts

# Interactions kept per resident's history; the oldest beyond it are forgotten.
HISTORY_CAP = 200

# Reading the index and linking again when another contact changed it meanwhile.
_LINK_RETRIES = 10


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def new_resident_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Linked:
    resident_id: str | None  # None: not recognised (no consent, no consenting resident known)
    merged: int  # residents merged into it by this contact


@dataclass(frozen=True)
class Withdrawn:
    resident_id: str
    identities: int  # identities unlinked
    interactions: int  # history records removed
    withdrawn_ms: int


class ResidentStore:
    def __init__(
        self, redis: aioredis.Redis, keys: Keys, scripts: Scripts, *,
        history_cap: int = HISTORY_CAP,
    ) -> None:  # fmt: skip
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.history_cap = history_cap

    def _resident_keys(self, resident_id: str) -> list[str]:
        k = self.keys
        return [k.resident_ids(resident_id), k.resident_consent(resident_id),
                k.resident_history(resident_id)]

    async def link(
        self, ix_id: str, identities: Sequence[str], *, consent: bool, via: str
    ) -> Linked:
        """Record `ix_id` for the resident its identities belong to.

        With `consent`, every identity is linked to one resident (a new one, or the one that
        consented first when they belonged to several, which absorbs the others). Without it,
        pass only the identity the contact came from: the interaction joins the history of the
        resident it belongs to, if any, and nothing else is written.
        """
        identities = list(dict.fromkeys(identities))
        if not identities:
            return Linked(None, 0)
        k = self.keys
        for tries in range(1, _LINK_RETRIES + 1):
            read = [_s(r) if r is not None else ""
                    for r in await self.redis.hmget(k.resident_index, identities)]
            if not consent and not any(read):
                return Linked(None, 0)  # no one who consented: nothing to write, no script
            candidates = [*dict.fromkeys(r for r in read if r), new_resident_id()]
            keys = [k.ix(ix_id), k.resident_index, k.resident_of_ix]
            for rid in candidates:
                keys += self._resident_keys(rid)
            args = [ix_id, "1" if consent else "0", via, self.history_cap, len(identities),
                    *identities, *read, *candidates]
            try:
                res = await self.scripts.call("resident_link", keys, args)
            except StaleError:
                if tries == _LINK_RETRIES:
                    raise
                continue
            rid = _s(res[0])
            return Linked(rid or None, int(res[1]))
        raise AssertionError("unreachable")

    async def withdraw(self, resident_id: str) -> Withdrawn:
        """Unlink every identity and history record of the resident; keep the consent record
        (consent 0, withdrawn_ms). Raises NotFoundError for an unknown resident."""
        k = self.keys
        res = await self.scripts.call(
            "resident_withdraw",
            [k.resident_index, k.resident_of_ix, *self._resident_keys(resident_id)],
            [resident_id],
        )
        return Withdrawn(resident_id, int(res[0]), int(res[1]), int(res[2]))

    async def withdraw_identity(self, identity: str) -> Withdrawn:
        """Withdraw for the resident `identity` belongs to (NotFoundError if none)."""
        for _ in range(_LINK_RETRIES):
            rid = await self.resident_of(identity)
            if rid is None:
                break
            try:
                return await self.withdraw(rid)
            except NotFoundError:
                continue  # merged into another resident meanwhile: look it up again
        raise NotFoundError(f"no resident with identity {identity}")

    # --- reads --------------------------------------------------------------------------

    async def resident_of(self, identity: str) -> str | None:
        rid = await self.redis.hget(self.keys.resident_index, identity)
        return _s(rid) if rid else None

    async def resident_of_interaction(self, ix_id: str) -> str | None:
        rid = await self.redis.hget(self.keys.resident_of_ix, ix_id)
        return _s(rid) if rid else None

    async def identities(self, resident_id: str) -> set[str]:
        return {_s(i) for i in await self.redis.smembers(self.keys.resident_ids(resident_id))}

    async def consent(self, resident_id: str) -> dict[str, str]:
        """The consent record: consent, since_ms, via, renewed_ms, withdrawn_ms ({} unknown)."""
        data = await self.redis.hgetall(self.keys.resident_consent(resident_id))
        return {_s(a): _s(b) for a, b in data.items()}

    async def history(self, resident_id: str, limit: int = HISTORY_CAP) -> list[tuple[str, int]]:
        """(interaction id, created_ms) of the resident's interactions, newest first."""
        rows = await self.redis.zrevrange(
            self.keys.resident_history(resident_id), 0, max(0, limit - 1), withscores=True
        )
        return [(_s(ix), int(score)) for ix, score in rows]
