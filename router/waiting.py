"""What a waiting resident is told: their place in line and how long they will likely wait.

The estimate uses live figures: the residents ahead, served by the agents who can take this
queue's work now (ready or busy), each taking the queue's average handle time today (or a
default before the first contact of the day). It is deliberately simple and is measured: the
first announcement is stored as the promise (see queues/lua/announce.lua), so the centre can
compare promised and actual waits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from queues.store import RoutingStore
from router.metrics import LiveSnapshotCache

if TYPE_CHECKING:
    from router.service import RoutingService

# Handle time assumed before the queue has handled anything today.
DEFAULT_AHT_S = 180.0


@dataclass(frozen=True)
class WaitEstimate:
    position: int
    wait_s: float


class WaitEstimator:
    def __init__(self, store: RoutingStore, live: LiveSnapshotCache) -> None:
        self.store = store
        self.live = live

    async def estimate(self, ix_id: str, queue: str) -> WaitEstimate | None:
        """Place and estimated wait, recorded as announced; None once it no longer waits."""
        position = await self.store.position(ix_id)
        if position <= 0:
            return None
        snapshot = await self.live.get()
        q = next((q for q in snapshot.queues if q.name == queue), None)
        staffed = (q.agents.ready + q.agents.busy) if q else 0
        aht = (q.today.aht_s if q and q.today.aht_s else None) or DEFAULT_AHT_S
        # residents are served in rounds of `staffed`: the ones ahead fill whole rounds
        wait_s = math.ceil((position - 1) / max(1, staffed)) * aht if position > 1 else 0.0
        if not await self.store.announce(ix_id, position, int(wait_s * 1000)):
            return None
        return WaitEstimate(position, wait_s)


def wait_estimator(service: RoutingService) -> WaitEstimator:
    """An estimator over the service's store and live statistics, for a channel that tells
    waiting residents their place and wait (the voice hold loop, the web chat)."""
    from router.stats import StatsAggregator

    store = service.store
    return WaitEstimator(store, LiveSnapshotCache(StatsAggregator(store.redis, store.keys,
                                                                  service.cfg)))
