"""Domain vocabulary shared by every layer: channels, states, events, interactions, agents.

`queues/` may import this module (and only this one from `router`), so it holds plain data
definitions with no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Channel(StrEnum):
    voice = "voice"
    chat = "chat"
    sms = "sms"
    email = "email"
    telegram = "telegram"
    webform = "webform"


# Interactions an agent may hold at once per channel, unless configured otherwise: one call, or
# a few chats, or more of the slower written channels.
DEFAULT_CAPACITY: dict[Channel, int] = {
    Channel.voice: 1,
    Channel.chat: 3,
    Channel.sms: 5,
    Channel.email: 5,
    Channel.telegram: 3,
    Channel.webform: 5,
}


class InteractionState(StrEnum):
    new = "new"
    queued = "queued"
    offered = "offered"
    connected = "connected"
    wrapup = "wrapup"
    # terminal states: every interaction ends in exactly one of these
    closed = "closed"
    abandoned = "abandoned"
    timeout = "timeout"
    deflected = "deflected"


TERMINAL_STATES = frozenset(
    {
        InteractionState.closed,
        InteractionState.abandoned,
        InteractionState.timeout,
        InteractionState.deflected,
    }
)


class AgentState(StrEnum):
    offline = "offline"
    ready = "ready"
    not_ready = "not_ready"
    # shown when the agent is ready but every open interaction is in wrap-up; the stored state
    # stays `ready` because wrap-up is per interaction (an agent may wrap up a call while chats run)
    wrapup = "wrapup"


class EventType(StrEnum):
    """Named like Asterisk's queue_log verbs so queue-report tools can read an export."""

    ENTERQUEUE = "ENTERQUEUE"
    OFFER = "OFFER"
    RINGNOANSWER = "RINGNOANSWER"
    CONNECT = "CONNECT"
    COMPLETECALLER = "COMPLETECALLER"
    COMPLETEAGENT = "COMPLETEAGENT"
    WRAPUPEND = "WRAPUPEND"
    ABANDON = "ABANDON"
    EXITWITHTIMEOUT = "EXITWITHTIMEOUT"
    EXITEMPTY = "EXITEMPTY"
    TRANSFER = "TRANSFER"
    ESCALATE = "ESCALATE"
    PRIORITY = "PRIORITY"
    KBANSWER = "KBANSWER"
    ADDMEMBER = "ADDMEMBER"
    REMOVEMEMBER = "REMOVEMEMBER"
    PAUSE = "PAUSE"
    UNPAUSE = "UNPAUSE"
    DEFLECTED = "DEFLECTED"
    IVRABANDON = "IVRABANDON"
    MESSAGE = "MESSAGE"
    CASECREATED = "CASECREATED"
    CASESTATUS = "CASESTATUS"
    CONFIG = "CONFIG"  # an admin changed an agent or a queue (router.directory)


class Event(BaseModel):
    """One entry of the `cl:events` stream, as written by a Lua script.

    Every field of the stream entry is a string; this model gives them types. `time_ms` is Redis
    `TIME` at the moment of the transition (or the channel's own timestamp for abandons, which is
    more exact). Durations are milliseconds so that tests can compare them exactly.
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="stream entry id")
    type: EventType
    time_ms: int
    queue: str = ""
    ix: str = ""
    agent: str = ""
    channel: str = ""
    wait_ms: int | None = None
    talk_ms: int | None = None
    ring_ms: int | None = None
    wrapup_ms: int | None = None

    @classmethod
    def from_stream(cls, entry_id: str, fields: dict[str, str]) -> Event:
        data: dict[str, Any] = dict(fields)
        data["id"] = entry_id
        data["type"] = data.pop("ev")
        data["time_ms"] = int(data.pop("t"))
        return cls.model_validate(data)


class Interaction(BaseModel):
    """One contact of a resident through one channel, as stored in `cl:ix:<id>`."""

    id: str
    ref: str = Field(description="reference number the resident can quote, e.g. 2026-000123")
    channel: Channel
    queue: str
    state: InteractionState
    priority: int = 0
    skills: dict[str, int] = Field(default_factory=dict, description="skill -> minimum level")
    target_agent: str = ""
    language: str = "pl"
    resident: str = ""
    subject: str = ""
    body: str = ""
    created_ms: int = 0
    enqueued_ms: int = Field(0, description="position time: orders the queue, kept on transfer")
    entered_ms: int = Field(0, description="time it entered its current queue: measures its wait")
    offered_ms: int = 0
    connected_ms: int = 0
    ended_ms: int = 0
    agent: str = ""
    attempts: int = 0
    case: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class AgentProfile(BaseModel):
    """What routing needs to know about an agent; stored in `cl:agent:<id>` at login."""

    id: str
    name: str = ""
    skills: dict[str, int] = Field(default_factory=dict, description="skill -> level 1..10")
    capacity: dict[Channel, int] = Field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    line: str = Field("first", pattern="^(first|second)$")
    endpoint: str = Field("", description="voice endpoint, e.g. PJSIP/1001")


class IntakeRequest(BaseModel):
    """A new contact handed to the router by a channel or by the HTTP intake API."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel
    queue: str | None = Field(None, max_length=48, description="default: the channel's first")
    topic: str | None = Field(None, max_length=64, description="skill id of the matter, if known")
    language: str | None = Field(None, max_length=8, description="pl, en, uk...; default: city's")
    resident: str = Field("", max_length=320, description="phone (E.164), e-mail, chat id...")
    resident_name: str = Field("", max_length=200)
    subject: str = Field("", max_length=500)
    body: str = Field("", max_length=20_000)
    priority: int = Field(0, ge=0, le=10)
    external_id: str | None = Field(
        None, max_length=256, description="the channel's own id; a repeat returns the same contact"
    )
    meta: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=50)
    contacts: list[str] = Field(
        default_factory=list, max_length=5,
        description="further ways to reach the resident given in this contact (a phone number "
        "on an e-mailed form, an e-mail in a chat); recognised only with consent",
    )
    consent: bool = Field(
        False, description="the resident agreed to be recognised across channels: from now on "
        "(until withdrawn) agents see their contacts made with any of these identities",
    )


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(None, max_length=48)
    agent: str | None = Field(None, max_length=64, description="a named second-line agent")
    note: str = Field("", max_length=2000)
    keep_position: bool = True
