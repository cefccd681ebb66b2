"""The routing state transitions, one method per Lua script.

Callers pass decisions (which bucket, which agent, which timeouts); the scripts check and apply
them atomically and append the event. Nothing here knows the YAML config: the router turns
config into `Placement`s and milliseconds.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis

from queues.buckets import Placement
from queues.errors import NotFoundError, StaleError
from queues.keys import Keys
from queues.scripts import Scripts
from router.models import AgentProfile, Channel

# Methods that read a key name before calling their script re-read this often when the script
# finds the interaction moved meanwhile (StaleError).
_STALE_READ_RETRIES = 3

T = TypeVar("T")


def new_interaction_id() -> str:
    """Time-ordered (microseconds, hex) plus 40 random bits.

    Interactions enqueued in the same millisecond tie on score and Redis then orders them by
    member, so a time-ordered id keeps first-come-first-served within the millisecond.
    """
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


@dataclass(frozen=True)
class Enqueued:
    id: str
    ref: str
    enqueued_ms: int
    created: bool


@dataclass(frozen=True)
class Abandoned:
    ended_ms: int
    wait_ms: int
    short: bool


@dataclass(frozen=True)
class Blending:
    voice_with_open_text: bool = False
    text_during_voice: bool = False


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class RoutingStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys | None = None,
        events_maxlen: int = 5_000_000,
        tz_offset_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.events_maxlen = events_maxlen
        self.tz_offset_ms = tz_offset_ms  # city's UTC offset now: reference numbers' year
        self.scripts = Scripts(redis)

    async def load_scripts(self) -> None:
        await self.scripts.load()

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self.scripts.call(name, keys, args)

    async def now_ms(self) -> int:
        sec, usec = await self.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    # --- interactions -------------------------------------------------------------------

    async def enqueue(
        self,
        placement: Placement,
        fields: dict[str, Any],
        *,
        escalate_after_ms: int = 0,
        max_wait_ms: int = 0,
        external_key: str = "",
        ix_id: str | None = None,
    ) -> Enqueued:
        """Create an interaction and queue it (`fields`: language, resident, subject, body...)."""
        k = self.keys
        ix_id = ix_id or new_interaction_id()
        data = {**fields, **placement.routing_fields(), "channel": placement.channel}
        if isinstance(data.get("meta"), dict):
            data["meta"] = json.dumps(data["meta"])
        res = await self._call(
            "enqueue",
            [k.ix(ix_id), k.bucket(placement.bucket_id), k.bucket_meta(placement.bucket_id),
             k.active_buckets, k.queue_buckets(placement.queue), k.due, k.events, k.ref_seq,
             k.ref_index, k.external_ids],
            [ix_id, placement.bucket_id, self.events_maxlen, self.tz_offset_ms(),
             escalate_after_ms, max_wait_ms, external_key, json.dumps(data),
             json.dumps(placement.meta())],
        )  # fmt: skip
        got_id, ref, enq, created = _s(res[0]), _s(res[1]), int(res[2]), bool(int(res[3]))
        if not created:
            ref, enq_s = await self.redis.hmget(k.ix(got_id), ["ref", "enqueued_ms"])
            return Enqueued(got_id, _s(ref or ""), int(enq_s or 0), False)
        return Enqueued(got_id, ref, enq, True)

    async def deflect(
        self, fields: dict[str, Any], reason: str, *, abandoned: bool = False
    ) -> Enqueued:
        """A contact that ended in self-service: served (DEFLECTED) or left (IVRABANDON)."""
        k = self.keys
        ix_id = new_interaction_id()
        res = await self._call(
            "deflect",
            [k.ix(ix_id), k.events, k.ref_seq, k.ref_index],
            [ix_id, json.dumps(fields), reason, self.tz_offset_ms(), self.events_maxlen,
             "abandoned" if abandoned else "deflected"],
        )
        return Enqueued(_s(res[0]), _s(res[1]), 0, True)

    async def reserve(
        self, ix_id: str, agent_id: str, bucket_id: str, offer_timeout_ms: int
    ) -> int:
        """Offer; returns the offer deadline (ms). Raises StaleError on a stale pick."""
        k = self.keys
        res = await self._call(
            "reserve",
            [k.ix(ix_id), k.bucket(bucket_id), k.active_buckets, k.agent(agent_id), k.available,
             k.offers, k.due, k.events, k.agent_work(agent_id)],
            [ix_id, agent_id, bucket_id, offer_timeout_ms, self.events_maxlen],
        )  # fmt: skip
        return int(res[1])

    async def reserve_many(
        self, picks: list[tuple[str, str, str, int]]
    ) -> list[int | Exception]:
        """Several offers (ix, agent, bucket, timeout) in one round trip; each result is the
        deadline or the refusal, as from `reserve`."""
        k = self.keys
        calls = [
            ([k.ix(ix_id), k.bucket(bucket_id), k.active_buckets, k.agent(agent_id), k.available,
              k.offers, k.due, k.events, k.agent_work(agent_id)],
             [ix_id, agent_id, bucket_id, timeout_ms, self.events_maxlen])
            for ix_id, agent_id, bucket_id, timeout_ms in picks
        ]  # fmt: skip
        replies = await self.scripts.call_many("reserve", calls)
        return [r if isinstance(r, Exception) else int(r[1]) for r in replies]

    async def accept(self, ix_id: str, agent_id: str, *, at_ms: int | None = None) -> int:
        """Connect; returns the exact wait in ms. `at_ms`: the channel's own time of answer."""
        k = self.keys
        res = await self._call(
            "accept",
            [k.ix(ix_id), k.agent(agent_id), k.offers, k.events],
            [ix_id, agent_id, self.events_maxlen, at_ms or 0],
        )
        return int(res[1])

    async def _offer_keys(self, ix_id: str, agent_id: str) -> list[str]:
        k = self.keys
        bucket = await self.redis.hget(k.ix(ix_id), "bucket")
        if bucket is None:
            raise NotFoundError(f"no interaction {ix_id}")
        return [k.ix(ix_id), k.bucket(_s(bucket)), k.active_buckets, k.agent(agent_id),
                k.available, k.offers, k.due, k.events, k.agent_work(agent_id)]  # fmt: skip

    async def reject(self, ix_id: str, agent_id: str, *, exclude_agent: bool = True) -> None:
        keys = await self._offer_keys(ix_id, agent_id)
        await self._call(
            "reject", keys, [ix_id, agent_id, self.events_maxlen, int(exclude_agent)]
        )

    async def offer_timeout(
        self,
        ix_id: str,
        agent_id: str,
        *,
        max_misses: int,
        pause_reason: str,
        at_ms: int | None = None,
    ) -> bool:
        """Expire an offer whose deadline passed, or - with `at_ms`, the channel's time - one
        whose ringing the channel reports failed (no answer, busy). True if the agent was
        paused for it."""
        keys = await self._offer_keys(ix_id, agent_id)
        res = await self._call(
            "offer_timeout",
            keys,
            [ix_id, agent_id, self.events_maxlen, max_misses, pause_reason, at_ms or 0],
        )
        return bool(int(res[1]))

    async def holder(self, ix_id: str) -> str:
        agent = await self.redis.hget(self.keys.ix(ix_id), "agent")
        if agent is None:
            raise NotFoundError(f"no interaction {ix_id}")
        return _s(agent)

    async def complete(
        self, ix_id: str, agent_id: str, *, side: str, wrapup_ms: int, at_ms: int | None = None,
        disposition: str = "", note: str = "",
    ) -> str:
        """End the conversation; returns the new state (`wrapup` or `closed`). `at_ms`: the
        channel's own time of hang-up; `disposition`/`note`: the outcome if already chosen."""
        k = self.keys
        res = await self._call(
            "complete",
            [k.ix(ix_id), k.agent(agent_id), k.wrapups, k.available, k.events,
             k.agent_work(agent_id)],
            [ix_id, agent_id, side, wrapup_ms, self.events_maxlen, at_ms or 0, disposition,
             note],
        )  # fmt: skip
        return _s(res[2])

    async def wrapup_end(
        self, ix_id: str, agent_id: str, *, by: str = "agent", disposition: str = "", note: str = ""
    ) -> None:
        k = self.keys
        await self._call(
            "wrapup_end",
            [k.ix(ix_id), k.agent(agent_id), k.wrapups, k.available, k.events,
             k.agent_work(agent_id)],
            [ix_id, agent_id, by, disposition, note, self.events_maxlen],
        )  # fmt: skip

    async def _read_then_call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt` (read key names, then call a script), reading again when the script
        finds the interaction moved between the read and the call (StaleError)."""
        for tries in range(1, _STALE_READ_RETRIES + 1):
            try:
                return await attempt()
            except StaleError:
                if tries == _STALE_READ_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def abandon(
        self, ix_id: str, *, short_abandon_ms: int, at_ms: int | None = None
    ) -> Abandoned:
        k = self.keys

        async def attempt() -> Abandoned:
            state, bucket, agent = await self.redis.hmget(k.ix(ix_id), ["state", "bucket", "agent"])
            if state is None:
                raise NotFoundError(f"no interaction {ix_id}")
            agent_id = _s(agent or "")
            res = await self._call(
                "abandon",
                [k.ix(ix_id), k.bucket(_s(bucket or "")), k.active_buckets, k.due, k.offers,
                 k.agent(agent_id), k.available, k.events, k.agent_work(agent_id)],
                [ix_id, at_ms or 0, short_abandon_ms, self.events_maxlen,
                 agent_id if _s(state) == "offered" else ""],
            )  # fmt: skip
            return Abandoned(int(res[0]), int(res[1]), bool(int(res[2])))

        return await self._read_then_call(attempt)

    async def transfer(
        self,
        ix_id: str,
        target: Placement,
        *,
        holder: str = "",
        keep_position: bool = True,
        escalate_after_ms: int = 0,
        max_wait_ms: int = 0,
        note: str = "",
        by: str = "",
    ) -> int:
        """Move to another queue/agent; returns the position in the new bucket."""
        k = self.keys
        bid = target.bucket_id

        async def attempt() -> int:
            bucket = await self.redis.hget(k.ix(ix_id), "bucket")
            if bucket is None:
                raise NotFoundError(f"no interaction {ix_id}")
            res = await self._call(
                "transfer",
                [k.ix(ix_id), k.bucket(_s(bucket)), k.active_buckets, k.bucket(bid),
                 k.bucket_meta(bid), k.queue_buckets(target.queue), k.due, k.agent(holder),
                 k.available, k.events, k.agent_work(holder)],
                [ix_id, holder, bid, json.dumps(target.routing_fields()),
                 json.dumps(target.meta()), int(keep_position), escalate_after_ms,
                 max_wait_ms, note, self.events_maxlen, by],
            )  # fmt: skip
            return int(res[1])

        return await self._read_then_call(attempt)

    async def escalate(
        self,
        ix_id: str,
        *,
        from_bucket: str,
        expected_step: int,
        target: Placement,
        next_escalation_after_ms: int,
        max_wait_ms: int,
    ) -> None:
        """Apply step `expected_step`; the delays count from entering the (new) queue."""
        k = self.keys
        bid = target.bucket_id
        await self._call(
            "escalate",
            [k.ix(ix_id), k.bucket(from_bucket), k.active_buckets, k.bucket(bid),
             k.bucket_meta(bid), k.queue_buckets(target.queue), k.due, k.events],
            [ix_id, expected_step, bid, json.dumps(target.routing_fields()),
             json.dumps(target.meta()), next_escalation_after_ms, max_wait_ms,
             self.events_maxlen, from_bucket],
        )  # fmt: skip

    async def reprioritise(self, ix_id: str, *, from_bucket: str, target: Placement,
                           by: str = "") -> int:
        """Move a waiting interaction to the bucket of its new priority, keeping its place in
        time and its timers; returns its position in that bucket."""
        k = self.keys
        bid = target.bucket_id
        res = await self._call(
            "reprioritise",
            [k.ix(ix_id), k.bucket(from_bucket), k.active_buckets, k.bucket(bid),
             k.bucket_meta(bid), k.queue_buckets(target.queue), k.due, k.events],
            [ix_id, bid, json.dumps({"priority": target.priority}), json.dumps(target.meta()),
             self.events_maxlen, from_bucket, by],
        )  # fmt: skip
        return int(res[1])

    async def max_wait(
        self,
        ix_id: str,
        *,
        from_bucket: str,
        overflow: Placement | None,
        escalate_after_ms: int = 0,
        max_wait_ms: int = 0,
    ) -> str:
        """Max wait reached: to the overflow placement, or end as `timeout`. Returns the state."""
        k = self.keys
        target = overflow or Placement(queue="", channel="")
        bid = target.bucket_id
        res = await self._call(
            "max_wait",
            [k.ix(ix_id), k.bucket(from_bucket), k.active_buckets, k.due, k.events,
             k.bucket(bid), k.bucket_meta(bid), k.queue_buckets(target.queue)],
            [ix_id, target.queue, bid, json.dumps(target.routing_fields()),
             json.dumps(target.meta()), escalate_after_ms, max_wait_ms, self.events_maxlen,
             from_bucket],
        )  # fmt: skip
        return _s(res[1])

    async def message(
        self, ix_id: str, *, sender: str, text: str, agent_id: str = "", extra: dict | None = None
    ) -> int:
        k = self.keys
        body = {"text": text, **(extra or {})}
        res = await self._call(
            "message",
            [k.ix(ix_id), k.messages(ix_id), k.events],
            [ix_id, sender, agent_id, json.dumps(body), self.events_maxlen],
        )
        return int(res[1])

    # --- agents -------------------------------------------------------------------------

    def _profile_fields(self, profile: AgentProfile, blending: Blending) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "name": profile.name,
            "skills": json.dumps(profile.skills, sort_keys=True),
            "line": profile.line,
            "endpoint": profile.endpoint,
            "blend_vt": int(blending.voice_with_open_text),
            "blend_tv": int(blending.text_during_voice),
        }
        # every channel, so a capacity removed from the profile drops to 0 instead of lingering
        for channel in Channel:
            fields[f"cap:{channel}"] = profile.capacity.get(channel, 0)
        return fields

    async def agent_login(
        self,
        profile: AgentProfile,
        blending: Blending,
        *,
        ready: bool = False,
        reason: str = "",
    ) -> None:
        k = self.keys
        await self._call(
            "agent_login",
            [k.agent(profile.id), k.agents, k.available, k.events],
            [profile.id, json.dumps(self._profile_fields(profile, blending)),
             "ready" if ready else "not_ready", reason, self.events_maxlen],
        )  # fmt: skip

    async def agent_profile(self, profile: AgentProfile, blending: Blending) -> None:
        k = self.keys
        await self._call(
            "agent_profile",
            [k.agent(profile.id), k.agents, k.available],
            [profile.id, json.dumps(self._profile_fields(profile, blending))],
        )

    async def agent_ready(self, agent_id: str) -> None:
        k = self.keys
        await self._call(
            "agent_ready",
            [k.agent(agent_id), k.available, k.events],
            [agent_id, self.events_maxlen],
        )

    async def agent_not_ready(self, agent_id: str, reason: str) -> None:
        k = self.keys
        await self._call(
            "agent_not_ready",
            [k.agent(agent_id), k.available, k.events],
            [agent_id, reason, self.events_maxlen],
        )

    async def agent_logout(self, agent_id: str) -> None:
        k = self.keys
        await self._call(
            "agent_logout",
            [k.agent(agent_id), k.available, k.events, k.agent_work(agent_id)],
            [agent_id, self.events_maxlen],
        )

    # --- reads --------------------------------------------------------------------------

    async def interaction(self, ix_id: str) -> dict[str, str]:
        data = await self.redis.hgetall(self.keys.ix(ix_id))
        if not data:
            raise NotFoundError(f"no interaction {ix_id}")
        return {_s(a): _s(b) for a, b in data.items()}

    async def placement_of(self, bucket_id: str) -> Placement:
        """The placement a bucket stands for (written once when it was first used)."""
        meta = await self.redis.hgetall(self.keys.bucket_meta(bucket_id))
        if not meta:
            raise NotFoundError(f"no bucket {bucket_id}")
        return Placement.from_meta({_s(a): _s(b) for a, b in meta.items()})

    async def by_ref(self, ref: str) -> dict[str, str]:
        ix_id = await self.redis.hget(self.keys.ref_index, ref)
        if ix_id is None:
            raise NotFoundError(f"no interaction with reference {ref}")
        return await self.interaction(_s(ix_id))

    async def agent(self, agent_id: str) -> dict[str, str]:
        data = await self.redis.hgetall(self.keys.agent(agent_id))
        if not data:
            raise NotFoundError(f"no agent {agent_id}")
        return {_s(a): _s(b) for a, b in data.items()}

    async def agent_work(self, agent_id: str) -> set[str]:
        return {_s(m) for m in await self.redis.smembers(self.keys.agent_work(agent_id))}

    async def message_at(self, ix_id: str, index: int) -> dict[str, Any] | None:
        """Message `index` (1-based) of the conversation, None if there is none."""
        raw = await self.redis.lindex(self.keys.messages(ix_id), index - 1)
        return json.loads(raw) if raw is not None else None

    async def messages(self, ix_id: str, start: int = 0) -> list[dict[str, Any]]:
        """The conversation from message `start` (0-based) on."""
        raw = await self.redis.lrange(self.keys.messages(ix_id), start, -1)
        return [json.loads(m) for m in raw]

    async def conversation_marks(self, ix_ids: Sequence[str]) -> dict[str, tuple[str, str, int]]:
        """(state, agent, number of messages) of each interaction, in one round trip: what a
        channel compares to notice that a conversation it shows has changed."""
        if not ix_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for ix_id in ix_ids:
                pipe.hmget(self.keys.ix(ix_id), ["state", "agent"])
                pipe.llen(self.keys.messages(ix_id))
            raw = await pipe.execute()
        return {
            ix_id: (_s(raw[2 * i][0] or ""), _s(raw[2 * i][1] or ""), int(raw[2 * i + 1]))
            for i, ix_id in enumerate(ix_ids)
        }

    async def position(self, ix_id: str) -> int:
        """1-based place of a waiting interaction in its queue (0 if it does not wait): those of
        higher priority, then those of equal priority who came first, in every bucket of the
        queue. Costs one ZCOUNT per bucket of the queue, never a scan of the waiting."""
        k = self.keys
        ix = await self.redis.hmget(k.ix(ix_id), ["state", "queue", "priority", "enqueued_ms"])
        state, queue, prio, enq = (_s(v) if v is not None else "" for v in ix)
        if state != "queued":
            return 0
        bucket_ids = [_s(b) for b in await self.redis.smembers(k.queue_buckets(queue))]
        async with self.redis.pipeline(transaction=False) as pipe:
            for bid in bucket_ids:
                pipe.hget(k.bucket_meta(bid), "priority")
            metas = await pipe.execute()
        mine = int(prio or 0)
        async with self.redis.pipeline(transaction=False) as pipe:
            for bid, p in zip(bucket_ids, metas, strict=True):
                if int(p or 0) > mine:
                    pipe.zcard(k.bucket(bid))
                elif int(p or 0) == mine:
                    pipe.zcount(k.bucket(bid), "-inf", f"({enq}")
                    # same millisecond: Redis orders ties by member, so do we
                    pipe.zrangebyscore(k.bucket(bid), enq, enq)
            replies = await pipe.execute()
        ahead = sum(
            sum(1 for m in r if _s(m) < ix_id) if isinstance(r, list) else int(r) for r in replies
        )
        return ahead + 1

    async def by_external(self, external_key: str) -> str | None:
        """The interaction an external id (e.g. ``voice:<Asterisk uniqueid>``) created."""
        ix_id = await self.redis.hget(self.keys.external_ids, external_key)
        return _s(ix_id) if ix_id is not None else None

    async def active_for_channel(self, channel: str) -> list[dict[str, str]]:
        """Every interaction of `channel` still waiting or with an agent (queued, offered,
        connected). Reads all waiting ones: meant for a channel's recovery after an outage,
        not for a hot path."""
        k = self.keys
        ids: set[str] = set()
        for bid in await self.redis.smembers(k.active_buckets):
            if await self.redis.hget(k.bucket_meta(bid), "channel") == channel:
                ids.update(_s(m) for m in await self.redis.zrange(k.bucket(_s(bid)), 0, -1))
        for agent in await self.redis.smembers(k.agents):
            ids.update(_s(m) for m in await self.redis.smembers(k.agent_work(_s(agent))))
        out = []
        for ix_id in sorted(ids):
            ix = {_s(a): _s(b) for a, b in (await self.redis.hgetall(k.ix(ix_id))).items()}
            if ix.get("channel") == channel and ix.get("state") in (
                "queued", "offered", "connected"
            ):
                out.append(ix)
        return out

    async def attach_meta(self, ix_id: str, meta: dict[str, Any]) -> bool:
        res = await self._call("attach_meta", [self.keys.ix(ix_id)], [json.dumps(meta)])
        return bool(int(res))

    async def kb_answer(self, ix_id: str, agent_id: str, card_id: str) -> tuple[int, bool, str]:
        """The agent answered from knowledge card `card_id` (KBANSWER): (time, whether it is the
        interaction's first card, its state: connected or wrapup)."""
        k = self.keys
        res = await self._call(
            "kb_answer", [k.ix(ix_id), k.events], [ix_id, agent_id, card_id, self.events_maxlen]
        )
        return int(res[0]), bool(int(res[1])), _s(res[2])

    async def request_callback(self, ix_id: str, number: str) -> bool:
        res = await self._call("callback", [self.keys.ix(ix_id)], [number])
        return bool(int(res))

    async def announce(self, ix_id: str, position: int, wait_ms: int) -> bool:
        res = await self._call("announce", [self.keys.ix(ix_id)], [position, wait_ms])
        return bool(int(res))

    async def dispatch_lease(self, name: str, ttl_ms: int) -> bool:
        """Take or renew the planning lease; True while `name` holds it."""
        res = await self._call("dispatch_lease", [self.keys.dispatch_lease], [name, ttl_ms])
        return bool(int(res))

    async def drop_stray_timer(self, zset: str, ix_id: str, expected_state: str) -> bool:
        keys = [self.keys.ix(ix_id), zset]
        res = await self._call("timer_cleanup", keys, [ix_id, expected_state])
        return bool(int(res))
