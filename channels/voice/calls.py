"""Which Asterisk channel belongs to which interaction, as far as this process has seen.

The adapter learns a caller's channel when its IVR routes it, and an agent's channel from
DialBegin (or from an OriginateResponse, for callbacks). Hangup events name only a channel and a
uniqueid, so they are looked up here. The registry is only a cache: an interaction's own record
(`meta.uniqueid`, `meta.asterisk_channel`) and the external-id index in the router are the
truth, and a restarted process rebuilds from them (`VoiceAdapter.reconcile`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def local_pair(channel: str) -> str:
    """`Local/x@ctx-00000004;1` and `...;2` are two halves of one Local channel."""
    return channel.rsplit(";", 1)[0] if channel.startswith("Local/") else channel


@dataclass
class Call:
    ix_id: str
    channel: str
    uniqueid: str
    agent_channel: str = ""


@dataclass
class CallRegistry:
    by_ix: dict[str, Call] = field(default_factory=dict)
    by_uniqueid: dict[str, Call] = field(default_factory=dict)
    by_agent_leg: dict[str, Call] = field(default_factory=dict)
    # callbacks: Originate ActionID -> interaction
    originates: dict[str, str] = field(default_factory=dict)

    def track(self, ix_id: str, channel: str, uniqueid: str) -> Call:
        call = self.by_ix.get(ix_id)
        if call is None or call.uniqueid != uniqueid:
            call = Call(ix_id, channel, uniqueid)
            self.by_ix[ix_id] = call
            self.by_uniqueid[uniqueid] = call
        return call

    def set_caller(self, ix_id: str, channel: str, uniqueid: str) -> None:
        """The resident's channel became known later (a callback dials the resident from the
        agent's phone)."""
        call = self.by_ix.get(ix_id)
        if call is None:
            return
        self.by_uniqueid.pop(call.uniqueid, None)
        call.channel, call.uniqueid = channel, uniqueid
        self.by_uniqueid[uniqueid] = call

    def agent_leg(self, ix_id: str, channel: str) -> None:
        call = self.by_ix.get(ix_id)
        if call is not None:
            call.agent_channel = channel
            self.by_agent_leg[local_pair(channel)] = call

    def caller(self, uniqueid: str) -> Call | None:
        return self.by_uniqueid.get(uniqueid)

    def for_agent_channel(self, channel: str) -> Call | None:
        return self.by_agent_leg.get(local_pair(channel))

    def forget(self, ix_id: str) -> None:
        call = self.by_ix.pop(ix_id, None)
        if call is None:
            return
        self.by_uniqueid.pop(call.uniqueid, None)
        if call.agent_channel:
            self.by_agent_leg.pop(local_pair(call.agent_channel), None)
