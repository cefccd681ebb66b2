"""The statistics' time grid: 15-minute intervals aligned on the epoch, and city-local days.

Every real time zone offset is a multiple of 15 minutes, so an interval aligned on the epoch is
aligned in city time too, and a city-local day is a whole number of intervals (DST included).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from zoneinfo import ZoneInfo

__all__ = ["INTERVAL_MS", "day_bounds_ms", "interval_start", "local_day", "split_intervals"]

INTERVAL_MS = 15 * 60 * 1000


def interval_start(ms: int) -> int:
    return ms - ms % INTERVAL_MS


def split_intervals(start_ms: int, end_ms: int) -> Iterator[tuple[int, int]]:
    """(interval start, ms of [start_ms, end_ms) inside it) for every interval it touches."""
    t = start_ms
    while t < end_ms:
        iv = interval_start(t)
        upto = min(end_ms, iv + INTERVAL_MS)
        yield iv, upto - t
        t = upto


def day_bounds_ms(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """Epoch ms of the city-local midnight starting `day` and of the next one (DST-aware)."""
    start = datetime.combine(day, dtime(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def local_day(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()
