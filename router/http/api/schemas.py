"""Request and response bodies of the JSON API (/api/v1).

Every request model forbids unknown fields (a misspelt field is an error, never silently
ignored); `router.models.IntakeRequest` and `TransferRequest` already do. Response models turn the
strings Redis keeps into typed values, so clients and the OpenAPI document see numbers as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from router.auth import MAX_PASSWORD_LENGTH
from router.hash_fields import as_int, json_object
from router.models import AgentState, Channel, InteractionState

# An agent's or a resident's message; long enough for an e-mail answer, short enough that a
# conversation list stays cheap to read.
MAX_MESSAGE_CHARS = 10_000


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- errors ---------------------------------------------------------------------------------


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where in the body: field names and list indexes")
    msg: str


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error")
    message: str
    details: list[ValidationIssue] | None = None


class ErrorResponse(BaseModel):
    """The one error body of the API."""

    error: ErrorDetail


# --- auth -----------------------------------------------------------------------------------


class LoginRequest(_Request):
    # the user-name rule of the configuration: also keeps control characters out of the logs
    username: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    # SecretStr keeps the password out of reprs, logs and validation error echoes.
    password: SecretStr = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class Me(BaseModel):
    username: str
    role: str
    agent_id: str | None = None
    auth: Literal["session", "token"]


class LoginResponse(Me):
    csrf_token: str = Field(description="send it as X-CSRF-Token on POST/PUT/PATCH/DELETE")
    expires_in_s: int


class NoBody(_Request):
    """The body of an action that takes no parameters: nothing, or `{}`."""


class LoggedOut(BaseModel):
    logged_out: bool = True


# --- intake ---------------------------------------------------------------------------------


class InteractionCreated(BaseModel):
    id: str
    ref: str = Field(description="reference number the resident can quote")
    state: InteractionState
    created: bool = Field(
        description="false when external_id repeated an earlier contact, which is returned"
    )
    enqueued_ms: int


class ResidentLeftRequest(_Request):
    at_ms: int | None = Field(
        None, ge=0, description="when the resident left (epoch ms); default: now"
    )


class ResidentLeft(BaseModel):
    wait_ms: int
    short: bool = Field(description="left within routing.short_abandon_s (a short abandon)")
    ended_ms: int


class MessageRequest(_Request):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)


class MessagePosted(BaseModel):
    index: int = Field(description="position of the message in the conversation (1 = first)")


# --- interactions ---------------------------------------------------------------------------




class InteractionView(BaseModel):
    id: str
    ref: str
    channel: Channel
    queue: str
    state: InteractionState
    priority: int
    skills: dict[str, int] = Field(description="skill -> minimum level required now")
    target_agent: str
    language: str
    topic: str
    resident: str
    resident_name: str
    subject: str
    body: str
    agent: str = Field(description="agent holding it (offered, connected, wrap-up), or empty")
    attempts: int
    transfers: int
    created_ms: int
    enqueued_ms: int
    entered_ms: int
    offered_ms: int
    connected_ms: int
    ended_ms: int
    disposition: str
    case: str
    meta: dict[str, Any]

    @classmethod
    def from_hash(cls, ix: Mapping[str, str]) -> InteractionView:
        text = {
            name: ix.get(name, "")
            for name in (
                "id", "ref", "queue", "target_agent", "language", "topic", "resident",
                "resident_name", "subject", "body", "agent", "disposition", "case",
            )
        }  # fmt: skip
        numbers = {
            name: as_int(ix.get(name))
            for name in (
                "priority", "attempts", "transfers", "created_ms", "enqueued_ms", "entered_ms",
                "offered_ms", "connected_ms", "ended_ms",
            )
        }  # fmt: skip
        return cls(
            **text,
            **numbers,
            channel=Channel(ix["channel"]),
            state=InteractionState(ix["state"]),
            skills={k: as_int(str(v)) for k, v in json_object(ix.get("skills")).items()},
            meta=json_object(ix.get("meta")),
        )


class InteractionList(BaseModel):
    interactions: list[InteractionView]


class DeliveryView(BaseModel):
    """How sending a message to the resident went (e-mail, SMS, Telegram, a web form answer)."""

    channel: str = Field(description="the channel that sends it (a web form answers by e-mail "
                         "or SMS)")
    status: str = Field(description="queued, retrying, sent, delivered, undelivered, failed, "
                        "opted_out")
    attempts: int = 0
    error: str = Field("", description="the last failure, if any")
    at_ms: int = Field(0, description="when the status was set")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DeliveryView:
        return cls(channel=str(record.get("channel", "")), status=str(record.get("status", "")),
                   attempts=as_int(str(record.get("attempts", 0))),
                   error=str(record.get("error", "")), at_ms=as_int(str(record.get("at_ms", 0))))


class MessageView(BaseModel):
    sender: str = Field(description="resident, agent, or system (the city's own message: a "
                        "case's number and status link)")
    agent: str = ""
    text: str
    time_ms: int
    delivery: DeliveryView | None = Field(
        None, description="for an agent's message on a channel that sends it: how that went")


class MessageList(BaseModel):
    messages: list[MessageView]
    acknowledgement: DeliveryView | None = Field(
        None, description="the automatic acknowledgement with the reference number, if sent")


# --- agents ---------------------------------------------------------------------------------


class AgentLoginRequest(_Request):
    ready: bool = False
    reason: str | None = Field(
        None, max_length=48, description="reason code when logging in not ready"
    )


class AgentStateRequest(_Request):
    state: Literal["ready", "not_ready", "offline"]
    reason: str | None = Field(None, max_length=48, description="reason code; for not_ready")


class AgentView(BaseModel):
    id: str
    name: str
    line: str
    state: AgentState
    reason: str = Field(description="reason code while not_ready")
    state_since_ms: int
    idle_since_ms: int
    skills: dict[str, int]
    capacity: dict[Channel, int]
    load: dict[Channel, int] = Field(description="interactions held per channel")

    @classmethod
    def build(cls, profile: Any, stored: Mapping[str, str] | None) -> AgentView:
        """From the configured profile and the agent's hash (None: never logged in)."""
        stored = stored or {}
        return cls(
            id=profile.id,
            name=profile.name,
            line=profile.line,
            state=AgentState(stored.get("state") or "offline"),
            reason=stored.get("reason", ""),
            state_since_ms=as_int(stored.get("state_since")),
            idle_since_ms=as_int(stored.get("idle_since")),
            skills=dict(profile.skills),
            capacity=dict(profile.capacity),
            load={ch: as_int(stored.get(f"load:{ch}")) for ch in Channel},
        )


