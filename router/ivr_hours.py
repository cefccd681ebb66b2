"""Is the office open? Business hours of an IVR `hours` node at a moment in time.

Hours are local wall-clock times in the city's time zone, so the office opens at 08:00 on the
days after a daylight-saving change as on every other day: the instant is converted to local
time with `zoneinfo` and only then compared. Public holidays and listed dates are closed all day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from router.holidays import polish_holiday
from router.ivr_flow import WEEKDAYS, HoursNode


@dataclass(frozen=True, slots=True)
class HoursStatus:
    """Open or closed, and why (for the call's log and IVR path)."""

    open: bool
    reason: str
    local: datetime


def hours_status(node: HoursNode, when: datetime, tz: tzinfo | str) -> HoursStatus:
    """Whether `node`'s office is open at the instant `when` (timezone-aware) in zone `tz`."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("`when` must be timezone-aware (an instant, not a wall-clock time)")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    local = when.astimezone(zone)
    day = local.date()
    if node.holidays == "pl":
        holiday = polish_holiday(day)
        if holiday is not None:
            return HoursStatus(False, f"public holiday: {holiday}", local)
    if day in node.closed_dates:
        return HoursStatus(False, f"closed on {day.isoformat()}", local)
    minute = local.hour * 60 + local.minute
    for span in node.week.on(local.weekday()):
        if span.start <= minute < span.end:
            return HoursStatus(True, f"open {WEEKDAYS[local.weekday()]} {span}", local)
    return HoursStatus(False, f"outside opening hours ({WEEKDAYS[local.weekday()]} "
                       f"{local:%H:%M})", local)


def is_open(node: HoursNode, when: datetime, tz: tzinfo | str) -> bool:
    """Shorthand for ``hours_status(...).open``."""
    return hours_status(node, when, tz).open
