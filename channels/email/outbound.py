"""Mail we send through the smarthost: acknowledgements with the reference number, agents'
replies threaded onto the resident's mail (In-Reply-To/References), and answers other channels
hand to the e-mail outbox (the web form answers a resident who left an e-mail address).

Every one is composed from an outbox job (`router.outbox.OutboundJob`) when it is tried, with a
Message-ID fixed by the job, so a retry is the same message and the resident's client can
de-duplicate it. The reference number is always in the subject (`[2026-000123]`), which is how
a reply finds its way back even when its client drops the threading headers.

Acknowledgements carry `Auto-Submitted: auto-replied` (RFC 3834) so that well-behaved systems
never answer them, and are never sent to automatic mail (see `parse.automatic_reason`): the two
together keep us out of mail loops. Anything written by a person carries none.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formataddr, formatdate

import aiosmtplib

from channels.email.errors import EmailSendError
from router.config_email import EmailConfig
from router.outbox import OutboundJob

logger = logging.getLogger(__name__)

ACK_ITEM = "ack"

ACK_TEXT = {
    "pl": "Dziękujemy za wiadomość. Nadaliśmy jej numer sprawy {ref}.\n"
          "Odpowiadając, prosimy zachować numer w temacie wiadomości.",
    "en": "Thank you for your message. Its reference number is {ref}.\n"
          "When you reply, please keep the number in the subject.",
    "uk": "Дякуємо за ваше повідомлення. Номер вашої справи: {ref}.\n"
          "Відповідаючи, будь ласка, залиште номер у темі листа.",
}
# Subjects of mail that answers nothing with a subject of its own (a web form request).
ACK_SUBJECT = {"pl": "potwierdzenie przyjęcia zgłoszenia", "en": "we received your message",
               "uk": "ваше повідомлення отримано"}
ANSWER_SUBJECT = {"pl": "odpowiedź na zgłoszenie", "en": "answer to your request",
                  "uk": "відповідь на ваше звернення"}
MAX_SUBJECT = 500
# What a job's recipient must look like: one bare address, nothing a header could be built from.
ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def ack_text(language: str, ref: str) -> str:
    return ACK_TEXT.get(language, ACK_TEXT["pl"]).format(ref=ref)


def tagged_subject(subject: str, ref: str, *, reply: bool = True) -> str:
    """`Re: <subject> [ref]`, the reference number added once (and "Re: " only to a reply)."""
    subject = " ".join(subject.split())[:MAX_SUBJECT] or "-"
    if ref and f"[{ref}]" not in subject:
        subject = f"{subject} [{ref}]"
    if reply and not subject.lower().startswith("re:"):
        subject = "Re: " + subject
    return subject


def default_subject(city: str, ref: str, language: str, *, ack: bool) -> str:
    """`[2026-000123] <city>: answer to your request`, in the resident's language."""
    texts = ACK_SUBJECT if ack else ANSWER_SUBJECT
    what = texts.get(language, texts["pl"])
    return f"[{ref}] {city}: {what}" if ref else f"{city}: {what}"


def job_message_id(job: OutboundJob, domain: str) -> str:
    """The Message-ID of the mail a job sends: the same on every try of the job."""
    return f"<{_ID_UNSAFE.sub('_', job.ix_id)}.{_ID_UNSAFE.sub('_', job.item)}@{domain}>"


def _ids(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return []


class Outbound:
    """Builds and sends our mail; one per adapter."""

    def __init__(self, cfg: EmailConfig, city_name: str, env: Mapping[str, str] | None = None):
        self.cfg = cfg
        self.city_name = city_name
        self.env = os.environ if env is None else env

    def compose(self, job: OutboundJob, *, ref: str, language: str, subject: str
                ) -> EmailMessage:
        """The mail of one outbox job. `payload` may carry `in_reply_to`, `references` and
        `message_id`; a job with nothing more than `to` and `text` (another channel's answer)
        becomes a mail of its own with the reference number in its subject. Raises
        EmailSendError(permanent) for a job no mail can be made of."""
        ack = job.item == ACK_ITEM
        to = job.to.strip()
        if len(to) > 320 or not ADDRESS.match(to):
            raise EmailSendError(f"not an e-mail address: {to[:80]!r}", permanent=True)
        in_reply_to = str(job.payload.get("in_reply_to") or "").strip()
        refs = _ids(job.payload.get("references")) or ([in_reply_to] if in_reply_to else [])
        if subject.strip():
            subject = tagged_subject(subject, ref, reply=bool(in_reply_to))
        else:
            subject = default_subject(self.city_name, ref, language, ack=ack)
        text = job.text or (ack_text(language, ref) if ack else "")
        if not text.strip():
            raise EmailSendError("nothing to send: the message is empty", permanent=True)
        try:
            msg = EmailMessage()
            msg["From"] = formataddr((self.city_name, self.cfg.sender))
            msg["To"] = to
            msg["Subject"] = subject
            msg["Date"] = formatdate(localtime=True)
            msg["Message-ID"] = (str(job.payload.get("message_id") or "")
                                 or job_message_id(job, self.cfg.mail_domain))
            if in_reply_to:
                msg["In-Reply-To"] = in_reply_to
            if refs:
                msg["References"] = " ".join(refs[-20:])
            if ref:
                msg["X-Cityline-Ref"] = ref
            if ack:
                msg["Auto-Submitted"] = "auto-replied"
            msg.set_content(text)
        except (ValueError, TypeError) as exc:  # a header value no mail may carry
            raise EmailSendError(f"cannot compose the mail: {exc}", permanent=True) from exc
        return msg

    async def send(self, msg: EmailMessage) -> None:
        """Hand `msg` to the smarthost. EmailSendError: `permanent` when the smarthost refused
        the recipient or the message for good (5xx), otherwise worth another try (it is down,
        slow, or answered 4xx)."""
        host = self.cfg.smarthost
        where = f"smarthost {host.host}:{host.port}"
        password = self.env.get(host.password_env, "") if host.password_env else ""
        try:
            await aiosmtplib.send(
                msg,
                sender=self.cfg.sender,
                hostname=host.host,
                port=host.port,
                username=host.username or None,
                password=password or None,
                start_tls=host.starttls,
                timeout=host.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            permanent = bool(codes) and all(c >= 500 for c in codes)
            raise EmailSendError(f"{where} refused {msg['To']}: {detail}",
                                 permanent=permanent) from exc
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
            raise EmailSendError(f"{where} refused the mail: {exc.code} {exc.message}",
                                 permanent=exc.code >= 500) from exc
        except aiosmtplib.SMTPResponseException as exc:  # greeting, EHLO, AUTH, MAIL FROM
            # Our own setup (credentials, sender) is wrong or the smarthost is unwell: another
            # try after the operator fixed it may well succeed, so never given up at once.
            raise EmailSendError(f"{where}: {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:  # refused, timed out, disconnected
            raise EmailSendError(f"{where}: {exc}") from exc
        logger.info("email: sent %s to %s", msg["Message-ID"], msg["To"])
