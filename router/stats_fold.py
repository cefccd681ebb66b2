"""The per-event folding rules: which counters of which scopes one event of `cl:events` adds to.

`Fold` turns a batch of events into hash updates, given the per-interaction and per-agent state
as of the batch's start; `load_fold` reads that state and folds a batch. Applying the updates
(cursor-checked, so each event counts once) is queues/stats_store.py's job, the loop around it
router/stats.py's. The rules themselves are described in router/stats.py and docs/statistics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from queues.keys import Keys
from queues.stats_store import IX_STATE_TTL_S, HashUpdate, StatsStore, StreamEntry
from router.stats_intervals import interval_start, local_day, split_intervals

if TYPE_CHECKING:
    from router.config import CitylineConfig

__all__ = [
    "ALL",
    "DEFAULT_THRESHOLD_S",
    "HIST_BOUNDS_S",
    "Fold",
    "hist_field",
    "int_field",
    "load_fold",
]

# The statistics subsystem logs under one name, whichever of its modules speaks.
logger = logging.getLogger("router.stats")

# The scope of everything; the others are `q:<queue>`, `c:<channel>` and `a:<agent>`.
ALL = "all"
# Upper bounds (seconds, inclusive) of the wait histograms; one more bucket ("inf") above them.
# 15 and 20 match the usual voice thresholds, 3600 the usual e-mail one.
HIST_BOUNDS_S = (5, 10, 15, 20, 30, 45, 60, 120, 300, 900, 3600)
# Threshold for a queue that is no longer in the configuration (its old events still count).
DEFAULT_THRESHOLD_S = 20.0
_COMPLETE = ("COMPLETECALLER", "COMPLETEAGENT")
# Events whose interaction's state (times connected, times transferred) the fold reads.
_IX_EVENTS = frozenset(
    {"ENTERQUEUE", "CONNECT", *_COMPLETE, "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "TRANSFER",
     "KBANSWER"}
)
# Events whose agent's state (ready or paused, and why) the fold reads.
_AGENT_EVENTS = frozenset({"ADDMEMBER", "REMOVEMEMBER", "PAUSE", "UNPAUSE"})


def hist_field(kind: Literal["ans", "ab"], wait_ms: int) -> str:
    """Histogram counter for a wait: `h_ans_le_20` holds answered waits in (15 s, 20 s]."""
    for bound in HIST_BOUNDS_S:
        if wait_ms <= bound * 1000:
            return f"h_{kind}_le_{bound}"
    return f"h_{kind}_inf"


def int_field(fields: Mapping[str, str], name: str) -> int:
    """A numeric field of an event or a hash; missing or unreadable counts as 0."""
    try:
        return int(float(fields.get(name) or 0))
    except ValueError:
        return 0


async def load_fold(
    store: StatsStore,
    keys: Keys,
    cfg: CitylineConfig,
    tz: ZoneInfo,
    entries: Sequence[StreamEntry],
) -> Fold:
    """Read the state the batch's events need, then fold the batch."""
    ixs = sorted(
        {e.fields["ix"] for e in entries if e.fields.get("ev") in _IX_EVENTS and e.fields.get("ix")}
    )
    agents = sorted(
        {
            e.fields["agent"]
            for e in entries
            if e.fields.get("ev") in _AGENT_EVENTS and e.fields.get("agent")
        }
    )
    rows = await store.read_hashes(
        [keys.stats_ix(ix) for ix in ixs] + [keys.stats_agent(a) for a in agents]
    )
    ix_state = {
        ix: {"c": int_field(r, "c"), "x": int_field(r, "x")}
        for ix, r in zip(ixs, rows[: len(ixs)], strict=True)
        if r
    }
    for ix, r in zip(ixs, rows[: len(ixs)], strict=True):
        if int_field(r, "k"):  # answered from a knowledge card (KBANSWER while connected)
            ix_state[ix]["k"] = 1
    agent_state = {a: dict(r) for a, r in zip(agents, rows[len(ixs) :], strict=True) if r}
    fold = Fold(keys, cfg, tz, ix_state, agent_state)
    for entry in entries:
        fold.event(entry.id, entry.fields)
    return fold


class _Scopes:
    __slots__ = ("a", "c", "q")

    def __init__(self, q: str | None, c: str | None, a: str | None) -> None:
        self.q, self.c, self.a = q, c, a


