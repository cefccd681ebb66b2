"""Replay `cl:events` through an independent model of the routing rules and report every
violation: an interaction offered while not waiting (so: to two agents), an agent offered work
while not ready or over capacity, an interaction with other than one terminal event.

Written apart from the Lua scripts on purpose: it re-derives the state from the stream alone,
so it catches a script that changes state and logs something else.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from router.config import CitylineConfig
from router.models import Event

TEXT = ("chat", "sms", "email", "telegram", "webform")


@dataclass
class Replay:
    cfg: CitylineConfig
    violations: list[str] = field(default_factory=list)
    ix_state: dict[str, str] = field(default_factory=dict)
    ix_channel: dict[str, str] = field(default_factory=dict)
    ix_holder: dict[str, str] = field(default_factory=dict)
    agent_state: dict[str, str] = field(default_factory=dict)
    load: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    terminal: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)

    def _bad(self, e: Event, why: str) -> None:
        self.violations.append(f"{e.id} {e.type} ix={e.ix} agent={e.agent}: {why}")

    def _release(self, e: Event, agent: str) -> None:
        ch = self.ix_channel[e.ix]
        self.load[agent][ch] -= 1
        if self.load[agent][ch] < 0:
            self._bad(e, "load below zero")
        self.ix_holder.pop(e.ix, None)

    def _end(self, e: Event, state: str) -> None:
        self.ix_state[e.ix] = state
        self.terminal[e.ix] += 1

    def apply(self, e: Event) -> None:
        self.counts[e.type] += 1
        extra = e.model_extra or {}
        st = self.ix_state.get(e.ix)
        if e.type == "ENTERQUEUE":
            if extra.get("first") == "1":
                if st is not None:
                    self._bad(e, "entered twice as first")
                self.ix_channel[e.ix] = e.channel
            elif st not in ("queued", "transferring"):  # overflow and escalation: still queued
                self._bad(e, f"re-entry from {st}")
            self.ix_state[e.ix] = "queued"
        elif e.type == "OFFER":
            if st != "queued":
                self._bad(e, f"offered while {st}")
            if self.agent_state.get(e.agent) != "ready":
                self._bad(e, f"agent {self.agent_state.get(e.agent)}")
            ch = e.channel
            cap = self.cfg.agents[e.agent].capacity.get(ch, 0) if e.agent in self.cfg.agents else 0
            load = self.load[e.agent]
            if load[ch] + 1 > cap:
                self._bad(e, f"over capacity {load[ch] + 1}>{cap}")
            text_load = sum(load[c] for c in TEXT)
            if ch == "voice" and text_load and not self.cfg.routing.blending.voice_with_open_text:
                self._bad(e, "voice offered beside open text")
            if ch != "voice" and load["voice"] and not self.cfg.routing.blending.text_during_voice:
                self._bad(e, "text offered during a call")
            load[ch] += 1
            self.ix_state[e.ix] = "offered"
            self.ix_holder[e.ix] = e.agent
        elif e.type == "RINGNOANSWER":
            if st != "offered" or self.ix_holder.get(e.ix) != e.agent:
                self._bad(e, f"ring-no-answer while {st}")
            self._release(e, e.agent)
            self.ix_state[e.ix] = "queued"
        elif e.type == "CONNECT":
            if st != "offered" or self.ix_holder.get(e.ix) != e.agent:
                self._bad(e, f"connect while {st}")
            self.ix_state[e.ix] = "connected"
        elif e.type in ("COMPLETECALLER", "COMPLETEAGENT"):
            if st != "connected":
                self._bad(e, f"complete while {st}")
            q = self.cfg.queues.get(e.queue)
            if q is not None and q.wrapup_s > 0:
                self.ix_state[e.ix] = "wrapup"
            else:
                self._release(e, e.agent)
                self._end(e, "closed")
        elif e.type == "WRAPUPEND":
            if st != "wrapup":
                self._bad(e, f"wrap-up end while {st}")
            self._release(e, e.agent)
            self._end(e, "closed")
        elif e.type == "ABANDON":
            if st not in ("queued", "offered"):
                self._bad(e, f"abandon while {st}")
            if st == "offered":
                self._release(e, self.ix_holder[e.ix])
            self._end(e, "abandoned")
        elif e.type == "EXITWITHTIMEOUT":
            if st != "queued":
                self._bad(e, f"timeout while {st}")
            if not extra.get("overflow"):
                self._end(e, "timeout")
        elif e.type == "TRANSFER":
            if extra.get("from_state") == "connected":
                if st != "connected":
                    self._bad(e, f"transfer while {st}")
                self._release(e, e.agent)
            elif st != "queued":
                self._bad(e, f"queued transfer while {st}")
            self.ix_state[e.ix] = "transferring"
        elif e.type == "ESCALATE" and st != "queued":
            self._bad(e, f"escalated while {st}")
        elif e.type == "ADDMEMBER":
            self.agent_state[e.agent] = extra.get("state", "ready")
        elif e.type == "PAUSE":
            self.agent_state[e.agent] = "not_ready"
        elif e.type == "UNPAUSE":
            self.agent_state[e.agent] = "ready"
        elif e.type == "REMOVEMEMBER":
            self.agent_state[e.agent] = "offline"
            if sum(self.load[e.agent].values()):
                self._bad(e, "logged out holding work")

    def finish(self) -> None:
        for ix, n in self.terminal.items():
            if n != 1:
                self.violations.append(f"ix={ix}: {n} terminal events")
        for ix, st in self.ix_state.items():
            if ix not in self.terminal:
                self.violations.append(f"ix={ix}: never ended (last {st})")
