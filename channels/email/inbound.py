"""The SMTP side: aiosmtpd hooks answering with protocol results.

Only the city's own mailboxes are accepted; we are never a relay, so any other recipient gets
550 before the message is even sent. The size limit is aiosmtpd's `data_size_limit` (552, both
for a declared SIZE and for DATA that runs over). A message is accepted (250) only after the
router has it; if the router cannot take it now, the answer is 451 and the sender's server
tries again later, so nothing accepted is ever lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.errors import EmailBusyError
from router.config_email import EmailConfig

logger = logging.getLogger(__name__)

# What the adapter does with an accepted message: returns the reference number it went to.
Deliver = Callable[[bytes, str, str | None], Awaitable[str]]


class Mailboxes:
    """Which recipients are ours, and the queue each one feeds (None: the channel's first)."""

    def __init__(self, cfg: EmailConfig) -> None:
        self.addresses = dict(cfg.addresses)
        self.domains = frozenset(cfg.domains)

    def queue_for(self, address: str) -> tuple[bool, str | None]:
        address = address.strip().lower()
        if address in self.addresses:
            return True, self.addresses[address]
        local, at, domain = address.rpartition("@")
        if at and local and domain in self.domains:
            return True, None
        return False, None


class InboundHandler:
    """aiosmtpd handler: RCPT decides what we accept, DATA hands the message to the router."""

    def __init__(self, cfg: EmailConfig, deliver: Deliver) -> None:
        self.cfg = cfg
        self.mailboxes = Mailboxes(cfg)
        self.deliver = deliver
        self.accepted = 0
        self.refused = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        ours, _queue = self.mailboxes.queue_for(address)
        if not ours:
            self.refused += 1
            logger.warning("email: relay attempt from %s to %s refused", session.peer, address)
            return "550 5.7.1 Relaying denied: this server accepts mail only for its city"
        if len(envelope.rcpt_tos) >= self.cfg.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        queue = next(
            (q for q in (self.mailboxes.queue_for(r)[1] for r in envelope.rcpt_tos) if q), None
        )
        mail_from = envelope.mail_from or ""
        try:
            ref = await self.deliver(content, mail_from, queue)
        except asyncio.CancelledError:
            raise
        except EmailBusyError as exc:  # a copy of a message being taken right now
            logger.warning("email: message from %s <%s> asked to retry: %s", session.peer,
                           mail_from, exc)
            return "451 4.3.0 Temporary failure, please try again later"
        except Exception:
            logger.exception("email: message from %s <%s> not taken; asked to retry",
                             session.peer, mail_from)
            return "451 4.3.0 Temporary failure, please try again later"
        self.accepted += 1
        return f"250 2.0.0 OK: queued as {ref}"


class CitySMTP(SMTP):
    """aiosmtpd's SMTP with a limit on concurrent connections (421 beyond it)."""

    def __init__(self, handler: Any, counter: ConnectionCounter, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counter = counter
        self._counted = False
        self._over_limit = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted:  # called again after STARTTLS on the same connection
            self._counted = True
            self._over_limit = not self._counter.acquire()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted and not self._over_limit:
            self._counter.release()
        self._counted = False
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._over_limit:
            logger.warning("email: connection from %s refused: too many connections",
                           self.session.peer if self.session else "?")
            await self.push("421 4.7.0 Too many connections, try again later")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


class ConnectionCounter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)
