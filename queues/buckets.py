"""Where a waiting interaction sits: its queue plus everything that decides who may take it.

Interactions with the same queue, channel, priority, required skills and target agent are
interchangeable for routing, so they share one bucket (a ZSET ordered by position time). The
bucket id is a digest of those fields, so equal placements always meet in the same bucket.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def skills_json(skills: Mapping[str, int]) -> str:
    return json.dumps({k: int(v) for k, v in sorted(skills.items())}, separators=(",", ":"))


@dataclass(frozen=True)
class Placement:
    queue: str
    channel: str
    priority: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)
    target_agent: str = ""
    queue_priority: int = 0

    @property
    def skills_json(self) -> str:
        return skills_json(self.skills)

    @property
    def bucket_id(self) -> str:
        ident = "|".join(
            [self.queue, self.channel, str(self.priority), self.skills_json, self.target_agent,
             str(self.queue_priority)]
        )  # fmt: skip
        return hashlib.blake2b(ident.encode(), digest_size=10).hexdigest()

    def meta(self) -> dict[str, Any]:
        """Immutable description stored once per bucket (read by dispatchers and statistics)."""
        return {
            "queue": self.queue,
            "channel": self.channel,
            "priority": self.priority,
            "skills": self.skills_json,
            "target_agent": self.target_agent,
            "queue_priority": self.queue_priority,
        }

    def routing_fields(self) -> dict[str, Any]:
        """The interaction hash fields that follow the placement."""
        return {
            "queue": self.queue,
            "priority": self.priority,
            "skills": self.skills_json,
            "target_agent": self.target_agent,
            "queue_priority": self.queue_priority,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, str]) -> Placement:
        return cls(
            queue=meta["queue"],
            channel=meta["channel"],
            priority=int(meta.get("priority", 0)),
            skills=json.loads(meta.get("skills") or "{}"),
            target_agent=meta.get("target_agent", ""),
            queue_priority=int(meta.get("queue_priority", 0)),
        )
