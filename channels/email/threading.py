"""Which interaction a resident's mail belongs to.

A reply joins the conversation it answers instead of opening a new one. It is recognised by
In-Reply-To/References naming a Message-ID we sent (every mail of the e-mail outbox is linked to
its interaction in the channel's shared state, whichever channel's interaction it answers: a web
form request answered by e-mail too), or one that opened an interaction (stored as that
interaction's `external_id`), or else by the reference number in the subject (`[2026-000123]`).
Reference numbers are sequential, so guessable: a subject match alone only counts when the mail
comes from the same address as the interaction's resident.

What the adapter does with the match: an open conversation is joined (of any channel: the
resident answers the mail we sent for it), an ended one is followed by a new e-mail interaction
that names it (`follows`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from channels.email.parse import ParsedMail
from router.errors import CitylineError
from router.models import TERMINAL_STATES, Channel
from router.service import RoutingService

logger = logging.getLogger(__name__)

REF_IN_SUBJECT = re.compile(r"\[(\d{4}-\d{6,})\]")
# IntakeRequest.external_id is at most 256 characters; longer Message-IDs are hashed.
MAX_EXTERNAL_ID = 256
# The link kind of our own Message-IDs -> {"ix": interaction id, "ref": reference number}.
SENT = "sent"
# How long a reply to our mail still finds its conversation by Message-ID (the reference
# number in the subject works for as long as the interaction is kept).
SENT_TTL_S = 400 * 86_400
# Hostile mail may name thousands of Message-IDs: only the most recent ones are looked up.
MAX_THREAD_IDS = 20


def external_id(message_id: str) -> str:
    """The `external_id` a Message-ID is stored under."""
    if len(message_id) <= MAX_EXTERNAL_ID:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()


@dataclass(frozen=True)
class Thread:
    """The earlier interaction this mail continues; `ended` if it is over already."""

    ix: dict[str, str]
    ended: bool
    matched_by: str


class Threader:
    def __init__(self, service: RoutingService) -> None:
        self.service = service
        self.state = service.channel_state(Channel.email)

    async def _interaction(self, ix_id: str) -> dict[str, str] | None:
        try:
            ix = await self.service.interaction(ix_id)
        except CitylineError:  # NotFound: expired or never there
            return None
        return ix or None

    async def remember_sent(self, message_id: str, ix_id: str, ref: str) -> None:
        """A reply to the mail `message_id` (ours) belongs to `ix_id`."""
        key = external_id(message_id)
        await self.state.set_link(SENT, key, {"ix": ix_id, "ref": ref}, SENT_TTL_S)

    async def find(self, mail: ParsedMail) -> Thread | None:
        for mid in mail.thread_ids[:MAX_THREAD_IDS]:
            key = external_id(mid)
            ix_id = (await self.state.link(SENT, key)).get("ix") or (
                await self.service.find_external(Channel.email, key))
            if ix_id and (ix := await self._interaction(ix_id)) is not None:
                return Thread(ix, ix.get("state") in TERMINAL_STATES, f"message-id {mid}")
        for ref in REF_IN_SUBJECT.findall(mail.subject)[:MAX_THREAD_IDS]:
            try:
                ix = await self.service.interaction_by_ref(ref)
            except CitylineError:
                continue
            if not ix:
                continue
            # any channel we answered by e-mail: a web form request has the address as resident
            if not mail.sender or ix.get("resident", "").strip().lower() != mail.sender:
                logger.info("email: subject names %s but %s is not its resident; new mail",
                            ref, mail.sender)
                continue
            if ix.get("channel") != Channel.email and not await self._mailed(ix.get("id", "")):
                continue  # another channel's contact we never wrote to by e-mail
            return Thread(ix, ix.get("state") in TERMINAL_STATES, f"reference {ref}")
        return None

    async def _mailed(self, ix_id: str) -> bool:
        """Whether the e-mail outbox sent (or tries to send) something for `ix_id`."""
        records = await self.service.deliveries(ix_id) if ix_id else {}
        return any(r.get("channel") == Channel.email for r in records.values())
