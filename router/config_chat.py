"""The `channels.chat` block: the resident web chat over WebSocket (channels/chat)."""

from __future__ import annotations

from pydantic import Field

from router.config_sections import Section


class ChatConfig(Section):
    """The web chat: a page at /chat and its WebSocket at /chat/ws."""

    enabled: bool = Field(True, description="serve the web chat with `cityline serve`")
    queue: str = Field("chat", min_length=1, description="queue new chats go to")
    resident_idle_timeout_s: float = Field(
        600.0,
        gt=0,
        le=86_400,
        description="a resident silent this long while talking to an agent is ended (timeout)",
    )
    waiting_update_every_s: float = Field(
        10.0, gt=0, le=3600, description="how often a waiting resident is told place and wait"
    )
    reconnect_grace_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="a dropped connection may resume with its token within this; after it a "
        "chat still waiting for an agent is an ABANDON",
    )
    agent_reply_timeout_s: float = Field(
        0.0,
        ge=0,
        le=86_400,
        description="a resident's message unanswered this long by the connected agent: the "
        "resident is told once that it was seen and an agent will answer shortly, and a warning "
        "is logged. 0: never",
    )
    agent_idle_timeout_s: float = Field(
        0.0,
        ge=0,
        le=86_400,
        description="the connected agent wrote nothing for this long while the resident waits "
        "for an answer: the chat goes back to its queue keeping its place (a transfer by "
        "`system`, note `agent inactive`) for another agent to take. 0: never",
    )
    max_message_chars: int = Field(
        2000, ge=1, le=20_000, description="longest message a resident may send"
    )
    max_connections: int = Field(
        1000, ge=1, le=100_000, description="open chat sockets at once, at most"
    )
    max_frames_per_s: int = Field(
        20, ge=1, le=1000, description="frames one socket may send per second; more closes it"
    )
