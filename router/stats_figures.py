"""Figures derived from the statistics' counters, and the shapes reports and live state take.

Every ratio and average is computed here and only here (`QueueFigures.from_counters`,
`AgentFigures.from_counters`), so the supervisor wall, the API, `cityline stats`, /metrics and the
tests agree. Ratios are fractions 0..1, times seconds; a figure whose denominator is 0 is None,
never 0 or NaN ("no data" is not "perfect" or "terrible").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, Field

from router.erlang import agents_needed_erlang_a, agents_needed_erlang_c


def _ratio(num: float, den: float, scale: float = 1.0) -> float | None:
    """num/den, or None when there is nothing to divide by (never 0 or NaN for "no data")."""
    return num / den * scale if den > 0 else None


# --- derived figures: the one place they are computed ------------------------------------------


class QueueFigures(BaseModel):
    """Counters and derived figures of a queue, a channel or everything, over some period.

    Ratios are fractions 0..1, times are seconds; a figure whose denominator is 0 is None.
    """

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    answered_within_sl: int = 0
    abandoned_after_sl: int = 0
    timeouts: int = 0
    handled: int = 0
    transfers: int = 0
    rona: int = 0
    deflected: int = 0
    first_contact_resolved: int = 0
    kb_resolved: int = Field(
        0, description="first-contact resolutions from the knowledge base (a card answered it)"
    )
    service_level: float | None = Field(
        None, description="answered within T / (answered + abandoned after T)"
    )
    abandonment_rate: float | None = Field(
        None, description="(abandoned - short) / (offered - short)"
    )
    asa_s: float | None = Field(None, description="mean wait of the answered")
    aht_s: float | None = Field(None, description="(talk + wrap-up) / handled")
    avg_talk_s: float | None = None
    avg_wrapup_s: float | None = None
    avg_abandon_wait_s: float | None = None
    transfer_rate: float | None = Field(None, description="transfers / answered")
    fcr_rate: float | None = Field(None, description="first-contact resolved / handled")
    kb_rate: float | None = Field(None, description="resolved from the knowledge base / handled")
    kb_fcr_share: float | None = Field(
        None, description="resolved from the knowledge base / first-contact resolved"
    )

    @classmethod
    def from_counters(cls, counters: Mapping[str, int | str]) -> QueueFigures:
        c = {k: int(v) for k, v in counters.items() if not k.startswith("h_")}

        def n(name: str) -> int:
            return c.get(name, 0)

        short = n("short_abandoned")
        return cls(
            offered=n("offered"),
            answered=n("answered"),
            abandoned=n("abandoned"),
            short_abandoned=short,
            answered_within_sl=n("answered_within_sl"),
            abandoned_after_sl=n("abandoned_after_sl"),
            timeouts=n("timeouts"),
            handled=n("handled"),
            transfers=n("transfers"),
            rona=n("rona"),
            deflected=n("deflected"),
            first_contact_resolved=n("first_contact_resolved"),
            kb_resolved=n("kb_resolved"),
            service_level=_ratio(n("answered_within_sl"), n("answered") + n("abandoned_after_sl")),
            abandonment_rate=_ratio(n("abandoned") - short, n("offered") - short),
            asa_s=_ratio(n("wait_sum_answered_ms"), n("answered"), 1 / 1000),
            aht_s=_ratio(n("talk_sum_ms") + n("wrapup_sum_ms"), n("handled"), 1 / 1000),
            avg_talk_s=_ratio(n("talk_sum_ms"), n("handled"), 1 / 1000),
            avg_wrapup_s=_ratio(n("wrapup_sum_ms"), n("wrapups"), 1 / 1000),
            avg_abandon_wait_s=_ratio(n("wait_sum_abandoned_ms"), n("abandoned"), 1 / 1000),
            transfer_rate=_ratio(n("transfers"), n("answered")),
            fcr_rate=_ratio(n("first_contact_resolved"), n("handled")),
            kb_rate=_ratio(n("kb_resolved"), n("handled")),
            kb_fcr_share=_ratio(n("kb_resolved"), n("first_contact_resolved")),
        )


class AgentFigures(BaseModel):
    """An agent's counters and derived figures over some period."""

    offers: int = 0
    answered: int = 0
    rona: int = 0
    handled: int = 0
    transfers: int = 0
    first_contact_resolved: int = 0
    kb_resolved: int = 0
    talk_s: float = 0.0
    wrapup_s: float = 0.0
    ready_s: float = 0.0
    paused_s: float = 0.0
    paused_by_reason_s: dict[str, float] = Field(default_factory=dict)
    aht_s: float | None = None
    occupancy: float | None = Field(
        None,
        description="(talk + wrap-up) / time ready; above 1 when text contacts run side by side",
    )

    @classmethod
    def from_counters(cls, counters: Mapping[str, int | str]) -> AgentFigures:
        c = {k: int(v) for k, v in counters.items()}

        def n(name: str) -> int:
            return c.get(name, 0)

        work = n("talk_sum_ms") + n("wrapup_sum_ms")
        return cls(
            offers=n("offers"),
            answered=n("answered"),
            rona=n("rona"),
            handled=n("handled"),
            transfers=n("transfers"),
            first_contact_resolved=n("first_contact_resolved"),
            kb_resolved=n("kb_resolved"),
            talk_s=n("talk_sum_ms") / 1000,
            wrapup_s=n("wrapup_sum_ms") / 1000,
            ready_s=n("ready_ms") / 1000,
            paused_s=n("paused_ms") / 1000,
            paused_by_reason_s={
                k.removeprefix("paused_ms:"): v / 1000
                for k, v in sorted(c.items())
                if k.startswith("paused_ms:")
            },
            aht_s=_ratio(work, n("handled"), 1 / 1000),
            occupancy=_ratio(work, n("ready_ms")),
        )