class AgentList(BaseModel):
    agents: list[AgentView]


class AgentStateChanged(BaseModel):
    agent: AgentView


class Accepted(BaseModel):
    state: Literal["connected"] = "connected"
    wait_ms: int = Field(description="how long the resident waited for this agent")


class Rejected(BaseModel):
    state: Literal["queued"] = "queued"


class Completed(BaseModel):
    state: Literal["wrapup", "closed"]


class WrapupEndRequest(_Request):
    disposition: str = Field("", max_length=64, description="outcome code (empty: the one "
                             "given when ending the conversation)")
    note: str = Field("", max_length=2000)


class CompleteRequest(_Request):
    """Optional: the outcome, when the agent knows it on ending (final when the queue has no
    wrap-up time; kept through wrap-up otherwise unless replaced there)."""

    disposition: str = Field("", max_length=64, description="outcome code")
    note: str = Field("", max_length=2000)


class Closed(BaseModel):
    state: Literal["closed"] = "closed"


class Transferred(BaseModel):
    state: Literal["queued"] = "queued"
    position: int = Field(description="position in the new queue (1 = next)")


class PriorityRequest(_Request):
    priority: int = Field(ge=0, le=10, description="0 (normal) to 10; higher is served first")


class Reprioritised(BaseModel):
    state: Literal["queued"] = "queued"
    priority: int
    position: int = Field(description="position among those of the same priority and skills")


# --- queues ---------------------------------------------------------------------------------


class ServiceLevelView(BaseModel):
    target_pct: float
    threshold_s: float


class QueueView(BaseModel):
    name: str
    channel: Channel
    labels: dict[str, str]
    skills: dict[str, int]
    priority: int
    strategy: str
    service_level: ServiceLevelView
    max_wait_s: float | None
    overflow: str | None
    offer_timeout_s: float
    wrapup_s: float
    waiting: int = Field(description="interactions waiting in the queue now")
    oldest_position_ms: int | None = Field(
        description="position time of the first in line (its enqueue time unless a transfer "
        "reset it); null when none waits"
    )


class QueueList(BaseModel):
    queues: list[QueueView]


# --- residents recognised across channels -----------------------------------------------------

# How much of a subject the history shows: enough to tell one matter from another.
HISTORY_SUBJECT_CHARS = 120


class HistoryEntry(BaseModel):
    """One earlier interaction of the same resident, as the agent's history list shows it."""

    id: str
    ref: str
    channel: Channel
    queue: str
    topic: str
    state: InteractionState
    created_ms: int
    subject: str = Field(description=f"clipped to {HISTORY_SUBJECT_CHARS} characters")

    @classmethod
    def from_hash(cls, ix: Mapping[str, str]) -> HistoryEntry:
        subject = ix.get("subject", "")
        if len(subject) > HISTORY_SUBJECT_CHARS:
            subject = subject[: HISTORY_SUBJECT_CHARS - 1].rstrip() + "…"
        return cls(
            id=ix.get("id", ""), ref=ix.get("ref", ""), channel=Channel(ix["channel"]),
            queue=ix.get("queue", ""), topic=ix.get("topic", ""),
            state=InteractionState(ix["state"]), created_ms=as_int(ix.get("created_ms")),
            subject=subject,
        )  # fmt: skip


class ResidentHistory(BaseModel):
    recognised: bool = Field(
        description="the resident consented to be recognised across channels and is known"
    )
    resident_id: str | None = Field(
        None, description="pseudonymous id of the resident (to withdraw their consent)"
    )
    interactions: list[HistoryEntry] = Field(
        description="their other interactions on any channel, newest first"
    )


class ConsentWithdrawalRequest(_Request):
    contact: str = Field(
        min_length=1, max_length=320,
        description="any contact of the resident: a phone number, an e-mail address, "
        "telegram:<chat id>",
    )  # fmt: skip


class ConsentWithdrawn(BaseModel):
    resident_id: str
    identities: int = Field(description="identities no longer linked to the resident")
    interactions: int = Field(description="history records removed (the interactions stay)")
    withdrawn_ms: int = Field(description="when consent was withdrawn (the first time)")
