"""The e-mail adapter: residents' mail in through our SMTP server, agents' replies out through the
smarthost.

    MAIL/RCPT  -> only the city's mailboxes (550 otherwise: never a relay), size 552
    DATA       -> parse -> a reply to a known conversation joins it (resident MESSAGE), else a
                  new interaction in the mailbox's queue -> 250 with the reference number
               -> acknowledgement with the reference number (not to automatic mail)
    agent MESSAGE event -> reply mail threaded onto the resident's mail

The SMTP server runs in our own loop (`loop.create_server`), never aiosmtpd's threaded
Controller. Acknowledgements are sent after the SMTP answer, as tracked tasks, so a slow
smarthost never holds up the resident's server; a failed acknowledgement is logged, the mail is
already safe in the router.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from channels.email.errors import EmailStartError
from channels.email.inbound import CitySMTP, ConnectionCounter, InboundHandler
from channels.email.outbound import Outbound
from channels.email.parse import ParsedMail, parse_message, plan_attachments, save_attachments
from channels.email.threading import Threader, external_id
from router.config_email import EmailConfig
from router.models import Channel, Event, EventType, IntakeRequest
from router.service import RoutingService

logger = logging.getLogger(__name__)

EMAIL = Channel.email
MAX_SUBJECT = 500
MAX_BODY = 20_000
TRUNCATED = "\n[... truncated]"
# Message-IDs of replies already added to a conversation: a sending server that lost our 250
# sends again, and the copy must not add the message twice. Bounded; per process.
JOINED_MEMORY = 10_000
# How long stop() waits for acknowledgements still being sent.
STOP_DRAIN_S = 5.0


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def _meta(ix: Mapping[str, str]) -> dict[str, Any]:
    try:
        return dict(json.loads(ix.get("meta") or "{}"))
    except ValueError:
        return {}


class EmailAdapter:
    """One per cityline process: `start()`/`stop()`; `handle_event` is fed by the EventFeed."""

    name = "email"
    channel = "email"

    def __init__(
        self,
        service: RoutingService,
        cfg: EmailConfig,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.attachments_dir = Path(data_dir) / "attachments"
        self.port = cfg.port if port is None else port
        self.outbound = Outbound(cfg, service.cfg.city.name, env)
        self.threader = Threader(service)
        self.handler = InboundHandler(cfg, self.deliver)
        self._connections = ConnectionCounter(cfg.max_connections)
        self._protocols: set[CitySMTP] = set()
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._joined: OrderedDict[str, str] = OrderedDict()
        self._replied: set[tuple[str, int]] = set()
        self.acks_sent = 0

    # --- lifecycle ----------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.cfg.starttls_cert is None or self.cfg.starttls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cfg.starttls_cert, self.cfg.starttls_key)
        return ctx

    def _protocol(self) -> CitySMTP:
        proto = CitySMTP(
            self.handler,
            self._connections,
            data_size_limit=self.cfg.max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self.cfg.hostname or self.cfg.mail_domain,
            ident="cityline ESMTP",
            tls_context=self._tls,
            loop=asyncio.get_running_loop(),
        )
        self._protocols.add(proto)
        return proto

    async def start(self) -> None:
        try:
            self._tls = self._tls_context()
            self._server = await asyncio.get_running_loop().create_server(
                self._protocol, self.cfg.host, self.port
            )
        except (OSError, ssl.SSLError) as exc:
            raise EmailStartError(f"SMTP server on {self.cfg.host}:{self.port}: {exc}") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("email: SMTP server on %s:%d for %s", self.cfg.host, self.port,
                    ", ".join([*self.cfg.addresses, *(f"@{d}" for d in self.cfg.domains)]))

    async def stop(self) -> None:
        # Order: stop accepting connections, close the open ones (a message in DATA is not
        # acknowledged with 250, so its sender keeps it and retries), then let acknowledgements
        # already being sent finish within a deadline, cancel the rest.
        if self._server is not None:
            self._server.close()
            for proto in list(self._protocols):
                if proto.transport is not None:
                    proto.transport.close()
            self._protocols.clear()
            await self._server.wait_closed()
            self._server = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=STOP_DRAIN_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        logger.info("email: stopped")

    async def __aenter__(self) -> EmailAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                logger.warning("email: %s failed: %s", what, exc)

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for the acknowledgements being sent (tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- inbound ------------------------------------------------------------------------

    def _remember_joined(self, message_id: str, ref: str) -> None:
        self._joined[message_id] = ref
        while len(self._joined) > JOINED_MEMORY:
            self._joined.popitem(last=False)

    async def _save(self, ix_id: str, mail: ParsedMail) -> tuple[list[str], list[str]]:
        plan = plan_attachments(mail.attachments, self.cfg.attachments)
        if plan.dropped:
            logger.warning("email: attachments of %s not kept: %s", ix_id,
                           "; ".join(plan.dropped))
        if not plan.kept:
            return [], plan.dropped
        paths = await asyncio.to_thread(save_attachments, self.attachments_dir / ix_id, plan.kept)
        return [p.name for p in paths], plan.dropped

    async def deliver(self, raw: bytes, mail_from: str, queue: str | None) -> str:
        """Take one accepted message; returns the reference number of its interaction."""
        mail = parse_message(raw, mail_from)
        if mail.defects:
            logger.warning("email: message %s from %s has defects: %s", mail.message_id or "?",
                           mail.sender or mail_from, ", ".join(sorted(set(mail.defects))))
        if mail.message_id in self._joined:
            return self._joined[mail.message_id]
        thread = await self.threader.find(mail)
        if thread is not None and not thread.ended:
            return await self._join(thread.ix, mail)
        follows = ""
        if thread is not None:
            queue, follows = thread.ix.get("queue") or queue, thread.ix.get("ref", "")
        return await self._open(mail, queue, follows)

    async def _join(self, ix: dict[str, str], mail: ParsedMail) -> str:
        ix_id, ref = ix["id"], ix.get("ref", "")
        saved, dropped = await self._save(ix_id, mail)
        text = mail.body
        if saved:
            text += "\n\n[attachments: " + ", ".join(saved) + "]"
        if dropped:
            text += "\n[not kept: " + "; ".join(dropped) + "]"
        await self.service.resident_message(ix_id, _clip(text.strip(), MAX_BODY))
        if mail.message_id:
            self._remember_joined(mail.message_id, ref)
        logger.info("email: reply %s joins %s (%s)", mail.message_id or "?", ref, ix_id)
        return ref

    async def _open(self, mail: ParsedMail, queue: str | None, follows: str) -> str:
        meta: dict[str, str | int | float | bool] = {"message_id": mail.message_id}
        if mail.reply_to and mail.reply_to != mail.sender:
            meta["reply_to"] = mail.reply_to
        if follows:
            meta["follows"] = follows
        if mail.automatic:
            meta["automatic"] = mail.automatic
        req = IntakeRequest(
            channel=EMAIL,
            queue=queue,
            resident=mail.sender[:320],
            resident_name=mail.sender_name[:200],
            subject=_clip(mail.subject, MAX_SUBJECT),
            body=_clip(mail.body, MAX_BODY),
            external_id=external_id(mail.message_id) if mail.message_id else None,
            meta=meta,
        )
        res = await self.service.create_interaction(req)
        if not res.created:  # the same message again: no second interaction, no second ack
            logger.info("email: %s already is %s", mail.message_id, res.ref)
            return res.ref
        saved, dropped = await self._save(res.id, mail)
        if saved or dropped:
            note = "\n".join(
                ([f"[attachments: {', '.join(saved)}]"] if saved else [])
                + ([f"[not kept: {'; '.join(dropped)}]"] if dropped else [])
            )
            await self.service.resident_message(res.id, note)
        logger.info("email: %s from %s -> %s (%s)%s", mail.message_id or "?", mail.sender,
                    res.ref, res.id, f"; automatic: {mail.automatic}" if mail.automatic else "")
        to = mail.reply_to or mail.sender
        if self.cfg.ack and to and not mail.automatic:
            language = self.service.cfg.city.default_language
            ack = self.outbound.acknowledgement(
                to=to, subject=mail.subject, ref=res.ref, language=language,
                in_reply_to=mail.message_id,
            )
            self._spawn(self._send_ack(ack, res.ref), f"ack {res.ref}")
        return res.ref

    async def _send_ack(self, msg: Any, ref: str) -> None:
        await self.outbound.send(msg)
        self.acks_sent += 1

    # --- outbound: agents' replies ------------------------------------------------------

    async def handle_event(self, event: Event, ix: dict[str, str]) -> None:
        extra = event.model_extra or {}
        if event.type != EventType.MESSAGE or extra.get("from") != "agent" or not ix:
            return
        key = (event.ix, event.time_ms)
        if key in self._replied:  # delivered again after we sent it: at least once
            return
        messages = await self.service.store.messages(event.ix)
        text = next(
            (m.get("text", "") for m in reversed(messages)
             if m.get("from") == "agent" and int(m.get("t", 0)) == event.time_ms
             and m.get("agent", "") == event.agent),
            None,
        )
        if text is None:
            logger.warning("email: agent message of %s at %d not found", event.ix,
                           event.time_ms)
            return
        meta = _meta(ix)
        to = str(meta.get("reply_to") or ix.get("resident") or "")
        if not to:
            logger.warning("email: %s has no resident address to reply to", event.ix)
            return
        original = str(meta.get("message_id") or "")
        msg = self.outbound.reply(
            to=to, subject=ix.get("subject", ""), ref=ix.get("ref", ""), text=text,
            in_reply_to=original, references=[original],
            # the same id when a retry sends it again, so the resident's client can de-duplicate
            message_id=f"<{event.ix}.{event.time_ms}.reply@{self.cfg.mail_domain}>",
        )
        await self.outbound.send(msg)  # EmailSendError: the event feed retries
        self._replied.add(key)