def add_counters(into: dict[str, int], more: Mapping[str, int | str]) -> dict[str, int]:
    for k, v in more.items():
        into[k] = into.get(k, 0) + int(v)
    return into


def merge_counters(rows: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        add_counters(out, row)
    return out


class IntervalRow(BaseModel):
    """One 15-minute interval of one queue, channel or the whole centre."""

    interval_start_ms: int
    start: str = Field(description="city-local start, ISO 8601 with offset")
    kind: Literal["queue", "channel", "all"]
    name: str
    counters: dict[str, int]
    figures: QueueFigures


class NamedFigures(BaseModel):
    kind: Literal["queue", "channel", "all"]
    name: str
    counters: dict[str, int]
    figures: QueueFigures


class NamedAgentFigures(BaseModel):
    agent: str
    name: str = ""
    counters: dict[str, int]
    figures: AgentFigures


class PeriodReport(BaseModel):
    """Totals of every queue, channel, agent and the whole centre over [start, end)."""

    start: str
    end: str
    queues: list[NamedFigures]
    channels: list[NamedFigures]
    total: NamedFigures
    agents: list[NamedAgentFigures]


class Staffing(BaseModel):
    """Agents needed now, from the recent arrival rate and handle time."""

    arrival_rate_per_h: float | None = None
    aht_s: float | None = None
    patience_s: float | None = Field(
        None,
        description="mean patience today: total wait of everyone who waited / abandons "
        "(None without abandons: Erlang A is then Erlang C)",
    )
    erlang_c_agents: int | None = None
    erlang_a_agents: int | None = None


class AgentCounts(BaseModel):
    ready: int = Field(0, description="ready and holding nothing")
    busy: int = Field(0, description="ready and holding at least one interaction")
    paused: int = 0
    offline: int = 0


class QueueLive(BaseModel):
    name: str
    channel: str
    waiting: int
    longest_wait_s: float
    agents: AgentCounts
    today: QueueFigures
    interval: QueueFigures
    staffing: Staffing
    target_pct: float | None = None
    threshold_s: float | None = None
    abandon_target_pct: float | None = None


class ChannelLive(BaseModel):
    name: str
    waiting: int
    longest_wait_s: float
    agents: AgentCounts
    today: QueueFigures
    interval: QueueFigures
    staffing: Staffing = Field(description="agents needed: the sum over the channel's queues")


class AgentLive(BaseModel):
    id: str
    name: str = ""
    state: str
    reason: str = ""
    state_s: float | None
    load: dict[str, int]
    handled_today: int
    today: AgentFigures


class LiveSnapshot(BaseModel):
    now_ms: int
    day: str
    interval_start_ms: int
    queues: list[QueueLive]
    channels: list[ChannelLive]
    total: QueueFigures
    agents: list[AgentLive]


def patience_estimate_s(counters: Mapping[str, int]) -> float | None:
    """Mean patience of residents: total time everybody spent waiting / number who abandoned.

    The maximum-likelihood estimate of an exponential patience when the waits of the answered
    (and of those who timed out) are censored observations: each of them was patient at least
    that long. None when nobody abandoned (patience unknown, as good as infinite).
    """
    abandoned = counters.get("abandoned", 0)
    if abandoned <= 0:
        return None
    waited = (
        counters.get("wait_sum_answered_ms", 0)
        + counters.get("wait_sum_abandoned_ms", 0)
        + counters.get("wait_sum_timeout_ms", 0)
    )
    # a floor keeps Erlang A defined when every abandon happened at once
    return max(waited / abandoned / 1000, 0.1)


def staffing(
    window: Mapping[str, int],
    elapsed_s: float,
    today: Mapping[str, int],
    target_pct: float | None,
    threshold_s: float | None,
) -> Staffing:
    """Arrival rate and handle time of the window, patience of the day, agents needed."""
    rate = window.get("offered", 0) / elapsed_s if elapsed_s > 0 else 0.0
    aht = QueueFigures.from_counters(window).aht_s
    if aht is None:  # nothing completed in the window: the day's handle time is the best guess
        aht = QueueFigures.from_counters(today).aht_s
    patience = patience_estimate_s(today)
    out = Staffing(arrival_rate_per_h=rate * 3600, aht_s=aht, patience_s=patience)
    if target_pct is None or threshold_s is None:
        return out
    if rate == 0:
        out.erlang_c_agents = out.erlang_a_agents = 0
    elif aht is not None and aht > 0:
        # a 100 % target can never be promised; staff for the nearest one that can
        target = min(target_pct, 99.99)
        out.erlang_c_agents = agents_needed_erlang_c(rate, aht, target, threshold_s)
        out.erlang_a_agents = agents_needed_erlang_a(
            rate, aht, patience if patience is not None else math.inf, target, threshold_s
        )
    return out
