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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queues.keys import Keys
from queues.stats_store import (
    IX_STATE_TTL_S,
    HashUpdate,
    StatsStore,
    StreamEntry,
)
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

INTERVAL_MS = 15 * 60 * 1000
ALL = "all"
# Upper bounds (seconds, inclusive) of the wait histograms; one more bucket ("inf") above them.
# 15 and 20 match the usual voice thresholds, 3600 the usual e-mail one.
HIST_BOUNDS_S = (5, 10, 15, 20, 30, 45, 60, 120, 300, 900, 3600)
# Threshold for a queue that is no longer in the configuration (its old events still count).
DEFAULT_THRESHOLD_S = 20.0
# How long `run` blocks on XREAD before it looks at the stop event again.
BLOCK_MS = 1000
RETRY_S = 1.0
_MAX_CONFLICTS = 10
_COMPLETE = ("COMPLETECALLER", "COMPLETEAGENT")
_IX_EVENTS = frozenset(
    {"ENTERQUEUE", "CONNECT", *_COMPLETE, "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "TRANSFER"}
)
_AGENT_EVENTS = frozenset({"ADDMEMBER", "REMOVEMEMBER", "PAUSE", "UNPAUSE"})


def interval_start(ms: int) -> int:
    return ms - ms % INTERVAL_MS


def hist_field(kind: Literal["ans", "ab"], wait_ms: int) -> str:
    """Histogram counter for a wait: `h_ans_le_20` holds answered waits in (15 s, 20 s]."""
    for bound in HIST_BOUNDS_S:
        if wait_ms <= bound * 1000:
            return f"h_{kind}_le_{bound}"
    return f"h_{kind}_inf"


def day_bounds_ms(day: date, tz: ZoneInfo) -> tuple[int, int]:
    """Epoch ms of the city-local midnight starting `day` and of the next one (DST-aware)."""
    start = datetime.combine(day, dtime(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def local_day(ms: int, tz: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz).date()


def _int(fields: Mapping[str, str], name: str) -> int:
    try:
        return int(float(fields.get(name) or 0))
    except ValueError:
        return 0


# --- folding -----------------------------------------------------------------------------------


class _Fold:
    """Turns one batch of events into hash updates, given the state as of the batch's start."""

    def __init__(
        self,
        keys: Keys,
        cfg: CitylineConfig,
        tz: ZoneInfo,
        ix_state: dict[str, dict[str, int]],
        agent_state: dict[str, dict[str, str]],
    ) -> None:
        self.keys = keys
        self.cfg = cfg
        self.tz = tz
        self.ttl_s = cfg.stats.retention_days * 86_400
        self.hashes: dict[str, HashUpdate] = {}
        self.ix = ix_state
        self.ix_touched: set[str] = set()
        self.ix_ended: set[str] = set()
        self.agents = agent_state
        self.agents_touched: set[str] = set()
        self._days: dict[int, str] = {}

    # counters
    def add(self, t_ms: int, scopes: Iterable[str | None], name: str, amount: int = 1) -> None:
        if not amount:
            return
        iv = interval_start(t_ms)
        for scope in scopes:
            if scope:
                self._hash(iv, scope).add(name, amount)

    def _hash(self, iv: int, scope: str) -> HashUpdate:
        key = self.keys.stats_interval(iv, scope)
        u = self.hashes.get(key)
        if u is None:
            day = self._days.get(iv)
            if day is None:
                day = self._days[iv] = local_day(iv, self.tz).isoformat()
            u = self.hashes[key] = HashUpdate(
                key, index=self.keys.stats_day_index(day), ttl_s=self.ttl_s
            )
        return u

    def _threshold_ms(self, queue: str) -> float:
        q = self.cfg.queues.get(queue)
        return (q.service_level.threshold_s if q else DEFAULT_THRESHOLD_S) * 1000

    # per-interaction state
    def _ix(self, ix: str) -> dict[str, int]:
        if not ix:  # an event without an interaction id: nothing to remember
            return {"c": 0, "x": 0}
        self.ix_touched.add(ix)
        self.ix_ended.discard(ix)
        return self.ix.setdefault(ix, {"c": 0, "x": 0})

    def _end(self, ix: str) -> None:
        if ix:
            self.ix_touched.add(ix)
            self.ix_ended.add(ix)

    def event(self, entry_id: str, f: Mapping[str, str]) -> None:
        ev = f.get("ev", "")
        handler = getattr(self, f"_on_{ev.lower()}", None)
        if handler is None:
            return  # CASECREATED, CASESTATUS, unknown verbs: nothing to count
        t = _int(f, "t")
        if t <= 0 or (ev in _AGENT_EVENTS and not f.get("agent")):
            # a malformed entry must not stop the statistics for good: count nothing, go on
            logger.warning("stats: skipping malformed event %s: %s", entry_id, dict(f))
            return
        queue, channel, agent = f.get("queue", ""), f.get("channel", ""), f.get("agent", "")
        scopes = _Scopes(
            q=f"q:{queue}" if queue else None,
            c=f"c:{channel}" if channel else None,
            a=f"a:{agent}" if agent else None,
        )
        handler(t, f, scopes)

    # queue events
    def _on_enterqueue(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q], "offered")
        if f.get("first") == "1":
            self.add(t, [s.c, ALL], "offered")
            self._ix(f.get("ix", "")).update(c=0, x=0)

    def _on_offer(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q, s.a], "offers")

    def _on_ringnoanswer(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q, s.c, ALL, s.a], "rona")
        if f.get("reason") == "timeout":
            self.add(t, [s.q, s.c, ALL, s.a], "rona_timeout")

    def _answered(self, t: int, scopes: list[str | None], wait: int, threshold: float) -> None:
        self.add(t, scopes, "answered")
        self.add(t, scopes, "wait_sum_answered_ms", wait)
        self.add(t, scopes, hist_field("ans", wait))
        if wait <= threshold:
            self.add(t, scopes, "answered_within_sl")

    def _on_connect(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        threshold = self._threshold_ms(f.get("queue", ""))
        self._answered(t, [s.q], _int(f, "wait_ms"), threshold)
        self.add(t, [s.a], "answered")
        state = self._ix(f.get("ix", ""))
        if state["c"] == 0:
            self._answered(t, [s.c, ALL], _int(f, "total_wait_ms"), threshold)
        state["c"] += 1

    def _on_completecaller(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        scopes = [s.q, s.c, ALL, s.a]
        self.add(t, scopes, "handled")
        self.add(t, scopes, "talk_sum_ms", _int(f, "talk_ms"))
        side = "caller" if f["ev"] == "COMPLETECALLER" else "agent"
        self.add(t, scopes, f"completed_by_{side}")
        if self._ix(f.get("ix", ""))["x"] == 0:
            self.add(t, scopes, "first_contact_resolved")
        self._end(f.get("ix", ""))

    _on_completeagent = _on_completecaller

    def _on_wrapupend(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        scopes = [s.q, s.c, ALL, s.a]
        self.add(t, scopes, "wrapups")
        self.add(t, scopes, "wrapup_sum_ms", _int(f, "wrapup_ms"))

    def _abandoned(
        self, t: int, scopes: list[str | None], wait: int, short: bool, threshold: float
    ) -> None:
        self.add(t, scopes, "abandoned")
        self.add(t, scopes, "wait_sum_abandoned_ms", wait)
        self.add(t, scopes, hist_field("ab", wait))
        if short:
            self.add(t, scopes, "short_abandoned")
        elif wait > threshold:
            self.add(t, scopes, "abandoned_after_sl")

    def _on_abandon(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        threshold = self._threshold_ms(f.get("queue", ""))
        short = f.get("short") == "1"
        self._abandoned(t, [s.q], _int(f, "wait_ms"), short, threshold)
        if f.get("during") == "offered":
            self.add(t, [s.a], "offers_abandoned")
        if self._ix(f.get("ix", ""))["c"] == 0:
            self._abandoned(t, [s.c, ALL], _int(f, "total_wait_ms"), short, threshold)
        self._end(f.get("ix", ""))

    def _left_queue(self, t: int, f: Mapping[str, str], s: _Scopes, name: str, final: bool) -> None:
        self.add(t, [s.q], name)
        self.add(t, [s.q], "wait_sum_timeout_ms", _int(f, "wait_ms"))
        if final:
            if self._ix(f.get("ix", ""))["c"] == 0:
                self.add(t, [s.c, ALL], name)
                self.add(t, [s.c, ALL], "wait_sum_timeout_ms", _int(f, "total_wait_ms"))
            self._end(f.get("ix", ""))

    def _on_exitwithtimeout(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        # with an overflow queue the contact goes on there: not the resident's outcome yet
        self._left_queue(t, f, s, "timeouts", final=not f.get("overflow"))

    def _on_exitempty(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self._left_queue(t, f, s, "exitempty", final=True)

    def _on_transfer(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q, s.c, ALL, s.a], "transfers")
        if f.get("from_state") == "connected":
            # talk before a hand-over is not in AHT (no COMPLETE), but it is the agent's work
            self.add(t, [s.q, s.a], "transfer_talk_ms", _int(f, "talk_ms"))
        self._ix(f.get("ix", ""))["x"] += 1

    def _on_escalate(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q], "escalations")

    def _on_deflected(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q, s.c, ALL], "deflected")

    def _on_message(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        who = "agent" if f.get("from") == "agent" else "resident"
        self.add(t, [s.q, s.c, ALL], f"messages_from_{who}")
        if who == "agent":
            self.add(t, [s.a], "messages_sent")

    # agent events: state_ms is the time in the state the agent leaves
    def _state_time(self, t: int, agent: str, s: _Scopes, state_ms: int, guess: str) -> None:
        prev = self.agents.get(agent) or {}
        state = prev.get("state") or guess
        if state == "ready":
            names = ["ready_ms"]
        elif state == "not_ready":
            names = ["paused_ms", f"paused_ms:{prev.get('reason') or 'unknown'}"]
        else:
            logger.debug("stats: %d ms of agent %s in unknown state %r", state_ms, agent, state)
            return
        for iv, piece in split_intervals(t - state_ms, t):
            self.add(iv, [s.a], names[0], piece)
            if len(names) > 1:
                self.add(iv, [s.a], names[1], piece)

    def _set_agent(self, agent: str, state: str, reason: str = "") -> None:
        self.agents[agent] = {"state": state, "reason": reason}
        self.agents_touched.add(agent)

    def _on_addmember(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.a], "logins")
        self._set_agent(f["agent"], f.get("state") or "ready", f.get("reason", ""))

    def _on_removemember(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self._state_time(t, f["agent"], s, _int(f, "state_ms"), guess="")
        self._set_agent(f["agent"], "offline")

    def _on_pause(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self._state_time(t, f["agent"], s, _int(f, "state_ms"), guess="ready")
        self._set_agent(f["agent"], "not_ready", f.get("reason", ""))

    def _on_unpause(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self._state_time(t, f["agent"], s, _int(f, "state_ms"), guess="not_ready")
        self._set_agent(f["agent"], "ready")

    def updates(self) -> list[HashUpdate]:
        out = list(self.hashes.values())
        for ix in sorted(self.ix_touched):
            key = self.keys.stats_ix(ix)
            if ix in self.ix_ended:
                out.append(HashUpdate(key, delete=True))
            else:
                st = self.ix[ix]
                out.append(
                    HashUpdate(key, ttl_s=IX_STATE_TTL_S, assign={k: str(v) for k, v in st.items()})
                )
        for agent in sorted(self.agents_touched):
            out.append(HashUpdate(self.keys.stats_agent(agent), assign=self.agents[agent]))
        return out


class _Scopes:
    __slots__ = ("a", "c", "q")

    def __init__(self, q: str | None, c: str | None, a: str | None) -> None:
        self.q, self.c, self.a = q, c, a


def split_intervals(start_ms: int, end_ms: int) -> Iterator[tuple[int, int]]:
    """(interval start, ms of [start_ms, end_ms) inside it) for every interval it touches."""
    t = start_ms
    while t < end_ms:
        iv = interval_start(t)
        upto = min(end_ms, iv + INTERVAL_MS)
        yield iv, upto - t
        t = upto


# --- reports and live state --------------------------------------------------------------------


class StatsAggregator:
    """Folds events into the interval aggregates and reads them back as figures."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, cfg: CitylineConfig) -> None:
        self.redis = redis
        self.keys = keys
        self.cfg = cfg
        self.store = StatsStore(redis, keys)
        self.tz = ZoneInfo(cfg.city.timezone)
        sample = keys.stats_interval(123, "SCOPE")
        self._key_head = sample[: sample.index("123")]
        self._key_sep = sample[len(self._key_head) + 3 : sample.index("SCOPE")]

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
            fold = await self._fold(entries)
            if await self.store.apply(cursor, entries[-1].id, fold.updates()):
                logger.debug("stats: folded %d events up to %s", len(entries), entries[-1].id)
                return len(entries)
            logger.debug("stats: cursor moved under us (another aggregator); re-reading")
        return 0

    async def _fold(self, entries: Sequence[StreamEntry]) -> _Fold:
        ixs = sorted(
            {
                e.fields["ix"]
                for e in entries
                if e.fields.get("ev") in _IX_EVENTS and e.fields.get("ix")
            }
        )
        agents = sorted(
            {
                e.fields["agent"]
                for e in entries
                if e.fields.get("ev") in _AGENT_EVENTS and e.fields.get("agent")
            }
        )
        rows = await self.store.read_hashes(
            [self.keys.stats_ix(ix) for ix in ixs]
            + [self.keys.stats_agent(a) for a in agents]
        )
        ix_state = {
            ix: {"c": _int(r, "c"), "x": _int(r, "x")}
            for ix, r in zip(ixs, rows[: len(ixs)], strict=True)
            if r
        }
        agent_state = {a: dict(r) for a, r in zip(agents, rows[len(ixs) :], strict=True) if r}
        fold = _Fold(self.keys, self.cfg, self.tz, ix_state, agent_state)
        for entry in entries:
            fold.event(entry.id, entry.fields)
        return fold

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

    # --- reading ---------------------------------------------------------------------------

    def _parse_key(self, key: str) -> tuple[int, str] | None:
        if not key.startswith(self._key_head):
            return None
        ms, sep, scope = key[len(self._key_head) :].partition(self._key_sep)
        if not sep or not ms.isdigit():
            return None
        return int(ms), scope

    async def _intervals(self, start_ms: int, end_ms: int) -> dict[str, dict[int, dict[str, int]]]:
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

    async def _read_direct(
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

    def _queue_names(self, seen: Iterable[str]) -> list[str]:
        extra = sorted({s[2:] for s in seen if s.startswith("q:")} - set(self.cfg.queues))
        return [*self.cfg.queues, *extra]

    def _channel_names(self, seen: Iterable[str]) -> list[str]:
        configured = list(dict.fromkeys(str(q.channel) for q in self.cfg.queues.values()))
        extra = sorted({s[2:] for s in seen if s.startswith("c:")} - set(configured))
        return [*configured, *extra]

    def _agent_names(self, seen: Iterable[str]) -> list[str]:
        extra = sorted({s[2:] for s in seen if s.startswith("a:")} - set(self.cfg.agents))
        return [*self.cfg.agents, *extra]

    async def interval_report(
        self, cfg: CitylineConfig | None = None, day: date | None = None
    ) -> list[IntervalRow]:
        """Every 15-minute interval of a city-local day, per queue, per channel and in total."""
        if cfg is not None and cfg is not self.cfg:
            return await StatsAggregator(self.redis, self.keys, cfg).interval_report(cfg, day)
        if day is None:
            day = local_day(await self.store.now_ms(), self.tz)
        start_ms, end_ms = day_bounds_ms(day, self.tz)
        data = await self._intervals(start_ms, end_ms)
        scopes: list[tuple[Literal["queue", "channel", "all"], str, str]] = [
            *(("queue", q, f"q:{q}") for q in self._queue_names(data)),
            *(("channel", c, f"c:{c}") for c in self._channel_names(data)),
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
        data = await self._intervals(interval_start(start_ms), end_ms)
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
            for a in self._agent_names(totals)
        ]
        return PeriodReport(
            start=datetime.fromtimestamp(start_ms / 1000, self.tz).isoformat(),
            end=datetime.fromtimestamp(end_ms / 1000, self.tz).isoformat(),
            queues=[named("queue", q, f"q:{q}") for q in self._queue_names(totals)],
            channels=[named("channel", c, f"c:{c}") for c in self._channel_names(totals)],
            total=named("all", ALL, ALL),
            agents=agents,
        )

    async def day_report(self, day: date) -> PeriodReport:
        return await self.period_report(*day_bounds_ms(day, self.tz))

    # --- live ------------------------------------------------------------------------------

    async def live_snapshot(self, cfg: CitylineConfig | None = None) -> LiveSnapshot:
        """What the supervisor wall shows now: waiting, agents, today's and this interval's
        figures and the staffing the recent traffic needs, per queue, channel and agent."""
        if cfg is not None and cfg is not self.cfg:
            return await StatsAggregator(self.redis, self.keys, cfg).live_snapshot(cfg)
        cfg = self.cfg
        now = await self.store.now_ms()
        today = local_day(now, self.tz)
        day_start, _ = day_bounds_ms(today, self.tz)
        current = interval_start(now)
        data = await self._intervals(day_start, current + INTERVAL_MS)
        # the Erlang window: the current interval and the ones before it, up to now
        window_ivs = [current - i * INTERVAL_MS for i in range(cfg.stats.erlang_window_intervals)]
        elapsed_s = (now - window_ivs[-1]) / 1000
        channels = self._channel_names(())
        window = await self._read_direct(
            [*(f"q:{q}" for q in cfg.queues), *(f"c:{c}" for c in channels)], window_ivs
        )
        waiting = await self._waiting(list(cfg.queues))
        agents = await self._agent_hashes()

        def today_of(scope: str) -> dict[str, int]:
            return merge_counters(data.get(scope, {}).values())

        def now_of(scope: str) -> dict[str, int]:
            return data.get(scope, {}).get(current, {})

        queues: list[QueueLive] = []
        for name, q in cfg.queues.items():
            scope = f"q:{name}"
            count, oldest = waiting[name]
            queues.append(
                QueueLive(
                    name=name,
                    channel=str(q.channel),
                    waiting=count,
                    longest_wait_s=max(0.0, (now - oldest) / 1000) if oldest is not None else 0.0,
                    agents=_count_agents(
                        a for a in agents.values() if _qualifies(a, q.skills, str(q.channel))
                    ),
                    today=QueueFigures.from_counters(today_of(scope)),
                    interval=QueueFigures.from_counters(now_of(scope)),
                    staffing=staffing(
                        window[scope],
                        elapsed_s,
                        today_of(scope),
                        q.service_level.target_pct,
                        q.service_level.threshold_s,
                    ),
                    target_pct=q.service_level.target_pct,
                    threshold_s=q.service_level.threshold_s,
                    abandon_target_pct=q.abandon_target_pct,
                )
            )
        channel_rows: list[ChannelLive] = []
        for ch in channels:
            scope = f"c:{ch}"
            mine = [ql for ql in queues if ql.channel == ch]
            olds = [waiting[ql.name][1] for ql in mine if waiting[ql.name][1] is not None]
            need = staffing(window[scope], elapsed_s, today_of(scope), None, None)
            need.erlang_c_agents = _sum_or_none(ql.staffing.erlang_c_agents for ql in mine)
            need.erlang_a_agents = _sum_or_none(ql.staffing.erlang_a_agents for ql in mine)
            channel_rows.append(
                ChannelLive(
                    name=ch,
                    waiting=sum(ql.waiting for ql in mine),
                    longest_wait_s=max(0.0, (now - min(olds)) / 1000) if olds else 0.0,
                    agents=_count_agents(
                        a
                        for a in agents.values()
                        if any(_qualifies(a, cfg.queues[ql.name].skills, ch) for ql in mine)
                    ),
                    today=QueueFigures.from_counters(today_of(scope)),
                    interval=QueueFigures.from_counters(now_of(scope)),
                    staffing=need,
                )
            )
        agent_rows = []
        for agent_id in sorted(set(agents) | set(cfg.agents)):
            a = agents.get(agent_id, {})
            since = _int(a, "state_since")
            counters = today_of(f"a:{agent_id}")
            configured = cfg.agents.get(agent_id)
            agent_rows.append(
                AgentLive(
                    id=agent_id,
                    name=configured.name if configured else a.get("name", ""),
                    state=a.get("state") or "offline",
                    reason=a.get("reason", ""),
                    state_s=max(0.0, (now - since) / 1000) if since else None,
                    load={k[5:]: _int(a, k) for k in sorted(a) if k.startswith("load:")},
                    handled_today=counters.get("handled", 0),
                    today=AgentFigures.from_counters(counters),
                )
            )
        return LiveSnapshot(
            now_ms=now,
            day=today.isoformat(),
            interval_start_ms=current,
            queues=queues,
            channels=channel_rows,
            total=QueueFigures.from_counters(today_of(ALL)),
            agents=agent_rows,
        )

    async def _waiting(self, queues: Sequence[str]) -> dict[str, tuple[int, int | None]]:
        """queue -> (number waiting, position time of the oldest in ms or None)."""
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.smembers(self.keys.queue_buckets(q))
        bucket_sets = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        order: list[str] = []
        for q, buckets in zip(queues, bucket_sets, strict=True):
            for b in sorted(buckets):
                order.append(q)
                pipe.zcard(self.keys.bucket(b))
                pipe.zrange(self.keys.bucket(b), 0, 0, withscores=True)
        replies = await pipe.execute()
        out: dict[str, tuple[int, int | None]] = {q: (0, None) for q in queues}
        for i, q in enumerate(order):
            count, head = replies[2 * i], replies[2 * i + 1]
            total, oldest = out[q]
            if head:
                score = int(head[0][1])
                oldest = score if oldest is None else min(oldest, score)
            out[q] = (total + int(count), oldest)
        return out

    async def _agent_hashes(self) -> dict[str, dict[str, str]]:
        ids = sorted(await self.redis.smembers(self.keys.agents))
        rows = await self.store.read_hashes([self.keys.agent(a) for a in ids])
        return {a: r for a, r in zip(ids, rows, strict=True) if r}


def _qualifies(agent: Mapping[str, str], needed: Mapping[str, int], channel: str) -> bool:
    """Does this agent count for a queue: skills at the queue's minimum levels, and capacity on
    its channel (an agent whose capacity there is 0 never gets its contacts)?"""
    cap = agent.get(f"cap:{channel}")
    if cap is not None and _int(agent, f"cap:{channel}") <= 0:
        return False
    try:
        skills = json.loads(agent.get("skills") or "{}")
    except ValueError:
        return False
    return all(int(skills.get(s, 0)) >= level for s, level in needed.items())


def _count_agents(agents: Iterable[Mapping[str, str]]) -> AgentCounts:
    counts = AgentCounts()
    for a in agents:
        state = a.get("state") or "offline"
        if state == "ready":
            if sum(_int(a, k) for k in a if k.startswith("load:")) > 0:
                counts.busy += 1
            else:
                counts.ready += 1
        elif state == "not_ready":
            counts.paused += 1
        else:
            counts.offline += 1
    return counts


def _sum_or_none(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None