class Fold:
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
        t = int_field(f, "t")
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
        self._answered(t, [s.q], int_field(f, "wait_ms"), threshold)
        self.add(t, [s.a], "answered")
        state = self._ix(f.get("ix", ""))
        if state["c"] == 0:
            self._answered(t, [s.c, ALL], int_field(f, "total_wait_ms"), threshold)
        state["c"] += 1
        if "promised_wait_ms" in f:  # what the resident was told against what happened
            error = int_field(f, "waited_after_promise_ms") - int_field(f, "promised_wait_ms")
            self.add(t, [s.q, s.c, ALL], "promises")
            self.add(t, [s.q, s.c, ALL], "promise_error_abs_ms", abs(error))
            if error > 0:
                self.add(t, [s.q, s.c, ALL], "promises_broken")

    def _on_completecaller(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        scopes = [s.q, s.c, ALL, s.a]
        self.add(t, scopes, "handled")
        self.add(t, scopes, "talk_sum_ms", int_field(f, "talk_ms"))
        side = "caller" if f["ev"] == "COMPLETECALLER" else "agent"
        self.add(t, scopes, f"completed_by_{side}")
        state = self._ix(f.get("ix", ""))
        if state["x"] == 0:
            self.add(t, scopes, "first_contact_resolved")
            if state.get("k"):  # answered from a knowledge card while connected
                self.add(t, scopes, "kb_resolved")
        self._end(f.get("ix", ""))

    _on_completeagent = _on_completecaller

    def _on_wrapupend(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        scopes = [s.q, s.c, ALL, s.a]
        self.add(t, scopes, "wrapups")
        self.add(t, scopes, "wrapup_sum_ms", int_field(f, "wrapup_ms"))

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
        self._abandoned(t, [s.q], int_field(f, "wait_ms"), short, threshold)
        if f.get("during") == "offered":
            self.add(t, [s.a], "offers_abandoned")
        if self._ix(f.get("ix", ""))["c"] == 0:
            self._abandoned(t, [s.c, ALL], int_field(f, "total_wait_ms"), short, threshold)
        self._end(f.get("ix", ""))

    def _left_queue(self, t: int, f: Mapping[str, str], s: _Scopes, name: str, final: bool) -> None:
        self.add(t, [s.q], name)
        self.add(t, [s.q], "wait_sum_timeout_ms", int_field(f, "wait_ms"))
        if final:
            if self._ix(f.get("ix", ""))["c"] == 0:
                self.add(t, [s.c, ALL], name)
                self.add(t, [s.c, ALL], "wait_sum_timeout_ms", int_field(f, "total_wait_ms"))
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
            self.add(t, [s.q, s.a], "transfer_talk_ms", int_field(f, "talk_ms"))
        self._ix(f.get("ix", ""))["x"] += 1

    def _on_kbanswer(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        # answered from a knowledge card: while connected, remembered for the COMPLETE (a
        # transfer may still follow); in wrap-up the contact is over, so it counts now, once
        if f.get("during") == "connected":
            self._ix(f.get("ix", ""))["k"] = 1
        elif f.get("first") == "1" and int_field(f, "transfers") == 0:
            self.add(t, [s.q, s.c, ALL, s.a], "kb_resolved")

    def _on_escalate(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q], "escalations")

    def _on_deflected(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self.add(t, [s.q, s.c, ALL], "deflected")

    def _on_ivrabandon(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        # left in the IVR menus: never offered to a queue, so outside the abandonment rate
        self.add(t, [s.c, ALL], "ivr_abandoned")

    def _on_message(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        sender = f.get("from")
        if sender == "system":  # the city's own (a case's number and link): nobody's words
            return
        who = "agent" if sender == "agent" else "resident"
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
        self._state_time(t, f["agent"], s, int_field(f, "state_ms"), guess="")
        self._set_agent(f["agent"], "offline")

    def _on_pause(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self._state_time(t, f["agent"], s, int_field(f, "state_ms"), guess="ready")
        self._set_agent(f["agent"], "not_ready", f.get("reason", ""))

    def _on_unpause(self, t: int, f: Mapping[str, str], s: _Scopes) -> None:
        self._state_time(t, f["agent"], s, int_field(f, "state_ms"), guess="not_ready")
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
