"""Case figures for the city: per category and per unit, for a date range.

For [since_ms, until_ms] (default: the last 30 days ending now, the days counted in the city's
timezone): opened (created in range), completed and rejected (the status history's entry in
range), open now, overdue now (open, due before now) and the median time to complete (created ->
completed, hours) of the cases completed in range. `compute` is pure (cases and their histories
in, figures out); `read_cases` gathers them (the number index is scanned like
`CaseService.created_between`; city volumes are small).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from queues.cases import FINAL_STATUSES
from router.hash_fields import as_float, as_int

DEFAULT_DAYS = 30
HOUR_MS = 3_600_000


@dataclass
class Figures:
    key: str
    label: str
    opened: int = 0
    completed: int = 0
    rejected: int = 0
    open_now: int = 0
    overdue_now: int = 0
    median_hours_to_complete: float | None = None
    _durations: list[float] = field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_durations")
        return out


@dataclass
class CaseReport:
    since_ms: int
    until_ms: int
    now_ms: int
    categories: list[Figures]
    units: list[Figures]
    total: Figures
    open_points: list[dict[str, Any]]  # open cases with a location: lat, lon, category, overdue


def default_range(now_ms: int, tz: Any, days: int = DEFAULT_DAYS) -> tuple[int, int]:
    """The last `days` days in the city's timezone: from local midnight `days - 1` days ago
    to now."""
    local = datetime.fromtimestamp(now_ms / 1000, tz)
    start = (local - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
    return int(start.timestamp() * 1000), now_ms


class BadRange(ValueError):
    pass


def parse_days(since: str, until: str, tz: Any) -> tuple[int | None, int | None]:
    """`since` and `until` (local days YYYY-MM-DD, inclusive; blank: not given) as ms."""
    out: list[int | None] = []
    for name, text, end in (("since", since, False), ("until", until, True)):
        text = (text or "").strip()
        if not text:
            out.append(None)
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadRange(f"{name}: give a day as YYYY-MM-DD") from None
        if end:
            day += timedelta(days=1)
        out.append(int(datetime.combine(day, time(0), tz).timestamp() * 1000) - (1 if end else 0))
    if out[0] is not None and out[1] is not None and out[0] > out[1]:
        raise BadRange("since is after until")
    return out[0], out[1]


def day_of(ms: int, tz: Any) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).date().isoformat()




def _final_time(history: Sequence[Mapping[str, Any]], status: str) -> int | None:
    for entry in history:
        if entry.get("status") == status:
            return as_int(entry.get("t"))
    return None


def compute(cases: Iterable[Mapping[str, str]],
            histories: Mapping[str, Sequence[Mapping[str, Any]]], *,
            since_ms: int, until_ms: int, now_ms: int,
            category_labels: Mapping[str, str] | None = None,
            unit_labels: Mapping[str, str] | None = None) -> CaseReport:
    cl, ul = category_labels or {}, unit_labels or {}
    # every labelled category and unit is listed, with zeros when it has no case
    cats: dict[str, Figures] = {k: Figures(k, v or k) for k, v in cl.items()}
    units: dict[str, Figures] = {k: Figures(k, v or k) for k, v in ul.items()}
    total = Figures("", "total")
    points: list[dict[str, Any]] = []
    for case in cases:
        cat, unit = case.get("category", ""), case.get("unit", "")
        groups = [cats.setdefault(cat, Figures(cat, cl.get(cat) or cat)),
                  units.setdefault(unit, Figures(unit, ul.get(unit) or unit)), total]
        created = as_int(case.get("created_ms"))
        history = histories.get(case.get("id", ""), [])
        status = case.get("status", "")
        is_open = status not in FINAL_STATUSES
        overdue = is_open and 0 < as_int(case.get("due_ms")) < now_ms
        done_t = _final_time(history, "completed") if status == "completed" else None
        if done_t is None and status == "completed":
            done_t = as_int(case.get("closed_ms")) or None
        rej_t = _final_time(history, "rejected") if status == "rejected" else None
        if rej_t is None and status == "rejected":
            rej_t = as_int(case.get("closed_ms")) or None
        for g in groups:
            if since_ms <= created <= until_ms:
                g.opened += 1
            if done_t is not None and since_ms <= done_t <= until_ms:
                g.completed += 1
                if created:
                    g._durations.append((done_t - created) / HOUR_MS)
            if rej_t is not None and since_ms <= rej_t <= until_ms:
                g.rejected += 1
            if is_open:
                g.open_now += 1
            if overdue:
                g.overdue_now += 1
        lat, lon = as_float(case.get("lat")), as_float(case.get("lon"))
        if is_open and lat is not None and lon is not None:
            points.append({"lat": lat, "lon": lon, "category": cat,
                           "label": cl.get(cat) or cat, "overdue": overdue})
    for g in [*cats.values(), *units.values(), total]:
        if g._durations:
            g.median_hours_to_complete = round(statistics.median(g._durations), 2)
    return CaseReport(since_ms, until_ms, now_ms,
                      sorted(cats.values(), key=lambda f: f.key),
                      sorted(units.values(), key=lambda f: f.key), total, points)


async def read_cases(cases_service: Any) -> tuple[list[dict[str, str]],
                                                  dict[str, list[dict[str, Any]]]]:
    """Every case and its status history (the number index scanned; history in one pipeline)."""
    all_cases = await cases_service.all_cases()
    return all_cases, await cases_service.histories(all_cases)


async def build(service: Any, *, since_ms: int | None = None, until_ms: int | None = None,
                lang: str = "") -> CaseReport:
    """The report of [since_ms, until_ms] (default: the last 30 days) for the routing service."""
    cfg = service.cfg
    now = await service.store.now_ms()
    lo, hi = default_range(now, cfg.city.tzinfo())
    since_ms = lo if since_ms is None else since_ms
    until_ms = hi if until_ms is None else until_ms
    cs = service.cases
    lang = lang or cfg.city.default_language
    all_cases, histories = await read_cases(cs)
    cats = {c.get("category", "") for c in all_cases} | set(cfg.cases.categories)
    units = {c.get("unit", "") for c in all_cases} | set(cfg.cases.units)
    return compute(all_cases, histories, since_ms=since_ms, until_ms=until_ms, now_ms=now,
                   category_labels={c: cs.label(c, lang) for c in cats},
                   unit_labels={u: cs.unit_label(u, lang) for u in units})


COLUMNS = ("group", "key", "label", "opened", "completed", "rejected", "open_now",
           "overdue_now", "median_hours_to_complete")


def rows(report: CaseReport) -> list[list[Any]]:
    out: list[list[Any]] = []
    for kind, groups in (("category", report.categories), ("unit", report.units),
                         ("total", [report.total])):
        for g in groups:
            out.append([kind, g.key, g.label, g.opened, g.completed, g.rejected, g.open_now,
                        g.overdue_now, "" if g.median_hours_to_complete is None
                        else g.median_hours_to_complete])
    return out


def _cell(value: Any) -> Any:
    # a spreadsheet must not run a label as a formula
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_text(report: CaseReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in rows(report):
        w.writerow([_cell(v) for v in row])
    return buf.getvalue()


def public_dict(report: CaseReport, decimals: int = 3) -> dict[str, Any]:
    """What anyone may see: counts, medians and open cases' places rounded to ~100 m."""
    return {
        "since_ms": report.since_ms, "until_ms": report.until_ms, "now_ms": report.now_ms,
        "categories": [g.public() for g in report.categories],
        "units": [g.public() for g in report.units],
        "total": report.total.public(),
        "open_cases": [{"lat": round(p["lat"], decimals), "lon": round(p["lon"], decimals),
                        "category": p["category"], "overdue": p["overdue"]}
                       for p in report.open_points],
    }
