"""The timers of waiting and offered interactions: offer timeouts (RINGNOANSWER), wrap-up
ends, escalation steps and max wait. Each is a sorted set in Redis scored by when it is due;
whichever dispatcher fires one first wins, and the script refuses the others (its own
deadline and state checks), so firing twice is harmless.
"""

from __future__ import annotations

import json
import logging

from queues import errors as store_errors
from queues.snapshot import Snapshot
from queues.store import RoutingStore
from router import placement as pl
from router.config import CitylineConfig

logger = logging.getLogger("router.dispatcher")


class Timers:
    def __init__(self, store: RoutingStore, cfg: CitylineConfig, snapshot: Snapshot) -> None:
        self.store = store
        self.cfg = cfg
        self.keys = store.keys
        self.snapshot = snapshot

    async def fire(self) -> int:
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
