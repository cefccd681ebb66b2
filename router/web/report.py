"""The interval report of one day: the table, its CSV export, and the data behind the charts.

Every figure comes from `StatsAggregator.interval_report` / `day_report`, the same calls
`cityline stats --by interval` makes, and is formatted by the same helpers
(router/stats_format.py `queue_cells`), so the wall, the report page, the CSV file and the
command line always show the same numbers. Nothing here computes a ratio of its own except the
day's running service level, which is `QueueFigures.from_counters` of the summed counters.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from router.stats import (
    HIST_BOUNDS_S,
    IntervalRow,
    NamedFigures,
    PeriodReport,
    QueueFigures,
    StatsAggregator,
    add_counters,
)
from router.stats_format import QUEUE_COLUMNS, active, queue_cells
from router.web.charts import HistogramBucket, SlPoint, VolumePoint

__all__ = [
    "CSV_FIELDS",
    "QUEUE_COLUMNS",
    "Scope",
    "chart_data",
    "csv_text",
    "parse_scope",
    "report_rows",
    "totals_rows",
]

QUEUE_COLUMNS: tuple[str, ...] = tuple(QUEUE_COLUMNS)

# The CSV's columns: the interval, the scope, then the counters and figures of
# `cityline stats --format json` (ratios as fractions 0..1, times in seconds, empty = no data).
CSV_FIELDS = (
    "interval_start", "kind", "name",
    "offered", "answered", "abandoned", "short_abandoned", "answered_within_sl",
    "abandoned_after_sl", "timeouts", "handled", "transfers", "rona", "deflected",
    "first_contact_resolved", "service_level", "abandonment_rate", "asa_s", "aht_s",
    "avg_talk_s", "avg_wrapup_s", "avg_abandon_wait_s", "transfer_rate", "fcr_rate",
    "kb_resolved", "kb_rate", "kb_fcr_share",
)  # fmt: skip
# (the knowledge base's columns come last: a spreadsheet reading the older columns by position
# keeps working)


class BadScope(ValueError):
    pass


@dataclass(frozen=True)
class Scope:
    """Which rows a report or chart shows: everything, one queue or one channel."""

    kind: Literal["all", "queue", "channel"]
    name: str = "all"

    @property
    def param(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.name}"

    def matches(self, row: IntervalRow) -> bool:
        return row.kind == self.kind and (self.kind == "all" or row.name == self.name)


def parse_scope(text: str | None, queues: Sequence[str], channels: Sequence[str]) -> Scope:
    """`all` (default), `queue:NAME` or `channel:NAME`, checked against the configuration."""
    if not text or text == "all":
        return Scope("all")
    kind, _, name = text.partition(":")
    if kind == "queue" and name in queues:
        return Scope("queue", name)
    if kind == "channel" and name in channels:
        return Scope("channel", name)
    raise BadScope(f"unknown scope {text!r}: use all, queue:NAME or channel:NAME")


async def report_rows(agg: StatsAggregator, day: date, scope: Scope | None) -> list[IntervalRow]:
    """Every interval of the day (active or not) of one scope, or of every scope when None."""
    rows = await agg.interval_report(None, day)
    return [r for r in rows if scope is None or scope.matches(r)]


def table_rows(rows: Sequence[IntervalRow], tz: ZoneInfo) -> list[list[str]]:
    """The active intervals as `cityline stats --by interval` prints them."""
    return [
        [
            datetime.fromtimestamp(r.interval_start_ms / 1000, tz).strftime("%H:%M"),
            r.name if r.kind == "all" else f"{r.kind}:{r.name}",
            *queue_cells(r.figures),
        ]
        for r in rows
        if active(r.counters)
    ]


def totals_rows(report: PeriodReport, scope: Scope) -> list[list[str]]:
    """The day's totals per queue and channel and overall, as `cityline stats` prints them."""
    named: list[NamedFigures] = [*report.queues, *report.channels, report.total]
    if scope.kind != "all":
        named = [n for n in named if n.kind == scope.kind and n.name == scope.name]
    return [
        [n.name if n.kind == "all" else f"{n.kind}:{n.name}", *queue_cells(n.figures)]
        for n in named
    ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    # a spreadsheet runs a cell that starts with one of these as a formula
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(rows: Sequence[IntervalRow], tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        figures = r.figures.model_dump()
        start = datetime.fromtimestamp(r.interval_start_ms / 1000, tz).isoformat()
        writer.writerow(
            [_cell(start), _cell(r.kind), _cell(r.name)]
            + [_cell(figures[name]) for name in CSV_FIELDS[3:]]
        )
    return out.getvalue()


@dataclass(frozen=True)
class ChartData:
    volume: list[VolumePoint]
    service_level: list[SlPoint]
    waits: list[HistogramBucket]


def _trim(rows: Sequence[IntervalRow], upto_ms: int | None) -> list[IntervalRow]:
    """The intervals from the first whole hour with traffic to the last one (or to now on the
    current day), so a chart is not 96 mostly empty slots."""
    if upto_ms is not None:
        rows = [r for r in rows if r.interval_start_ms <= upto_ms]
    busy = [i for i, r in enumerate(rows) if active(r.counters)]
    if not busy:
        return list(rows[-8:]) if upto_ms is not None else []
    first = busy[0] - busy[0] % 4  # back to the hour
    last = len(rows) - 1 if upto_ms is not None else busy[-1]
    return list(rows[first : last + 1])


def chart_data(rows: Sequence[IntervalRow], tz: ZoneInfo, upto_ms: int | None = None) -> ChartData:
    """What the three charts draw, from the interval rows of one scope."""
    shown = _trim(rows, upto_ms)
    volume, sl = [], []
    running: dict[str, int] = {}
    # the running service level counts every interval of the day before the first one shown
    first_ms = shown[0].interval_start_ms if shown else 0
    for r in rows:
        if r.interval_start_ms < first_ms:
            add_counters(running, r.counters)
    for r in shown:
        label = datetime.fromtimestamp(r.interval_start_ms / 1000, tz).strftime("%H:%M")
        f = r.figures
        volume.append(VolumePoint(label, f.offered, f.answered, f.abandoned))
        add_counters(running, r.counters)
        cumulative = QueueFigures.from_counters(running).service_level
        sl.append(SlPoint(label, f.service_level, cumulative))
    totals: dict[str, int] = {}
    for r in rows:
        add_counters(totals, r.counters)
    waits = []
    low = 0
    for bound in (*HIST_BOUNDS_S, None):
        key = "inf" if bound is None else f"le_{bound}"
        label = f">{_dur(low)}" if bound is None else f"≤{_dur(bound)}"
        waits.append(
            HistogramBucket(label, totals.get(f"h_ans_{key}", 0), totals.get(f"h_ab_{key}", 0))
        )
        low = bound or low
    return ChartData(volume, sl, waits)


def _dur(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
