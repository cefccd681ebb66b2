"""Which interaction a resident's mail belongs to.

A reply joins the conversation it answers instead of opening a new one. It is recognised by
In-Reply-To/References naming a Message-ID that opened an interaction (stored as that
interaction's `external_id`), or else by the reference number in the subject (`[2026-000123]`).
Reference numbers are sequential, so guessable: a subject match alone only counts when the mail
comes from the same address as the interaction's resident.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from channels.email.parse import ParsedMail
from queues.errors import StoreError
from router.models import TERMINAL_STATES, Channel
from router.service import RoutingService

logger = logging.getLogger(__name__)

REF_IN_SUBJECT = re.compile(r"\[(\d{4}-\d{6,})\]")
# IntakeRequest.external_id is at most 256 characters; longer Message-IDs are hashed.
MAX_EXTERNAL_ID = 256


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

    async def _interaction(self, ix_id: str) -> dict[str, str] | None:
        try:
            return await self.service.store.interaction(ix_id)
        except StoreError:
            return None

    async def find(self, mail: ParsedMail) -> Thread | None:
        for mid in mail.thread_ids:
            ix_id = await self.service.find_external(Channel.email, external_id(mid))
            if ix_id and (ix := await self._interaction(ix_id)) is not None:
                return Thread(ix, ix.get("state") in TERMINAL_STATES, f"message-id {mid}")
        for ref in REF_IN_SUBJECT.findall(mail.subject):
            try:
                ix = await self.service.store.by_ref(ref)
            except StoreError:
                continue
            if ix.get("channel") != Channel.email:
                continue
            if not mail.sender or ix.get("resident", "").lower() != mail.sender:
                logger.info("email: subject names %s but %s is not its resident; new mail",
                            ref, mail.sender)
                continue
            return Thread(ix, ix.get("state") in TERMINAL_STATES, f"reference {ref}")
        return None
