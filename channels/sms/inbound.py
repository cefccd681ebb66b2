"""Inbound SMS: webhook signatures, body validation, and what a message does to the router.

Order for every webhook: signature (401 unsigned, 403 wrong) -> body (400) -> sender normalised
to E.164 (400 if it is no phone number) -> a gateway message id already seen is answered as done
(webhook retries are idempotent) -> per-number rate limit (429) -> STOP/START keywords ->
multi-part assembly -> threading: joins the number's open conversation within the window, or
opens a new interaction whose external id is the gateway's message id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.channel_state import ChannelState
from router.config_sms import SmsConfig
from router.errors import CitylineError, NotFound
from router.models import Channel, IntakeRequest
from router.service import RoutingService

logger = logging.getLogger(__name__)

SMS = Channel.sms
OPT_OUT = frozenset({"STOP", "STOP ALL", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "UNSTOP", "YES"})
OPEN_STATES = frozenset({"queued", "offered", "connected"})
MISSING_PART = "[…]"

# What the channel keeps in its `ChannelState` (router.channel_state)
OPTED_OUT = "opted_out"  # flag: numbers that sent STOP
WEBHOOK = "webhook"  # claim: gateway message ids already taken
THREAD = "thread"  # link: number -> {ix, last} of its open conversation
SEEN_TTL_S = 3 * 86_400  # gateways retry a webhook for hours at most
RATE_WINDOW_S = 60.0


# --- signatures -----------------------------------------------------------------------------


def hmac_sha256_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_generic_signature(secret: str, body: bytes, header: str | None) -> int:
    """0 if `header` (`sha256=<hex>`) signs `body`; else the HTTP status to answer."""
    if not header:
        return 401
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return 403
    return 0 if hmac.compare_digest(given.lower(), hmac_sha256_hex(secret, body)) else 403


def twilio_signature(token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature: base64(HMAC-SHA1(token, url + each key+value, by key)).

    The full URL as Twilio requested it (scheme, host, path, query), then every POST parameter
    sorted by name (values of a repeated name in order too) appended as name followed by value.
    """
    data = url + "".join(k + v for k, v in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def check_twilio_signature(
    token: str, url: str, params: Iterable[tuple[str, str]], header: str | None
) -> int:
    if not header:
        return 401
    return 0 if hmac.compare_digest(header.strip(), twilio_signature(token, url, params)) else 403


# --- bodies ---------------------------------------------------------------------------------


class Parts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ref: str = Field(min_length=1, max_length=128)
    index: int = Field(ge=1, le=50)
    total: int = Field(ge=1, le=50)

    @model_validator(mode="after")
    def _index_within(self) -> Parts:
        if self.index > self.total:
            raise ValueError("parts.index is above parts.total")
        return self


class GenericInbound(BaseModel):
    """The generic JSON webhook's body."""

    # text is kept as sent: the parts of a long message may begin or end with a space
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1, max_length=200, description="the gateway's message id")
    from_: str = Field(alias="from", min_length=1, max_length=64)
    to: str = Field("", max_length=64)
    text: str = Field(max_length=5_000)
    parts: Parts | None = None


class TwilioInbound(BaseModel):
    """The fields of a Twilio-style form post we use (Twilio assembles multi-part itself)."""

    model_config = ConfigDict(extra="ignore")

    MessageSid: str = Field(min_length=1, max_length=64)
    From: str = Field(min_length=1, max_length=64)
    To: str = Field("", max_length=64)
    Body: str = Field("", max_length=5_000)


def normalise_number(raw: str, region: str) -> str | None:
    """E.164 form of a phone number (national numbers read in `region`); None if it is none."""
    try:
        num = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def keyword(text: str) -> str | None:
    """"stop" or "start" if the whole message is an opt-out/opt-in keyword."""
    word = " ".join(text.upper().split()).strip(".!")
    if word in OPT_OUT:
        return "stop"
    if word in OPT_IN:
        return "start"
    return None


# --- processing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundSms:
    msg_id: str
    number: str  # E.164
    text: str
    to: str = ""
    parts: Parts | None = None


@dataclass(frozen=True)
class Outcome:
    status: str  # created | joined | duplicate | opted_out | opted_in | part_stored | rate_limited
    ix_id: str = ""


