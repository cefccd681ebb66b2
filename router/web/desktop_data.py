"""What the agent desktop shows, as one JSON-ready view of ONE agent, and what wakes it up.

`read_view` reads the agent's own state and the interactions it holds (offered, connected,
in wrap-up) in three pipelined round trips, whatever the number of interactions. Nothing of an
interaction the agent does not hold is ever read into the view: the ids come from the agent's
own work set, and an interaction whose `agent` field names someone else (it moved between two
reads) is dropped.

The conversation itself is not in the view: the view carries, per interaction, the number of
messages and a signature of their delivery records (`msg_sig`); the page reads the
conversation through the JSON API (GET /api/v1/interactions/{id}/messages, which checks again
that the agent holds it) only when that signature changes.

`DesktopHub` is one reader of the event stream per process (plain XREAD BLOCK, no consumer
group: every process sees every event) that wakes the open desktops an event concerns - its
`agent` is theirs, or its `ix` is one they hold. Desktops also refresh every `REFRESH_S`
(delivery reports of the channels write no event; countdowns are computed in the browser from
the deadlines and the server's clock, so they do not need pushes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from queues.keys import Keys
from router.config import CitylineConfig
from router.hash_fields import as_int, json_object
from router.models import Channel
from router.web.wall_data import label

logger = logging.getLogger(__name__)

# Channels whose conversation the agent answers in a reply box; voice is a call.
TEXT_CHANNELS = frozenset(
    {Channel.chat, Channel.sms, Channel.email, Channel.telegram, Channel.webform}
)

# Outcome codes offered at wrap-up. The configuration has no dispositions section, so the
# desktop offers this short list (stored as the WRAPUPEND event's `disposition`).
DEFAULT_DISPOSITIONS: tuple[tuple[str, str], ...] = (
    ("resolved", "Resolved"),
    ("information_given", "Information given"),
    ("case_registered", "Case / report registered"),
    ("callback_needed", "Call back needed"),
    ("referred", "Referred to another office"),
    ("no_action", "No action needed"),
    ("spam", "Wrong number / spam"),
)

_IX_FIELDS = (
    "id", "ref", "channel", "queue", "state", "agent", "priority", "language", "topic",
    "resident", "resident_name", "subject", "body", "created_ms", "entered_ms", "offered_ms",
    "offer_deadline", "connected_ms", "talk_end_ms", "wrapup_until", "transfers",
    "transfer_note", "meta", "kb_card", "case",
)  # fmt: skip
HELD_STATES = frozenset({"offered", "connected", "wrapup"})
# How often an open desktop is refreshed without an event, seconds.
REFRESH_S = 2.0
# How long one blocking read of the event stream waits, ms.
BLOCK_MS = 1_000
CASE_EVENTS = frozenset({"CASECREATED", "CASESTATUS"})


def _s(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)




def shown_state(state: str, held: list[Mapping[str, Any]]) -> str:
    """ready / busy / wrapup / paused / offline, as the state bar colours the agent."""
    if state == "not_ready":
        return "paused"
    if state != "ready":
        return state or "offline"
    states = {ix["state"] for ix in held}
    if "connected" in states:
        return "busy"
    if "wrapup" in states:
        return "wrapup"
    return "ready"


def interaction_item(ix: Mapping[str, str], cfg: CitylineConfig, messages: int,
                     deliveries: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    queue = ix.get("queue", "")
    q = cfg.queues.get(queue)
    offered = as_int(ix.get("offered_ms"))
    deadline = as_int(ix.get("offer_deadline"))
    if not deadline and offered and q is not None:
        deadline = offered + int(q.offer_timeout_s * 1000)
    talk_end = as_int(ix.get("talk_end_ms"))
    wrapup_until = as_int(ix.get("wrapup_until"))
    if not wrapup_until and talk_end and q is not None:
        wrapup_until = talk_end + int(q.wrapup_s * 1000)
    channel = ix.get("channel", "")
    sig = hashlib.sha256(
        json.dumps(sorted(deliveries.items()), separators=(",", ":")).encode()
    ).hexdigest()[:16]
    return {
        "id": ix.get("id", ""),
        "ref": ix.get("ref", ""),
        "channel": channel,
        "text": channel in TEXT_CHANNELS,
        "queue": queue,
        "queue_label": label(q.labels, cfg, queue) if q else queue,
        "state": ix.get("state", ""),
        "priority": as_int(ix.get("priority")),
        "language": ix.get("language", ""),
        "topic": ix.get("topic", ""),
        "resident": ix.get("resident", ""),
        "resident_name": ix.get("resident_name", ""),
        "subject": ix.get("subject", ""),
        "body": ix.get("body", ""),
        "ivr_path": str(json_object(ix.get("meta", "")).get("ivr_path", "")),
        "transfers": as_int(ix.get("transfers")),
        "transfer_note": ix.get("transfer_note", ""),
        "kb_card": ix.get("kb_card", ""),  # answered from this knowledge card (KBANSWER)
        "case": ix.get("case", ""),  # the number of the case made of it (or linked to)
        "created_ms": as_int(ix.get("created_ms")),
        "entered_ms": as_int(ix.get("entered_ms")),
        "offered_ms": offered,
        "deadline_ms": deadline,
        "connected_ms": as_int(ix.get("connected_ms")),
        "talk_end_ms": talk_end,
        "wrapup_until_ms": wrapup_until,
        "has_wrapup": bool(q is not None and q.wrapup_s > 0),
        "messages": messages,
        "msg_sig": f"{messages}:{sig}",
    }


async def read_view(
    redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig, agent_id: str
) -> dict[str, Any]:
    """The desktop of `agent_id`: its state and the interactions it holds, nothing else."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hgetall(keys.agent(agent_id))
        pipe.smembers(keys.agent_work(agent_id))
        (sec, usec), agent_hash, work = await pipe.execute()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    agent = {_s(k): _s(v) for k, v in (agent_hash or {}).items()}
    ids = sorted(_s(i) for i in work)
    held: list[dict[str, Any]] = []
    if ids:
        async with redis.pipeline(transaction=False) as pipe:
            for ix_id in ids:
                pipe.hmget(keys.ix(ix_id), list(_IX_FIELDS))
                pipe.llen(keys.messages(ix_id))
                pipe.hgetall(keys.deliveries(ix_id))
            rows = await pipe.execute()
        for i in range(len(ids)):
            values, count, dlv = rows[3 * i], rows[3 * i + 1], rows[3 * i + 2]
            ix = {n: _s(v) for n, v in zip(_IX_FIELDS, values, strict=True)}
            # only what this agent holds now: the work set and the hash agree
            if ix["agent"] != agent_id or ix["state"] not in HELD_STATES:
                continue
            deliveries = {_s(k): _s(v) for k, v in (dlv or {}).items()}
            held.append(interaction_item(ix, cfg, int(count or 0), deliveries))
    held.sort(key=lambda item: (item["offered_ms"], item["id"]))
    state = agent.get("state") or "offline"
    reason = agent.get("reason", "") if state == "not_ready" else ""
    rc = cfg.reason_codes.get(reason)
    configured = cfg.agents.get(agent_id)
    capacity = {str(ch): n for ch, n in configured.capacity.items()} if configured else {}
    return {
        "now_ms": now_ms,
        "agent": {
            "id": agent_id,
            "name": configured.name if configured else agent_id,
            "state": state,
            "shown": shown_state(state, held),
            "reason": reason,
            "reason_label": (label(rc.labels, cfg, reason) if rc else reason) or "",
            "since_ms": as_int(agent.get("state_since")),
            "capacity": capacity,
            "load": {str(ch): as_int(agent.get(f"load:{ch}")) for ch in Channel},
        },
        "offers": [item for item in held if item["state"] == "offered"],
        "work": [item for item in held if item["state"] != "offered"],
    }


