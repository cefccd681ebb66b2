"""One chat conversation as this process holds it: its interaction, reconnect token and socket.

Only the SHA-256 of the reconnect token is kept: whoever reads the process memory (or a log)
cannot resume someone else's chat. The socket is None between a dropped connection and its
resumption; `disconnected_at` then tells the grace period apart from a resident who left.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ChatSession:
    ix_id: str
    ref: str
    token_sha256: str
    ws: web.WebSocketResponse | None = None
    # monotonic times: the resident's last sign of life, when the socket dropped (None: open)
    last_activity: float = field(default_factory=time.monotonic)
    disconnected_at: float | None = None
    # wall-clock ms of the drop: the resident's exact time of leaving if the grace runs out
    disconnected_wall_ms: int = 0
    agent: str = ""  # the agent announced to the resident ("" while waiting)
    seen: int = 0  # messages of the conversation already looked at for delivery
    last_waiting_update: float = 0.0
    ended: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def new(cls, ix_id: str, ref: str) -> tuple[ChatSession, str]:
        """A session and its reconnect token (given to the resident once, never stored)."""
        token = secrets.token_urlsafe(32)
        return cls(ix_id=ix_id, ref=ref, token_sha256=token_hash(token)), token

    def matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, token_hash(token))

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def attach(self, ws: web.WebSocketResponse) -> web.WebSocketResponse | None:
        """Bind the socket; returns the one it replaces (still open), if any."""
        old, self.ws = self.ws, ws
        self.disconnected_at = None
        self.touch()
        return old if old is not None and old is not ws else None

    def detach(self, ws: web.WebSocketResponse) -> None:
        if self.ws is ws:
            self.ws = None
            self.disconnected_at = time.monotonic()
            self.disconnected_wall_ms = int(time.time() * 1000)

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
