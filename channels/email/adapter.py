"""The e-mail adapter: residents' mail in through our SMTP server, our mail out through the
smarthost by way of the channel's persistent outbox.

    MAIL/RCPT  -> only the city's mailboxes (550 otherwise: never a relay), size 552
    DATA       -> parse -> a reply to a known conversation joins it (resident MESSAGE), else a
                  new interaction in the mailbox's queue -> 250 with the reference number
               -> acknowledgement with the reference number queued (not to automatic mail)
    agent MESSAGE event -> reply mail threaded onto the resident's mail, queued

Nothing that matters lives in this process only: what was joined, what we sent and the outbox
are the channel's shared state (`RoutingService.channel_state("email")`, in Redis), so another
cityline process or this one after a restart carries on. Acknowledgements and replies are
outbox jobs (`router.outbox`): stored before the first try, sent by whichever process's worker
takes them, retried with backoff while the smarthost is down or answers 4xx, given up at once
when it refuses the recipient (5xx). Each state is the job's delivery record, which the agent
sees next to the message ("queued", "retrying", "sent", "failed"). Other channels hand mail to
the same outbox (`router.outbox.submit(service.channel_state("email"), job)`: the web form
answers by e-mail); the SMTP server never waits for the smarthost.

The SMTP server runs in our own loop (`loop.create_server`), never aiosmtpd's threaded
Controller, and `start()` never connects to the smarthost.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping
from pathlib import Path

from channels.email.errors import EmailBusyError, EmailStartError
from channels.email.inbound import CitySMTP, ConnectionCounter, InboundHandler
from channels.email.outbound import ACK_ITEM, Outbound, ack_text
from channels.email.parse import ParsedMail, parse_message, plan_attachments, save_attachments
from channels.email.threading import Threader, external_id
from router.config_email import EmailConfig
from router.errors import CitylineError
from router.hash_fields import meta_of
from router.models import Channel, Event, EventType, IntakeRequest
from router.outbox import OutboundJob, Outbox, RetryPolicy
from router.service import RoutingService

logger = logging.getLogger(__name__)

EMAIL = Channel.email
MAX_SUBJECT = 500
MAX_BODY = 20_000
TRUNCATED = "\n[... truncated]"
# Message-IDs of replies already added to a conversation (link kind JOINED: -> ix, ref): a
# sending server that lost our 250 sends again, and the copy must not add the message twice.
JOINED = "joined"
JOINED_TTL_S = 30 * 86_400
# While one connection (of any process) adds a reply, a copy arriving meanwhile gets 451; the
# claim outlives a process that died while adding it by this long.
JOINING = "joining"
JOINING_TTL_S = 300.0
# How long tests' drain() waits for the outbox to empty.
DRAIN_S = 10.0


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED



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
        outbox_tick_s: float = 1.0,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.attachments_dir = Path(data_dir) / "attachments"
        self.port = cfg.port if port is None else port
        self.outbound = Outbound(cfg, service.cfg.city.name, env)
        self.threader = Threader(service)
        self.state = service.channel_state(EMAIL)
        retry = RetryPolicy(attempts=cfg.retry.attempts, backoff_s=cfg.retry.backoff_s,
                            backoff_max_s=cfg.retry.backoff_max_s)
        # A job is leased to one process while it is tried: long enough for a slow smarthost
        # (every SMTP step may take timeout_s), with few jobs taken at a time.
        self.outbox = Outbox(self.state, self.send_job, retry,
                             lease_s=max(120.0, 10 * cfg.smarthost.timeout_s),
                             tick_s=outbox_tick_s, batch=5)
        self.handler = InboundHandler(cfg, self.deliver)
        self._connections = ConnectionCounter(cfg.max_connections)
        self._protocols: set[CitySMTP] = set()
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None

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
        try:
            await self.outbox.start()  # reads Redis only; the smarthost is met at the first job
        except BaseException:
            await self.stop()
            raise
        logger.info("email: SMTP server on %s:%d for %s; sending through %s:%d", self.cfg.host,
                    self.port,
                    ", ".join([*self.cfg.addresses, *(f"@{d}" for d in self.cfg.domains)]),
                    self.cfg.smarthost.host, self.cfg.smarthost.port)

    async def stop(self) -> None:
        # Order: stop accepting connections, close the open ones (a message in DATA is not
        # acknowledged with 250, so its sender keeps it and retries), then stop the outbox
        # worker: what it has not sent stays in Redis for the next start or another process
        # (a send cut short is tried again once its lease runs out: at least once).
        if self._server is not None:
            self._server.close()
            for proto in list(self._protocols):
                if proto.transport is not None:
                    proto.transport.close()
            self._protocols.clear()
            await self._server.wait_closed()
            self._server = None
        await self.outbox.stop()
        logger.info("email: stopped")

    async def __aenter__(self) -> EmailAdapter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def drain(self, within_s: float = DRAIN_S) -> None:
        """Wait until the outbox holds nothing: every mail submitted so far was sent or given
        up (tests; the worker must be running)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while await self.outbox.pending():
            if loop.time() > deadline:
                raise TimeoutError(f"email outbox still holds {await self.outbox.pending()} jobs")
            self.outbox.kick()
            await asyncio.sleep(0.02)

    # --- inbound ------------------------------------------------------------------------

    async def _save(self, ix_id: str, mail: ParsedMail) -> tuple[list[str], list[str]]:
        plan = plan_attachments(mail.attachments, self.cfg.attachments)
        if plan.dropped:
            logger.warning("email: attachments of %s not kept: %s", ix_id,
                           "; ".join(plan.dropped))
        if not plan.kept:
            return [], plan.dropped
        paths = await asyncio.to_thread(save_attachments, self.attachments_dir / ix_id, plan.kept)
        return [p.name for p in paths], plan.dropped

    def _email_queue(self, name: str) -> bool:
        q = self.service.cfg.queues.get(name)
        return q is not None and q.channel == EMAIL

    async def deliver(self, raw: bytes, mail_from: str, queue: str | None) -> str:
        """Take one accepted message; returns the reference number of its interaction."""
        mail = parse_message(raw, mail_from)
        if mail.defects:
            logger.warning("email: message %s from %s has defects: %s", mail.message_id or "?",
                           mail.sender or mail_from, ", ".join(sorted(set(mail.defects))))
        if mail.message_id:
            joined = await self.state.link(JOINED, external_id(mail.message_id))
            if joined:
                return joined.get("ref", "")
        thread = await self.threader.find(mail)
        if thread is not None and not thread.ended:
            return await self._join(thread.ix, mail)
        follows = ""
        if thread is not None:
            follows = thread.ix.get("ref", "")
            # the same queue as before, unless that was another channel's (a web form request)
            earlier = thread.ix.get("queue", "")
            if earlier and self._email_queue(earlier):
                queue = earlier
        return await self._open(mail, queue, follows)

    async def _join(self, ix: dict[str, str], mail: ParsedMail) -> str:
        ix_id, ref = ix["id"], ix.get("ref", "")
        key = external_id(mail.message_id) if mail.message_id else ""
        if key and not await self.state.claim(JOINING, key, JOINING_TTL_S):
            joined = await self.state.link(JOINED, key)
            if joined:
                return joined.get("ref", "")
            raise EmailBusyError(f"{mail.message_id} is being added to {ref} right now")
        try:
            saved, dropped = await self._save(ix_id, mail)
            text = mail.body
            if saved:
                text += "\n\n[attachments: " + ", ".join(saved) + "]"
            if dropped:
                text += "\n[not kept: " + "; ".join(dropped) + "]"
            await self.service.resident_message(ix_id, _clip(text.strip(), MAX_BODY))
        except BaseException:
            if key:  # not added: a retry of the same message may add it
                await asyncio.shield(self.state.release(JOINING, key))
            raise
        if key:
            await self.state.set_link(JOINED, key, {"ix": ix_id, "ref": ref}, JOINED_TTL_S)
        logger.info("email: reply %s joins %s (%s, %s)", mail.message_id or "?", ref, ix_id,
                    ix.get("channel", ""))
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
        if res.created:
            saved, dropped = await self._save(res.id, mail)
            if saved or dropped:
                note = "\n".join(
                    ([f"[attachments: {', '.join(saved)}]"] if saved else [])
                    + ([f"[not kept: {'; '.join(dropped)}]"] if dropped else [])
                )
                await self.service.resident_message(res.id, note)
            logger.info("email: %s from %s -> %s (%s)%s", mail.message_id or "?", mail.sender,
                        res.ref, res.id,
                        f"; automatic: {mail.automatic}" if mail.automatic else "")
        else:
            logger.info("email: %s already is %s", mail.message_id, res.ref)
        # Queued on every copy of the message: the outbox takes it once, so a copy sent again
        # after we failed between the interaction and the acknowledgement still gets one.
        to = mail.reply_to or mail.sender
        if self.cfg.ack and to and not mail.automatic:
            await self._queue_ack(res.id, res.ref, to, mail)
        return res.ref

    async def _queue_ack(self, ix_id: str, ref: str, to: str, mail: ParsedMail) -> None:
        language = self.service.cfg.city.default_language
        original = mail.message_id
        await self.outbox.submit(OutboundJob(
            ix_id=ix_id, item=ACK_ITEM, to=to, text=ack_text(language, ref),
            payload={"subject": mail.subject, "ref": ref, "language": language,
                     "in_reply_to": original, "references": [original] if original else []},
        ))

    # --- outbound -----------------------------------------------------------------------

    async def _interaction(self, ix_id: str) -> dict[str, str]:
        try:
            return await self.service.interaction(ix_id)
        except CitylineError:
            return {}

    async def send_job(self, job: OutboundJob) -> None:
        """The outbox's transport: compose the job's mail and hand it to the smarthost.

        A job from another channel may carry no more than `to`, `text` and `payload` {ref,
        language[, subject]}: what is missing comes from its interaction. The mail's Message-ID
        is remembered (for every channel's interaction), so the resident's reply to it finds
        its way back (see `threading`)."""
        payload = job.payload
        ix: dict[str, str] = {}
        if not (payload.get("ref") and payload.get("language")):
            ix = await self._interaction(job.ix_id)
        ref = str(payload.get("ref") or ix.get("ref", ""))
        language = str(payload.get("language") or ix.get("language", "")
                       or self.service.cfg.city.default_language)
        msg = self.outbound.compose(job, ref=ref, language=language,
                                    subject=str(payload.get("subject") or ""))
        await self.threader.remember_sent(str(msg["Message-ID"]), job.ix_id, ref)
        await self.outbound.send(msg)

    async def handle_event(self, event: Event, ix: dict[str, str]) -> None:
        """An agent's message on an e-mail interaction: queue the reply (once, however often
        the event is delivered: the outbox remembers the submission)."""
        extra = event.model_extra or {}
        if event.type != EventType.MESSAGE or extra.get("from") != "agent" or not ix:
            return
        found = await self.service.announced_message(event)
        if found is None or found[1].get("from") != "agent":
            logger.warning("email: agent message of %s at %d not found", event.ix,
                           event.time_ms)
            return
        index, message = found
        meta = meta_of(ix)
        to = str(meta.get("reply_to") or ix.get("resident") or "")
        if not to:
            logger.warning("email: %s has no resident address to reply to", event.ix)
            return
        original = str(meta.get("message_id") or "")
        job = OutboundJob(
            ix_id=event.ix, item=str(index), to=to, text=str(message.get("text", "")),
            payload={"subject": ix.get("subject", ""), "ref": ix.get("ref", ""),
                     "language": ix.get("language", ""), "in_reply_to": original,
                     "references": [original] if original else []},
        )
        if not await self.outbox.submit(job):
            logger.info("email: reply %s of %s already queued", index, event.ix)
