"""The dispatcher: offers waiting interactions to the best available agents, and runs the timers
(offer timeouts, wrap-up ends, escalation steps, max wait).

Event-driven: it blocks on the event stream and wakes when something that can create a match
happens (an interaction enqueued, an agent freed or ready), or when the next timer is due. It
never scans a queue: a matching round reads the head of each bucket and the available agents,
picks pairs with the queue's strategy, and commits each with the `reserve` script, which refuses
stale picks. So several dispatcher processes may run against one Redis at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from queues import errors as store_errors
from queues.snapshot import CHANNELS, AgentView, Head, Snapshot
from queues.store import RoutingStore
from router.config import CitylineConfig
from router.models import EventType
from router.strategies import RoundRobin, choose
from router.timers import Timers

logger = logging.getLogger(__name__)

# Events after which a new match may exist: something started waiting, or an agent got a free
# slot. OFFER, CONNECT, MESSAGE, PAUSE... cannot create one, and waking on our own OFFERs would
# double the work per decision. A round is only worth running when, as far as the events tell,
# someone may be waiting (see `_maybe_waiting`).
STARTS_WAITING = frozenset(
    {EventType.ENTERQUEUE, EventType.RINGNOANSWER, EventType.TRANSFER, EventType.ESCALATE}
)
FREES_AGENT = frozenset(
    {
        EventType.RINGNOANSWER,
        EventType.UNPAUSE,
        EventType.ADDMEMBER,
        EventType.WRAPUPEND,
        EventType.COMPLETECALLER,
        EventType.COMPLETEAGENT,
        EventType.ABANDON,
        EventType.TRANSFER,
    }
)
WAKE_EVENTS = STARTS_WAITING | FREES_AGENT
DEFAULT_OFFER_TIMEOUT_MS = 20_000
# Agents' profiles change without an event (admin edits): re-read every agent this often.
FULL_AGENT_REFRESH_S = 5.0
# How deep one round looks into each bucket: bounded by free agent slots, and by this.
MAX_DEPTH = 200
# Interactions whose position in the stream ends their offers (declined memory is dropped).
_SETTLED = frozenset({EventType.CONNECT, EventType.ABANDON, EventType.EXITWITHTIMEOUT,
                      EventType.TRANSFER})


@dataclass
class DispatchCounters:
    rounds: int = 0
    offers: int = 0
    stale: int = 0
    timers: int = 0
    standby: int = 0  # rounds skipped because another dispatcher held the planning lease


class Dispatcher:
    def __init__(self, store: RoutingStore, cfg: CitylineConfig, name: str = "dispatcher") -> None:
        self.store = store
        self.cfg = cfg
        self.name = name
        self.keys = store.keys
        self.snapshot = Snapshot(store.redis, store.keys)
        self.timers = Timers(store, cfg, self.snapshot)
        self.rr = RoundRobin()
        self.counters = DispatchCounters()
        self._lease_id = f"{name}-{secrets.token_hex(4)}"  # unique even for one name twice
        self._standby_until = 0.0  # monotonic time before which another holds the lease
        self._renew_at = 0.0  # monotonic time from which our own lease needs renewing
        self._last_id = "$"
        self._dirty_agents: set[str] = set()
        # interaction -> agents who refused it (learnt from events and refusals; the reserve
        # script has the final word), so a refused agent is not picked again and again
        self._declined: dict[str, set[str]] = {}
        self._full_refresh_at = 0.0
        self._depth: dict[str, int] = {}  # channel -> how deep to read each bucket
        self._read_too_shallow = False  # the last plan stopped where it had read a bucket to
        self._fresh = False  # True right after reading the stream to its end
        # Could anyone be waiting? False when the last round saw empty queues, True again on
        # any event that starts a wait. A timer wake-up runs a round regardless.
        self._maybe_waiting = True
        self._timers_at = 0.0  # monotonic time of the next timer check
        self._clock_offset_ms = 0.0  # Redis TIME minus local wall clock
        self._replan = False

    # --- matching -----------------------------------------------------------------------

    def _queue_settings(self, queue: str) -> tuple[str, int]:
        q = self.cfg.queues.get(queue)
        if q is None:  # a queue removed from the config while interactions still wait in it
            return "longest_idle", DEFAULT_OFFER_TIMEOUT_MS
        return q.strategy, int(q.offer_timeout_s * 1000)

    @staticmethod
    def eligible(agent: AgentView, head: Head, declined: Collection[str] = ()) -> bool:
        p = head.placement
        if p.target_agent and p.target_agent != agent.id:
            return False
        return (
            agent.id not in declined
            and agent.can_take(p.channel)
            and agent.has_skills(p.skills)
        )

    async def match_round(self) -> int:
        """Offer as many waiting interactions as the available agents can take; returns offers."""
        self.counters.rounds += 1
        if not self._fresh:
            await self._catch_up()
        self._fresh = False
        if not await self._hold_lease():
            self.counters.standby += 1
            return 0
        offers = 0
        # Refused picks (another dispatcher was faster) refresh what they were about; a second
        # pass may then place them. Three passes bound the round whatever happens.
        for _ in range(3):
            made, refused = await self._match_pass()
            offers += made
            # another pass when picks were refused, or when planning stopped at the end of
            # what it had read of a bucket (see _plan)
            if not refused and not self._read_too_shallow:
                break
        self.counters.offers += offers
        return offers

    async def _hold_lease(self) -> bool:
        """Whether this dispatcher may plan now (always, with the lease turned off).

        The holder renews its lease every third of its life, not every round. While another
        holds it, ask again only once that lease could have run out: no Redis call per event.
        """
        lease_ms = self.cfg.routing.dispatch_lease_ms
        if not lease_ms:
            return True
        now = time.monotonic()
        if now < self._renew_at:
            return True
        if now < self._standby_until:
            return False
        if await self.store.dispatch_lease(self._lease_id, lease_ms):
            self._renew_at = now + lease_ms / 3000
            return True
        self._standby_until = now + lease_ms / 1000
        return False

    async def _stand_by(self, stop: asyncio.Event) -> None:
        """Sleep while another dispatcher plans (no reads at all: a standby costs nothing),
        then come back as a fresh one: the stream from its end and every agent re-read."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.01, self._standby_until - time.monotonic()))
        self._last_id = "$"
        self._full_refresh_at = 0.0
        self._timers_at = 0.0
        self._maybe_waiting = True
        self._fresh = False

    async def _match_pass(self) -> tuple[int, int]:
        self._read_too_shallow = False
        full = time.monotonic() >= self._full_refresh_at
        if full:
            self._full_refresh_at = time.monotonic() + FULL_AGENT_REFRESH_S
        dirty, self._dirty_agents = self._dirty_agents, set()
        read_depth = self._depth
        views, buckets = await self.snapshot.round_view(dirty, full=full, depth=read_depth)
        agents = {a.id: a for a in views if a.state == "ready"}
        self._maybe_waiting = bool(buckets)
        # look as deep into each bucket as its channel has free slots (next time, too)
        self._depth = {
            ch: min(MAX_DEPTH, sum(max(0, a.cap.get(ch, 0) - a.load.get(ch, 0))
                                   for a in agents.values() if a.can_take(ch)))
            for ch in CHANNELS
        }
        if not agents or not buckets:
            return 0, 0
        plan = self._plan(buckets, agents, read_depth)
        if not plan:
            return 0, 0
        results = await self.store.reserve_many(
            [(head.ix_id, agent.id, head.bucket_id, self._queue_settings(head.placement.queue)[1])
             for head, agent in plan]
        )
        made = refused = 0
        for (head, agent), result in zip(plan, results, strict=True):
            self._dirty_agents.add(agent.id)  # re-read next time: the script is the truth
            if not isinstance(result, Exception):
                made += 1
                logger.debug("offer ix=%s agent=%s queue=%s", head.ix_id, agent.id,
                             head.placement.queue)
                continue
            refused += 1
            self.snapshot.forget_agent(agent.id)
            if isinstance(result, store_errors.StaleError):
                self.counters.stale += 1
                if "declined" in result.detail:
                    self._declined.setdefault(head.ix_id, set()).add(agent.id)
                logger.debug("stale pick ix=%s agent=%s: %s", head.ix_id, agent.id,
                             result.detail)
            else:
                logger.warning("reserve failed ix=%s agent=%s: %r", head.ix_id, agent.id, result)
        return made, refused

    def _plan(
        self,
        buckets: dict[str, list[Head]],
        agents: dict[str, AgentView],
        read_depth: Mapping[str, int],
    ) -> list[tuple[Head, AgentView]]:
        """Greedy matching in queue order: best waiting interaction first, each to the agent
        its queue's strategy prefers among those who can take it now.

        Agents are kept in longest-idle order (an agent given work moves to the back, as the
        reserve script makes it), so the default strategy stops at the first agent who fits
        instead of scanning them all.

        Only the first few of each bucket were read. When planning uses up what was read of a
        bucket that may hold more, and a free agent could take its next one, planning stops
        there: going on with other buckets could serve a younger interaction before that
        unread older one. `_read_too_shallow` then asks for another, deeper pass.
        """
        self._read_too_shallow = False
        idle_order = dict(sorted(agents.items(), key=lambda kv: (kv[1].idle_since, kv[0])))
        heap = [(items[0].sort_key(), bid, 0) for bid, items in buckets.items()]
        heapq.heapify(heap)
        plan: list[tuple[Head, AgentView]] = []
        while heap and idle_order:
            _, bid, i = heapq.heappop(heap)
            head = buckets[bid][i]
            declined = self._declined.get(head.ix_id, ())
            strategy = self._queue_settings(head.placement.queue)[0]
            if strategy == "longest_idle":
                agent = next((a for a in idle_order.values()
                              if self.eligible(a, head, declined)), None)
            else:
                candidates = [a for a in idle_order.values() if self.eligible(a, head, declined)]
                agent = choose(strategy, head, candidates, self.rr) if candidates else None
            if agent is not None:
                plan.append((head, agent))
                channel = head.placement.channel
                agent.load[channel] = agent.load.get(channel, 0) + 1
                del idle_order[agent.id]
                if any(agent.can_take(ch) for ch in agent.cap):
                    idle_order[agent.id] = agent  # no longer idle: to the back of the line
            elif not declined:
                continue  # the rest of the bucket needs the same: nobody free can take it
            if i + 1 < len(buckets[bid]):
                heapq.heappush(heap, (buckets[bid][i + 1].sort_key(), bid, i + 1))
            elif len(buckets[bid]) >= max(1, read_depth.get(head.placement.channel, 1)) and any(
                self.eligible(a, head) for a in idle_order.values()
            ):
                self._read_too_shallow = True
                break
        return plan

    # --- timers -------------------------------------------------------------------------

    async def fire_timers(self) -> int:
        """Run every due timer once (see router.timers)."""
        fired = await self.timers.fire()
        self.counters.timers += fired
        return fired

    # --- loop ---------------------------------------------------------------------------

    def _note(self, entries: list[tuple[str, dict[str, str]]]) -> bool:
        """Remember the stream position and which agents changed; True if a match may exist."""
        woken = False
        for entry_id, fields in entries:
            self._last_id = entry_id
            ev, agent = fields.get("ev"), fields.get("agent")
            if agent:
                self._dirty_agents.add(agent)
            if (ev == EventType.RINGNOANSWER and fields.get("reason") == "reject" and agent
                    and self.cfg.routing.reject_excludes_agent):
                self._declined.setdefault(fields.get("ix", ""), set()).add(agent)
            elif ev in _SETTLED:
                self._declined.pop(fields.get("ix", ""), None)
            self._arm_from_event(ev, fields)
            self._maybe_waiting = self._maybe_waiting or ev in STARTS_WAITING
            woken = woken or ev in WAKE_EVENTS
        # skips the rounds that cannot match: an agent freed while nobody waits. (A caller
        # arriving while every agent seems busy still runs a round: the round reads agents'
        # availability from Redis before their freeing events reach us, which under a backlog
        # is measurably faster than waiting for those events - see bench/dispatch.py.)
        return woken and self._maybe_waiting

    async def _catch_up(self) -> None:
        """Read (without blocking) events since the last look, so agent views are current."""
        if self._last_id == "$":
            # first look: the full agent refresh covers the past; start from the newest entry
            last = await self.store.redis.xrevrange(self.keys.events, count=1)
            self._last_id = last[0][0] if last else "0-0"
            return
        reply = await self.store.redis.xread({self.keys.events: self._last_id}, count=10_000)
        for _stream, entries in reply or []:
            self._note(entries)

    # Timers are checked when one is due, not on every wake-up: the next due moment is read
    # from Redis after each firing, and moved earlier by the events that arm a timer (an OFFER
    # arms its offer timeout, an ENTERQUEUE its first escalation, a COMPLETE its wrap-up).
    # Events whose timer we cannot compute (a requeue re-arming an old escalation) make us
    # re-read. `timer_max_sleep_ms` bounds any lateness should all of that miss something.

    def _redis_now_ms(self) -> float:
        return time.time() * 1000 + self._clock_offset_ms

    def _expect_timer(self, at_ms: float) -> None:
        due = time.monotonic() + max(0.0, (at_ms - self._redis_now_ms()) / 1000)
        self._timers_at = min(self._timers_at, due)

    async def _plan_timers(self) -> None:
        nxt, now = await self.snapshot.next_due_ms(with_time=True)
        self._clock_offset_ms = now - time.time() * 1000
        cap_s = self.cfg.routing.timer_max_sleep_ms / 1000
        wait_s = cap_s if nxt is None else min(cap_s, max(0.0, (nxt - now) / 1000))
        self._timers_at = time.monotonic() + wait_s
        self._replan = False

    def _arm_from_event(self, ev: str | None, fields: dict[str, str]) -> None:
        q = self.cfg.queues.get(fields.get("queue", ""))
        t = float(fields.get("t") or 0)
        if q is None:
            return
        if ev == EventType.OFFER:
            self._expect_timer(t + q.offer_timeout_s * 1000)
        elif ev == EventType.ENTERQUEUE:
            delays = [step.after_s for step in q.escalation[:1]]
            delays += [q.max_wait_s] if q.max_wait_s else []
            if delays:
                self._expect_timer(t + min(delays) * 1000)
        elif ev in (EventType.COMPLETECALLER, EventType.COMPLETEAGENT) and q.wrapup_s:
            self._expect_timer(t + q.wrapup_s * 1000)
        elif ev in (EventType.RINGNOANSWER, EventType.ESCALATE, EventType.TRANSFER):
            self._replan = True

    async def wait_for_work(self) -> bool:
        """Block until events arrive or the next timer is due.

        True when there is work: a waking event, or a timer due. False when only events that
        cannot create a match arrived (our own OFFERs, say).
        """
        block_ms = max(1, int((self._timers_at - time.monotonic()) * 1000))
        reply = await self.store.redis.xread(
            {self.keys.events: self._last_id}, count=1000, block=block_ms
        )
        woken = False
        for _stream, entries in reply or []:
            woken = self._note(entries) or woken
        self._fresh = True  # we just read up to the stream's end: no catch-up needed
        if self._replan:
            await self._plan_timers()
        return woken or time.monotonic() >= self._timers_at

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("%s: started (event-driven on %s)", self.name, self.keys.events)
        await self._catch_up()
        while not stop.is_set():
            if not await self._hold_lease():
                await self._stand_by(stop)
                continue
            started = time.perf_counter()
            if time.monotonic() >= self._timers_at:
                await self.fire_timers()
                await self._plan_timers()
            offers = await self.match_round()
            if offers:
                logger.debug("%s: %d offers in %.2f ms", self.name, offers,
                             (time.perf_counter() - started) * 1000)
            while not stop.is_set() and not await self.wait_for_work():
                pass
        logger.info("%s: stopped (%s)", self.name, self.counters)
