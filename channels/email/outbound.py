"""Mail we send through the smarthost: acknowledgements with the reference number, and agents'
replies, both threaded onto the resident's mail (In-Reply-To/References).

Acknowledgements carry `Auto-Submitted: auto-replied` (RFC 3834) so that well-behaved systems
never answer them, and are never sent to automatic mail (see `parse.automatic_reason`): the two
together keep us out of mail loops. An agent's reply is written by a person and carries none.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

import aiosmtplib

from channels.email.errors import EmailSendError
from router.config_email import EmailConfig

logger = logging.getLogger(__name__)

ACK_TEXT = {
    "pl": "Dziękujemy za wiadomość. Nadaliśmy jej numer sprawy {ref}.\n"
          "Odpowiadając, prosimy zachować numer w temacie wiadomości.",
    "en": "Thank you for your message. Its reference number is {ref}.\n"
          "When you reply, please keep the number in the subject.",
    "uk": "Дякуємо за ваше повідомлення. Номер вашої справи: {ref}.\n"
          "Відповідаючи, будь ласка, залиште номер у темі листа.",
}


def tagged_subject(subject: str, ref: str) -> str:
    """`Re: <subject> [ref]`, the reference number added once."""
    subject = subject.strip() or "-"
    if f"[{ref}]" not in subject:
        subject = f"{subject} [{ref}]"
    if not subject.lower().startswith("re:"):
        subject = "Re: " + subject
    return subject


class Outbound:
    """Builds and sends our mail; one per adapter."""

    def __init__(self, cfg: EmailConfig, city_name: str, env: Mapping[str, str] | None = None):
        self.cfg = cfg
        self.city_name = city_name
        self.env = os.environ if env is None else env

    def _base(self, *, to: str, subject: str, ref: str, in_reply_to: str,
              references: list[str], message_id: str = "") -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = formataddr((self.city_name, self.cfg.sender))
        msg["To"] = to
        msg["Subject"] = tagged_subject(subject, ref)
        msg["Date"] = formatdate(localtime=True)
        msg["Message-ID"] = message_id or make_msgid(domain=self.cfg.mail_domain)
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to
        refs = [r for r in references if r] or ([in_reply_to] if in_reply_to else [])
        if refs:
            msg["References"] = " ".join(refs)
        msg["X-Cityline-Ref"] = ref
        return msg

    def acknowledgement(self, *, to: str, subject: str, ref: str, language: str,
                        in_reply_to: str) -> EmailMessage:
        msg = self._base(to=to, subject=subject, ref=ref, in_reply_to=in_reply_to,
                         references=[in_reply_to])
        msg["Auto-Submitted"] = "auto-replied"
        msg.set_content(ACK_TEXT.get(language, ACK_TEXT["pl"]).format(ref=ref))
        return msg

    def reply(self, *, to: str, subject: str, ref: str, text: str, in_reply_to: str,
              references: list[str], message_id: str) -> EmailMessage:
        msg = self._base(to=to, subject=subject, ref=ref, in_reply_to=in_reply_to,
                         references=references, message_id=message_id)
        msg.set_content(text)
        return msg

    async def send(self, msg: EmailMessage) -> None:
        host = self.cfg.smarthost
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
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise EmailSendError(f"smarthost {host.host}:{host.port}: {exc}") from exc
        logger.info("email: sent %s to %s", msg["Message-ID"], msg["To"])
