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
import heapq
import json
import logging
import time
from dataclasses import dataclass

from queues import errors as store_errors
from queues.snapshot import AgentView, Head, Snapshot
from queues.store import RoutingStore
from router import placement as pl
from router.config import CitylineConfig
from router.models import EventType
from router.strategies import RoundRobin, choose

logger = logging.getLogger(__name__)

# Events after which a new match may exist. OFFER, CONNECT, MESSAGE, PAUSE... cannot create one,
# and waking on our own OFFERs would double the work per decision.
WAKE_EVENTS = frozenset(
    {
        EventType.ENTERQUEUE,
        EventType.RINGNOANSWER,
        EventType.UNPAUSE,
        EventType.ADDMEMBER,
        EventType.WRAPUPEND,
        EventType.COMPLETECALLER,
        EventType.COMPLETEAGENT,
        EventType.ABANDON,
        EventType.TRANSFER,
        EventType.ESCALATE,
    }
)
DEFAULT_OFFER_TIMEOUT_MS = 20_000


@dataclass
class DispatchCounters:
    rounds: int = 0
    offers: int = 0
    stale: int = 0
    timers: int = 0


class Dispatcher:
    def __init__(self, store: RoutingStore, cfg: CitylineConfig, name: str = "dispatcher") -> None:
        self.store = store
        self.cfg = cfg
        self.name = name
        self.keys = store.keys
        self.snapshot = Snapshot(store.redis, store.keys)
        self.rr = RoundRobin()
        self.counters = DispatchCounters()
        self._last_id = "$"

    # --- matching -----------------------------------------------------------------------

    def _queue_settings(self, queue: str) -> tuple[str, int]:
        q = self.cfg.queues.get(queue)
        if q is None:  # a queue removed from the config while interactions still wait in it
            return "longest_idle", DEFAULT_OFFER_TIMEOUT_MS
        return q.strategy, int(q.offer_timeout_s * 1000)

    @staticmethod
    def eligible(agent: AgentView, head: Head) -> bool:
        p = head.placement
        if p.target_agent and p.target_agent != agent.id:
            return False
        return (
            agent.id not in head.declined
            and agent.can_take(p.channel)
            and agent.has_skills(dict(p.skills))
        )

    async def match_round(self) -> int:
        """Offer as many waiting interactions as the available agents can take; returns offers."""
        self.counters.rounds += 1
        agents = {a.id: a for a in await self.snapshot.agents() if a.state == "ready"}
        if not agents:
            return 0
        heads = await self.snapshot.heads()
        heap = [(h.sort_key(), h) for h in heads]
        heapq.heapify(heap)
        offers = 0
        # Each stale refusal refreshes what it was about, so progress is certain; the budget
        # only guards against a state we cannot explain looping this round forever.
        budget = 4 * (len(heap) + len(agents)) + 16
        while heap and agents and budget > 0:
            budget -= 1
            _, head = heapq.heappop(heap)
            candidates = [a for a in agents.values() if self.eligible(a, head)]
            if not candidates:
                continue
            strategy, offer_timeout_ms = self._queue_settings(head.placement.queue)
            agent = choose(strategy, head, candidates, self.rr)
            try:
                await self.store.reserve(head.ix_id, agent.id, head.bucket_id, offer_timeout_ms)
            except store_errors.StaleError as exc:
                self.counters.stale += 1
                logger.debug("stale pick ix=%s agent=%s: %s", head.ix_id, agent.id, exc.detail)
                fresh = await self.snapshot.agents([agent.id])
                if fresh and fresh[0].state == "ready":
                    agents[agent.id] = fresh[0]
                else:
                    agents.pop(agent.id, None)
            else:
                offers += 1
                logger.debug("offer ix=%s agent=%s queue=%s", head.ix_id, agent.id,
                             head.placement.queue)
                agent.load[head.placement.channel] = agent.load.get(head.placement.channel, 0) + 1
                if not any(agent.can_take(ch) for ch in agent.cap):
                    agents.pop(agent.id, None)
            for nxt in await self.snapshot.heads([head.bucket_id]):
                heapq.heappush(heap, (nxt.sort_key(), nxt))
        self.counters.offers += offers
        return offers

    # --- timers -------------------------------------------------------------------------

    async def fire_timers(self) -> int:
        """Run every due timer once; refusals mean another dispatcher (or the agent) was first."""
        k = self.keys
        now = await self.store.now_ms()
        fired = 0
        for ix_id in await self.snapshot.due(k.offers, now):
            fired += await self._guarded(self._offer_timeout(ix_id))
        for ix_id in await self.snapshot.due(k.wrapups, now):
            fired += await self._guarded(self._wrapup_timeout(ix_id))
        for ix_id in await self.snapshot.due(k.due, now):
            fired += await self._guarded(self._waiting_timer(ix_id, now))
        self.counters.timers += fired
        return fired

    async def _guarded(self, coro: object) -> int:
        try:
            await coro  # type: ignore[misc]
        except store_errors.StoreError as exc:
            logger.debug("timer refused: %s %s", exc.code, exc.detail)
            return 0
        return 1

    async def _read(self, ix_id: str) -> dict[str, str]:
        return await self.store.interaction(ix_id)

    async def _offer_timeout(self, ix_id: str) -> None:
        ix = await self._read(ix_id)
        if ix.get("state") != "offered":
            await self.store.drop_stray_timer(self.keys.offers, ix_id, "offered")
            raise store_errors.StateError("not offered")
        await self.store.offer_timeout(
            ix_id,
            ix["agent"],
            max_misses=self.cfg.routing.max_misses,
            pause_reason=self.cfg.routing.miss_pause_reason,
        )
        logger.info("ring-no-answer ix=%s agent=%s", ix_id, ix["agent"])

    async def _wrapup_timeout(self, ix_id: str) -> None:
        ix = await self._read(ix_id)
        if ix.get("state") != "wrapup":
            await self.store.drop_stray_timer(self.keys.wrapups, ix_id, "wrapup")
            raise store_errors.StateError("not in wrap-up")
        await self.store.wrapup_end(ix_id, ix["agent"], by="timer")

    async def _waiting_timer(self, ix_id: str, now: int) -> None:
        ix = await self._read(ix_id)
        if ix.get("state") != "queued":
            await self.store.drop_stray_timer(self.keys.due, ix_id, "queued")
            raise store_errors.StateError("not waiting")
        queue = ix["queue"]
        max_at = int(ix.get("max_at") or 0)
        if max_at and now >= max_at:
            await self._max_wait(ix, queue)
            return
        plan = pl.plan_escalation(self.cfg, ix) if queue in self.cfg.queues else None
        if plan is None:
            await self.store.drop_stray_timer(self.keys.due, ix_id, "-")
            return
        await self.store.escalate(
            ix_id,
            from_bucket=ix["bucket"],
            expected_step=int(ix.get("esc_step") or 0),
            target=plan.target,
            next_escalation_after_ms=plan.next_escalation_after_ms,
            max_wait_ms=plan.max_wait_ms,
        )
        logger.info("escalated ix=%s queue=%s step=%s", ix_id, plan.target.queue,
                    ix.get("esc_step"))

    async def _max_wait(self, ix: dict[str, str], queue: str) -> None:
        q = self.cfg.queues.get(queue)
        overflow = q.overflow if q else None
        target = None
        if overflow and overflow in self.cfg.queues:
            extra = json.loads(ix.get("extra_skills") or "{}")
            target = pl.placement(self.cfg, overflow, extra=extra,
                                  priority=int(ix.get("priority") or 0))
        state = await self.store.max_wait(
            ix["id"],
            from_bucket=ix["bucket"],
            overflow=target,
            escalate_after_ms=pl.escalation_after_ms(self.cfg, overflow, 0) if target else 0,
            max_wait_ms=pl.max_wait_ms(self.cfg, overflow) if target else 0,
        )
        logger.info("max wait ix=%s queue=%s -> %s", ix["id"], queue, overflow or state)

    # --- loop ---------------------------------------------------------------------------

    async def _sleep_budget_ms(self) -> int:
        cap = self.cfg.routing.timer_max_sleep_ms
        nxt = await self.snapshot.next_due_ms()
        if nxt is None:
            return cap
        wait = int(nxt - await self.store.now_ms()) + 1
        return max(1, min(cap, wait))

    async def wait_for_work(self) -> bool:
        """Block until events arrive or the next timer is due.

        True when there is work: a waking event, or the block ran out (a timer may be due).
        False when only events that cannot create a match arrived (our own OFFERs, say).
        """
        block_ms = await self._sleep_budget_ms()
        reply = await self.store.redis.xread(
            {self.keys.events: self._last_id}, count=1000, block=block_ms
        )
        if not reply:
            return True
        woken = False
        for _stream, entries in reply:
            for entry_id, fields in entries:
                self._last_id = entry_id
                woken = woken or fields.get("ev") in WAKE_EVENTS
        return woken

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("%s: started (event-driven on %s)", self.name, self.keys.events)
        last = await self.store.redis.xrevrange(self.keys.events, count=1)
        self._last_id = last[0][0] if last else "0-0"
        while not stop.is_set():
            started = time.perf_counter()
            await self.fire_timers()
            offers = await self.match_round()
            if offers:
                logger.debug("%s: %d offers in %.2f ms", self.name, offers,
                             (time.perf_counter() - started) * 1000)
            while not stop.is_set() and not await self.wait_for_work():
                pass
        logger.info("%s: stopped (%s)", self.name, self.counters)
