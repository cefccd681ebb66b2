"""Reading the interval aggregates back: counters per scope and interval, and reports over periods.

`StatsReader` finds a period's intervals through the per-day index the fold writes, sums
counters per scope, and names the queues, channels and agents a report lists: the configured
ones in configuration order, then any others the data still mentions, sorted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from queues.keys import Keys
from queues.stats_store import StatsStore
from router.stats_figures import (
    AgentFigures,
    IntervalRow,
    NamedAgentFigures,
    NamedFigures,
    PeriodReport,
    QueueFigures,
    add_counters,
    merge_counters,
)
from router.stats_fold import ALL
from router.stats_intervals import INTERVAL_MS, day_bounds_ms, interval_start, local_day

if TYPE_CHECKING:
    from router.config import CitylineConfig

__all__ = ["StatsReader"]


class StatsReader:
    """Counters of the written intervals, and the interval and period reports built on them."""

    def __init__(self, store: StatsStore, keys: Keys, cfg: CitylineConfig, tz: ZoneInfo) -> None:
        self.store = store
        self.keys = keys
        self.cfg = cfg
        self.tz = tz
        # the interval key's shape, taken from Keys so the two never drift apart
        sample = keys.stats_interval(123, "SCOPE")
        self._key_head = sample[: sample.index("123")]
        self._key_sep = sample[len(self._key_head) + 3 : sample.index("SCOPE")]

    def _parse_key(self, key: str) -> tuple[int, str] | None:
        if not key.startswith(self._key_head):
            return None
        ms, sep, scope = key[len(self._key_head) :].partition(self._key_sep)
        if not sep or not ms.isdigit():
            return None
        return int(ms), scope

    async def intervals(self, start_ms: int, end_ms: int) -> dict[str, dict[int, dict[str, int]]]:
        """scope -> interval start -> counters, for every written interval in [start, end)."""
        day = local_day(start_ms, self.tz)
        last = local_day(max(start_ms, end_ms - 1), self.tz)
        wanted: list[tuple[str, int, str]] = []
        while day <= last:
            for key in await self.store.day_index(day.isoformat()):
                parsed = self._parse_key(key)
                if parsed and start_ms <= parsed[0] < end_ms:
                    wanted.append((key, parsed[0], parsed[1]))
            day += timedelta(days=1)
        wanted.sort()
        out: dict[str, dict[int, dict[str, int]]] = {}
        for (_, iv, scope), row in zip(
            wanted, await self.store.read_hashes([w[0] for w in wanted]), strict=True
        ):
            if row:
                out.setdefault(scope, {})[iv] = {k: int(float(v)) for k, v in row.items()}
        return out

    async def read_direct(
        self, scopes: Sequence[str], intervals: Sequence[int]
    ) -> dict[str, dict[str, int]]:
        """scope -> counters summed over the given intervals (no day index needed)."""
        keys = [(s, self.keys.stats_interval(iv, s)) for s in scopes for iv in intervals]
        out: dict[str, dict[str, int]] = {s: {} for s in scopes}
        for (scope, _), row in zip(
            keys, await self.store.read_hashes([k for _, k in keys]), strict=True
        ):
            add_counters(out[scope], {k: int(float(v)) for k, v in row.items()})
        return out

    def queue_names(self, seen: Iterable[str]) -> list[str]:
        extra = sorted({s[2:] for s in seen if s.startswith("q:")} - set(self.cfg.queues))
        return [*self.cfg.queues, *extra]

    def channel_names(self, seen: Iterable[str]) -> list[str]:
        configured = list(dict.fromkeys(str(q.channel) for q in self.cfg.queues.values()))
        extra = sorted({s[2:] for s in seen if s.startswith("c:")} - set(configured))
        return [*configured, *extra]

    def agent_names(self, seen: Iterable[str]) -> list[str]:
        extra = sorted({s[2:] for s in seen if s.startswith("a:")} - set(self.cfg.agents))
        return [*self.cfg.agents, *extra]

    async def interval_report(self, day: date | None = None) -> list[IntervalRow]:
        """Every 15-minute interval of a city-local day, per queue, per channel and in total."""
        if day is None:
            day = local_day(await self.store.now_ms(), self.tz)
        start_ms, end_ms = day_bounds_ms(day, self.tz)
        data = await self.intervals(start_ms, end_ms)
        scopes: list[tuple[Literal["queue", "channel", "all"], str, str]] = [
            *(("queue", q, f"q:{q}") for q in self.queue_names(data)),
            *(("channel", c, f"c:{c}") for c in self.channel_names(data)),
            ("all", ALL, ALL),
        ]
        rows: list[IntervalRow] = []
        for iv in range(interval_start(start_ms), end_ms, INTERVAL_MS):
            start = datetime.fromtimestamp(iv / 1000, self.tz).isoformat()
            for kind, name, scope in scopes:
                counters = data.get(scope, {}).get(iv, {})
                rows.append(
                    IntervalRow(
                        interval_start_ms=iv,
                        start=start,
                        kind=kind,
                        name=name,
                        counters=counters,
                        figures=QueueFigures.from_counters(counters),
                    )
                )
        return rows

    async def period_report(self, start_ms: int, end_ms: int) -> PeriodReport:
        """Totals over [start_ms, end_ms), rounded out to whole intervals."""
        data = await self.intervals(interval_start(start_ms), end_ms)
        totals = {scope: merge_counters(per_iv.values()) for scope, per_iv in data.items()}

        def named(kind: Literal["queue", "channel", "all"], name: str, scope: str) -> NamedFigures:
            c = totals.get(scope, {})
            return NamedFigures(
                kind=kind, name=name, counters=c, figures=QueueFigures.from_counters(c)
            )

        agents = [
            NamedAgentFigures(
                agent=a,
                name=self.cfg.agents[a].name if a in self.cfg.agents else "",
                counters=totals.get(f"a:{a}", {}),
                figures=AgentFigures.from_counters(totals.get(f"a:{a}", {})),
            )
            for a in self.agent_names(totals)
        ]
        return PeriodReport(
            start=datetime.fromtimestamp(start_ms / 1000, self.tz).isoformat(),
            end=datetime.fromtimestamp(end_ms / 1000, self.tz).isoformat(),
            queues=[named("queue", q, f"q:{q}") for q in self.queue_names(totals)],
            channels=[named("channel", c, f"c:{c}") for c in self.channel_names(totals)],
            total=named("all", ALL, ALL),
            agents=agents,
        )

    async def day_report(self, day: date) -> PeriodReport:
        return await self.period_report(*day_bounds_ms(day, self.tz))
