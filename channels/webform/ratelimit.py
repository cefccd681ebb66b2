"""A per-IP sliding-window rate limit, kept in this process's memory.

Several cityline processes behind one balancer would each count their own submissions, so an
address could send up to (processes x limit) a minute; a shared limit would need Redis.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class SlidingWindowLimiter:
    def __init__(self, limit: int, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = 0.0

    def allow(self, key: str) -> bool:
        """Count one hit for `key` if it is within the limit; False (and not counted) if not."""
        now = self.clock()
        self._sweep(now)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def _sweep(self, now: float) -> None:
        # drop addresses idle for a whole window, so memory follows the active addresses only
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.window_s
        stale = [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_s]
        for key in stale:
            del self._hits[key]
