"""Statistics: fold the event stream into 15-minute aggregates; figures, reports, live state.

Definitions follow DESIGN.md "Metrics"; docs/statistics.md lists every counter. In short:

* The aggregator reads `cl:events` after the cursor `Keys.stats_cursor`, turns a batch into
  counter increments in Python and applies them with one cursor-checked Lua script
  (queues/stats_store.py). Any number of aggregators may run: each event is counted once.
* Counters live per 15-minute interval (aligned on the epoch; every real time zone offset is a
  multiple of 15 minutes, so the intervals are aligned in city time too) and per scope:
  `q:<queue>`, `c:<channel>`, `a:<agent>` and `all`.
* A counter goes to the interval of its event's time `t`. Agent state durations (ready, paused)
  are the exception: they are split over the intervals they spanned, so occupancy per interval
  is right for an agent paused across several intervals.
* Queue scopes count what happened in that queue. Channel scopes and `all` count the resident's
  contact once: offered on its first entry (`first == "1"`), answered on its first CONNECT (with
  `total_wait_ms`, the wait since its first entry, against the answering queue's threshold),
  abandoned or timed out only if it was never answered before (a resident who hangs up in a
  second-line queue after a transfer was answered once). Work counters (handled, talk, wrap-up,
  transfers, ring-no-answer) count every event everywhere.
* First-contact resolution: a COMPLETE* of an interaction that was never transferred. The
  aggregator keeps per interaction how often it was connected and transferred (see
  queues/stats_store.py); inferring it from the stream alone would need the TRANSFER in the
  same batch as the COMPLETE, and reading the interaction hash would tie statistics to the
  live state's field names.

This module is the front door: `StatsAggregator` runs the fold loop and answers every question,
and every public name of the statistics is importable from here. The work is done in
router/stats_intervals.py (the interval grid and city-local days), router/stats_fold.py (the
per-event folding rules), router/stats_reports.py (reading aggregates back, reports over
periods), router/stats_live.py (the live snapshot and staffing) and router/stats_figures.py
(every derived figure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import date
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queues.keys import Keys
from queues.stats_store import StatsStore
from router.stats_figures import (
    AgentCounts,
    AgentFigures,
    AgentLive,
    ChannelLive,
    IntervalRow,
    LiveSnapshot,
    NamedAgentFigures,
    NamedFigures,
    PeriodReport,
    QueueFigures,
    QueueLive,
    Staffing,
    add_counters,
    merge_counters,
    patience_estimate_s,
    staffing,
)
from router.stats_fold import ALL, HIST_BOUNDS_S, hist_field, load_fold
from router.stats_intervals import (
    INTERVAL_MS,
    day_bounds_ms,
    interval_start,
    local_day,
    split_intervals,
)
from router.stats_live import LiveView
from router.stats_reports import StatsReader

if TYPE_CHECKING:
    from router.config import CitylineConfig

__all__ = [
    "ALL",
    "HIST_BOUNDS_S",
    "INTERVAL_MS",
    "AgentCounts",
    "AgentFigures",
    "AgentLive",
    "ChannelLive",
    "IntervalRow",
    "LiveSnapshot",
    "NamedAgentFigures",
    "NamedFigures",
    "PeriodReport",
    "QueueFigures",
    "QueueLive",
    "Staffing",
    "StatsAggregator",
    "add_counters",
    "day_bounds_ms",
    "hist_field",
    "interval_start",
    "local_day",
    "merge_counters",
    "patience_estimate_s",
    "split_intervals",
    "staffing",
]

logger = logging.getLogger(__name__)

# How long `run` blocks on XREAD before it looks at the stop event again.
BLOCK_MS = 1000
RETRY_S = 1.0
_MAX_CONFLICTS = 10


class StatsAggregator:
    """Folds events into the interval aggregates and reads them back as figures."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig) -> None:
        self.redis = redis
        self.keys = keys
        self.cfg = cfg
        self.store = StatsStore(redis, keys)
        self.tz = ZoneInfo(cfg.city.timezone)
        self._reader = StatsReader(self.store, keys, cfg, self.tz)
        self._live = LiveView(redis, self._reader)

    # --- folding ---------------------------------------------------------------------------

    async def fold_once(self, max_events: int = 1000) -> int:
        """Fold up to `max_events` events after the cursor; the number this call folded.

        On a conflict (another aggregator moved the cursor first) it re-reads from the new
        cursor, so a call returns 0 only when nothing is left or others keep winning.
        """
        for _ in range(_MAX_CONFLICTS):
            cursor = await self.store.cursor()
            entries = await self.store.read_after(cursor, max_events)
            if not entries:
                return 0
            # State is read after the cursor: if anyone applies a batch in between, the cursor
            # moved and our apply is refused, so what we read is the state as of `cursor`.
            fold = await load_fold(self.store, self.keys, self.cfg, self.tz, entries)
            if await self.store.apply(cursor, entries[-1].id, fold.updates()):
                logger.debug("stats: folded %d events up to %s", len(entries), entries[-1].id)
                return len(entries)
            logger.debug("stats: cursor moved under us (another aggregator); re-reading")
        return 0

    async def run(self, stop: asyncio.Event, max_events: int = 1000) -> None:
        """Fold until `stop` is set: catch up, then sleep in XREAD BLOCK until new events."""
        logger.info(
            "stats: aggregator started on %s (cursor %s)",
            self.keys.events,
            await self.store.cursor() or "none",
        )
        while not stop.is_set():
            try:
                if await self.fold_once(max_events) >= max_events:
                    continue  # more are waiting
                await self.store.wait_for_events(await self.store.cursor(), BLOCK_MS)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("stats: redis unavailable (%s); retrying in %.0f s", exc, RETRY_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S)
        logger.info("stats: aggregator stopped")

    # --- reports (router/stats_reports.py) -------------------------------------------------

    async def interval_report(
        self, cfg: CitylineConfig | None = None, day: date | None = None
    ) -> list[IntervalRow]:
        """Every 15-minute interval of a city-local day, per queue, per channel and in total."""
        if cfg is not None and cfg is not self.cfg:
            return await StatsAggregator(self.redis, self.keys, cfg).interval_report(cfg, day)
        return await self._reader.interval_report(day)

    async def period_report(self, start_ms: int, end_ms: int) -> PeriodReport:
        """Totals over [start_ms, end_ms), rounded out to whole intervals."""
        return await self._reader.period_report(start_ms, end_ms)

    async def day_report(self, day: date) -> PeriodReport:
        return await self._reader.day_report(day)

    # --- live (router/stats_live.py) -------------------------------------------------------

    async def live_snapshot(self, cfg: CitylineConfig | None = None) -> LiveSnapshot:
        """What the supervisor wall shows now: waiting, agents, today's and this interval's
        figures and the staffing the recent traffic needs, per queue, channel and agent."""
        if cfg is not None and cfg is not self.cfg:
            return await StatsAggregator(self.redis, self.keys, cfg).live_snapshot(cfg)
        return await self._live.snapshot()
