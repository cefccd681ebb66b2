"""One chat conversation as the process holding its socket sees it, and what is kept of it in
the chat channel's memory (Redis, shared by every cityline process) so any process can resume it.

Only the SHA-256 of the reconnect token is kept anywhere: whoever reads the process memory, Redis
or a log cannot resume someone else's chat. The socket lives in one process only; everything
needed to resume the conversation elsewhere (and to notice a resident who never comes back) is the
link of kind "token" keyed by the token's SHA-256:

    ix, ref, language     the interaction, its reference number, the resident's language
    agent                 the agent last announced to the resident ("" while waiting)
    seen                  messages of the conversation already looked at for delivery
    conn, owner           the current socket's id and the process (adapter instance) holding it
    disconnected_wall_ms  when that socket dropped ("0" while one is open)
    active_ms             the resident's last sign of life (wall clock), for the idle timeout
    notice                the unanswered stretch the resident was last told about
    ended                 set when the conversation ended while the resident was away: `by`

plus the link of kind "ix" keyed by the interaction id -> {token: SHA-256}, for the sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ChatSession:
    ix_id: str
    ref: str
    token_sha256: str
    language: str = ""
    # this socket's id: the link names the one socket that delivers (a resume elsewhere wins)
    conn: str = field(default_factory=lambda: secrets.token_hex(8))
    ws: web.WebSocketResponse | None = None
    agent: str = ""  # the agent announced to the resident ("" while waiting)
    seen: int = 0  # messages of the conversation already looked at for delivery
    notice: str = ""  # the unanswered stretch the resident was told about
    last_waiting_update: float = 0.0
    # (state, agent, messages) when last brought up to date, and when (monotonic): the tick
    # syncs a socket only when this changed (or now and then, to notice a resume elsewhere)
    mark: tuple[str, str, int] | None = None
    synced_at: float = 0.0
    active_saved: float = 0.0  # monotonic time the last sign of life was written to the link
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def new(cls, ix_id: str, ref: str, language: str) -> tuple[ChatSession, str]:
        """A session and its reconnect token (given to the resident once, never stored)."""
        token = secrets.token_urlsafe(32)
        return cls(ix_id=ix_id, ref=ref, token_sha256=token_hash(token), language=language), token

    @classmethod
    def from_link(cls, token_sha256: str, link: dict[str, str]) -> ChatSession:
        return cls(ix_id=link["ix"], ref=link.get("ref", ""), token_sha256=token_sha256,
                   language=link.get("language", ""), agent=link.get("agent", ""),
                   seen=int(link.get("seen") or 0), notice=link.get("notice", ""))

    def link_fields(self) -> dict[str, str]:
        """Everything a fresh link holds (see the module docstring)."""
        return {"ix": self.ix_id, "ref": self.ref, "language": self.language,
                "agent": self.agent, "seen": str(self.seen), "conn": self.conn,
                "disconnected_wall_ms": "0", "active_ms": str(now_ms()), "notice": self.notice}

    def attach(self, ws: web.WebSocketResponse) -> web.WebSocketResponse | None:
        """Bind the socket; returns the one it replaces (still open), if any."""
        old, self.ws = self.ws, ws
        return old if old is not None and old is not ws else None

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send a frame to the open socket; False when there is none (or it just broke)."""
        ws = self.ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_json(frame)
        except (ConnectionError, RuntimeError):
            logger.info("chat %s: socket broke while sending %s", self.ix_id, frame.get("type"))
            return False
        return True