# --- waking the open desktops ------------------------------------------------------------------


@dataclass(eq=False)
class Subscription:
    """One open desktop stream: whose it is, what it holds, and the flag that wakes it."""

    agent_id: str
    holds: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)  # the case units it is a member of
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class DesktopHub:
    """One event-stream reader per process for every open desktop (started on first use)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.events_seen = 0
        # unit -> id of the last case event that touched its cases (made, moved, linked,
        # handed over): a change here is news for the unit's members' "My unit's cases"
        self.unit_marks: dict[str, str] = {}

    def subscribe(self, agent_id: str) -> Subscription:
        sub = Subscription(agent_id)
        self._subs.add(sub)
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def notify(self, agent_id: str, ix_id: str, units: frozenset[str] = frozenset()) -> None:
        for sub in self._subs:
            if ((agent_id and sub.agent_id == agent_id) or (ix_id and ix_id in sub.holds)
                    or (units and units & sub.units)):
                sub.wake.set()

    def cases_mark(self, units: set[str]) -> str:
        """What changed last in these units' cases, as seen by this process ("" nothing)."""
        return "|".join(f"{u}={self.unit_marks[u]}" for u in sorted(units) if u in self.unit_marks)

    async def _last_id(self) -> str:
        last = await self.redis.xrevrange(self.keys.events, count=1)
        return _s(last[0][0]) if last else "0-0"

    async def _run(self) -> None:
        last: str | None = None
        while not self._closed:
            try:
                if last is None:
                    last = await self._last_id()
                answer = await self.redis.xread({self.keys.events: last}, count=500,
                                                block=BLOCK_MS)  # fmt: skip
            except (RedisError, OSError) as exc:
                logger.warning("desktop: reading the event stream failed (%s); retrying", exc)
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in answer or []:
                for entry_id, fields in entries:
                    last = _s(entry_id)
                    self.events_seen += 1
                    data = {_s(k): _s(v) for k, v in fields.items()}
                    units: frozenset[str] = frozenset()
                    if data.get("ev") in CASE_EVENTS:
                        units = frozenset(u for u in (data.get("unit", ""),
                                                      data.get("from_unit", "")) if u)
                        for unit in units:
                            self.unit_marks[unit] = last
                    self.notify(data.get("agent", ""), data.get("ix", ""), units)

    async def close(self) -> None:
        """Stop reading and wake every stream (they see the stop flag and end)."""
        self._closed = True
        for sub in self._subs:
            sub.wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
