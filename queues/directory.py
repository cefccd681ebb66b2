"""The directory overlay in Redis: agents and queues that admins changed over the YAML file.

Plain storage, no judgement: `router.directory` validates a change against the whole effective
configuration, then writes it here with `directory_change.lua`, which also bumps the version
every process polls and appends a CONFIG event, in one atomic call. Values are the JSON of the
configuration entries (`AgentConfig`, `QueueConfig`) exactly as an admin set them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis

from queues.keys import Keys
from queues.scripts import Scripts

Kind = Literal["agent", "queue"]


@dataclass(frozen=True)
class Overlay:
    """Everything admins changed, as read at one `version`."""

    version: int = 0
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    removed_agents: frozenset[str] = frozenset()
    removed_queues: frozenset[str] = frozenset()


def _decode(raw: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, text in raw.items():
        try:
            value = json.loads(text)
        except ValueError:
            continue  # written by hand? router.directory reports entries it cannot use
        if isinstance(value, dict):
            out[name] = value
    return out


class DirectoryStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        scripts: Scripts | None = None,
        *,
        events_maxlen: int = 5_000_000,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts or Scripts(redis)
        self.events_maxlen = events_maxlen

    async def version(self) -> int:
        return int(await self.redis.get(self.keys.directory_version) or 0)

    async def read(self) -> Overlay:
        """The whole overlay in one transaction, so its parts and version agree."""
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(k.directory_version)
            pipe.hgetall(k.directory_agents)
            pipe.hgetall(k.directory_queues)
            pipe.smembers(k.directory_removed_agents)
            pipe.smembers(k.directory_removed_queues)
            version, agents, queues, gone_agents, gone_queues = await pipe.execute()
        return Overlay(
            version=int(version or 0),
            agents=_decode(agents),
            queues=_decode(queues),
            removed_agents=frozenset(gone_agents),
            removed_queues=frozenset(gone_queues),
        )

    async def change(
        self,
        kind: Kind,
        action: Literal["set", "remove", "reset"],
        name: str,
        *,
        expected_version: int,
        value: dict[str, Any] | None = None,
        in_base: bool = False,
        by: str = "",
    ) -> int:
        """Write one change; returns the new version. StaleError when the version moved on,
        BusyError when removing an agent who is signed in or holds work.

        `reset` drops the overlay entry (a change or a removal) so the file's definition
        applies again; for a name the file does not define (`in_base` false) that is a removal.
        """
        k = self.keys
        overlay, removed = (
            (k.directory_agents, k.directory_removed_agents)
            if kind == "agent"
            else (k.directory_queues, k.directory_removed_queues)
        )
        agent = name if kind == "agent" else "-"
        keys = [overlay, removed, k.directory_version, k.events, k.agent(agent),
                k.agent_work(agent), k.agents, k.available]  # fmt: skip
        args = [expected_version, kind, action, name,
                json.dumps(value or {}, sort_keys=True, ensure_ascii=False),
                "1" if in_base else "0", by, self.events_maxlen]  # fmt: skip
        return int(await self.scripts.call("directory_change", keys, args))

    async def waiting(self, queue: str) -> int:
        """How many interactions wait in `queue` now (one ZCARD per bucket it has used)."""
        buckets = sorted(await self.redis.smembers(self.keys.queue_buckets(queue)))
        if not buckets:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.zcard(self.keys.bucket(bucket))
            return sum(int(n) for n in await pipe.execute())