class Inbound:
    """What an accepted inbound SMS does to the router."""

    def __init__(self, service: RoutingService, cfg: SmsConfig, state: ChannelState) -> None:
        self.service = service
        self.cfg = cfg
        self.state = state
        # one message at a time per number in this process, so two quick messages thread
        self._locks = [asyncio.Lock() for _ in range(64)]

    async def receive(self, sms: InboundSms) -> Outcome:
        if await self.state.claimed(WEBHOOK, sms.msg_id):
            return Outcome("duplicate", await self.service.find_external(SMS, sms.msg_id) or "")
        if await self.state.hit(sms.number, RATE_WINDOW_S) > self.cfg.rate_limit:
            logger.warning("sms: rate limit of %d/min exceeded by %s; message %s refused",
                           self.cfg.rate_limit, sms.number, sms.msg_id)
            return Outcome("rate_limited")
        if not await self.state.claim(WEBHOOK, sms.msg_id, SEEN_TTL_S):
            return Outcome("duplicate", await self.service.find_external(SMS, sms.msg_id) or "")
        try:
            return await self._receive(sms)
        except BaseException:
            await self.state.release(WEBHOOK, sms.msg_id)  # a retry of the webhook may succeed
            raise

    async def _receive(self, sms: InboundSms) -> Outcome:
        kw = keyword(sms.text) if sms.parts is None else None
        if kw == "stop":
            await self.state.set_flag(OPTED_OUT, sms.number)
            logger.info("sms: %s opted out", sms.number)
            await self._note_in_thread(sms.number, sms.text)
            return Outcome("opted_out")
        if kw == "start":
            await self.state.set_flag(OPTED_OUT, sms.number, False)
            logger.info("sms: %s opted in again", sms.number)
            await self._note_in_thread(sms.number, sms.text)
            return Outcome("opted_in")
        if sms.parts is not None and sms.parts.total > 1:
            ref = f"{sms.number}:{sms.parts.ref}"
            part = {"id": sms.msg_id, "text": sms.text, "to": sms.to}
            deadline = time.time() + self.cfg.parts_timeout_s
            n = await self.state.add_fragment(ref, sms.parts.index, sms.parts.total, part,
                                              deadline)
            if n < sms.parts.total:
                return Outcome("part_stored")
            return await self.assemble(ref) or Outcome("part_stored")
        return await self.deliver(sms.number, sms.text, sms.msg_id)

    async def assemble(self, ref: str, *, overdue: bool = False) -> Outcome | None:
        """Join the stored parts of `ref` in order (a missing one marked) and deliver them."""
        taken = await self.state.take_fragments(ref)
        if taken is None:
            return None  # another request or process assembles it
        total, parts = taken
        if not parts:
            return None
        if overdue:
            logger.warning("sms: multi-part %s incomplete after %ss (%d of %d parts); taken "
                           "as it is", ref, self.cfg.parts_timeout_s, len(parts), total)
        texts = [parts[i]["text"] if i in parts else MISSING_PART for i in range(1, total + 1)]
        number = ref.rsplit(":", 1)[0]
        first = parts[min(parts)]
        return await self.deliver(number, "".join(texts), f"{first['id']}")

    async def deliver(self, number: str, text: str, msg_id: str) -> Outcome:
        text = text[: self.cfg.max_text_chars]
        async with self._locks[hash(number) % len(self._locks)]:
            return await self._thread_or_create(number, text, msg_id)

    async def _open_thread(self, number: str) -> str | None:
        found = await self.state.link(THREAD, number)
        ix_id = found.get("ix", "")
        try:
            last = float(found.get("last") or 0)
        except ValueError:
            last = 0.0
        if not ix_id or time.time() - last > self.cfg.thread_window_s:
            return None
        ix = await self._interaction(ix_id)
        return ix_id if ix is not None and ix.get("state") in OPEN_STATES else None

    async def _interaction(self, ix_id: str) -> dict[str, str] | None:
        try:
            return await self.service.interaction(ix_id)
        except NotFound:
            return None

    async def _set_thread(self, number: str, ix_id: str, at_s: float) -> None:
        await self.state.set_link(THREAD, number, {"ix": ix_id, "last": repr(at_s)},
                                  self.cfg.thread_window_s + 60)

    async def _thread_or_create(self, number: str, text: str, msg_id: str) -> Outcome:
        now = time.time()
        ix_id = await self._open_thread(number)
        if ix_id is not None:
            try:
                await self.service.resident_message(ix_id, text)
            except CitylineError:
                ix_id = None  # closed meanwhile: a new conversation
            else:
                await self._set_thread(number, ix_id, now)
                return Outcome("joined", ix_id)
        enq = await self.service.create_interaction(IntakeRequest(
            channel=SMS, queue=self.cfg.queue, resident=number, body=text, external_id=msg_id,
            meta={"sms_message_id": msg_id},
        ))
        await self._set_thread(number, enq.id, now)
        return Outcome("created", enq.id)

    async def _note_in_thread(self, number: str, text: str) -> None:
        """A keyword is shown in the open conversation too, so the agent knows."""
        ix_id = await self._open_thread(number)
        if ix_id is None:
            return
        with contextlib.suppress(CitylineError):
            await self.service.resident_message(ix_id, text)

    async def flush_overdue(self) -> int:
        """Deliver multi-part messages whose parts stopped coming; returns how many."""
        n = 0
        for ref in await self.state.overdue_fragments(time.time()):
            if await self.assemble(ref, overdue=True) is not None:
                n += 1
        return n
