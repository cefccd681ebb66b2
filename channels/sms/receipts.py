"""Delivery receipts: the gateway's later word on a message it took ("delivered" to the handset,
or "undelivered") written over the message's delivery record, which the agent sees.

When the gateway takes a segment, a link (kind "sent") from the gateway's message id (and from
our own reference, for gateways that name that one instead) leads back to the interaction, the
conversation item and which segment of how many it was. A receipt stores the segment's status
under the link "receipts" of the message; the message is "delivered" once every segment is, and
"undelivered" as soon as one is not.

The outbox writes "sent" only after the send function returned, so a receipt may come before
it (a fast gateway, or a first segment refused while later ones are still being posted). Such a
receipt is kept and applied once the record says "sent": by the receiving webhook, which waits a
little, and by the sender, which looks for early receipts when it is done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from router.channel_state import ChannelState

logger = logging.getLogger(__name__)

SENT = "sent"  # link: gateway message id (or our reference) -> {ix, item, segment, segments}
RECEIPTS = "receipts"  # link: "<ix>:<item>" -> {segments, error, "<segment>": status}
PENDING = frozenset({"queued", "retrying"})
AFTER_SENT = frozenset({"sent", "delivered", "undelivered"})
WAIT_FOR_SENT_S = 15.0

DELIVERED = frozenset({"delivered", "delivrd", "read"})
UNDELIVERED = frozenset(
    {"undelivered", "undeliv", "undeliverable", "failed", "rejected", "expired"})


def final_status(raw: str) -> str | None:
    """"delivered" or "undelivered" for a gateway's final status; None for one on the way
    ("queued", "sent", "accepted"...), which changes nothing."""
    word = raw.strip().lower()
    if word in DELIVERED:
        return "delivered"
    if word in UNDELIVERED:
        return "undelivered"
    return None


class GenericStatus(BaseModel):
    """The generic status webhook's body."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200,
                    description="the gateway's message id, or the reference we sent")
    status: str = Field(min_length=1, max_length=64)
    error: str = Field("", max_length=500)


class TwilioStatus(BaseModel):
    """The fields of a Twilio-style status callback we use."""

    model_config = ConfigDict(extra="ignore")

    MessageSid: str = Field(min_length=1, max_length=64)
    MessageStatus: str = Field(min_length=1, max_length=64)
    ErrorCode: str = Field("", max_length=64)


class Receipts:
    def __init__(self, state: ChannelState, window_s: float) -> None:
        self.state = state
        self.window_s = window_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def sent(self, ix_id: str, item: str, segment: int, segments: int,
                   keys: list[str]) -> None:
        """The gateway took `segment` (1-based) of message `item`; `keys` name it in receipts."""
        fields = {"ix": ix_id, "item": item, "segment": str(segment), "segments": str(segments)}
        for key in dict.fromkeys(k for k in keys if k):
            await self.state.set_link(SENT, key, fields, self.window_s)

    async def receive(self, msg_id: str, raw_status: str, error: str = "") -> str:
        """Apply one receipt; returns what it did ("delivered", "undelivered", "ignored" for a
        status on the way, "unknown" for an id we never sent or forgot)."""
        status = final_status(raw_status)
        if status is None:
            return "ignored"
        sent = await self.state.link(SENT, msg_id)
        ix_id, item = sent.get("ix", ""), sent.get("item", "")
        if not ix_id or not item:
            logger.info("sms: receipt %r for unknown message %s", raw_status, msg_id)
            return "unknown"
        fields = {"segments": sent.get("segments", "1"), sent.get("segment", "1"): status}
        if status == "undelivered":
            fields["error"] = error or f"the gateway reported {raw_status.strip()}"
        await self.state.set_link(RECEIPTS, f"{ix_id}:{item}", fields, self.window_s)
        if not await self.apply(ix_id, item):
            self._spawn(self.apply(ix_id, item, wait_s=WAIT_FOR_SENT_S))
        return status

    async def after_send(self, ix_id: str, item: str) -> None:
        """The sender is done with a message: receipts that came before the outbox records it
        "sent" are applied once it has (in the background)."""
        if await self.state.link(RECEIPTS, f"{ix_id}:{item}"):
            self._spawn(self.apply(ix_id, item, wait_s=WAIT_FOR_SENT_S))

    async def apply(self, ix_id: str, item: str, *, wait_s: float = 0.0) -> bool:
        """Write the receipts of (ix_id, item) over its record once the record is past "sent";
        False if it is still queued or retrying after `wait_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            record = (await self.state.deliveries(ix_id)).get(item) or {}
            if record.get("status") in AFTER_SENT:
                break
            if record.get("status") not in PENDING:
                return True  # failed, opted out, or no record: receipts change nothing
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        receipts = await self.state.link(RECEIPTS, f"{ix_id}:{item}")
        segments = int(receipts.pop("segments", "1") or 1)
        error = receipts.pop("error", "")
        got = set(receipts.values())
        if "undelivered" in got:
            status = "undelivered"
        elif sum(1 for s in receipts.values() if s == "delivered") >= segments:
            status = "delivered"
        else:
            return True  # some segments still on the way
        if record.get("status") == status:
            return True
        updated: dict[str, Any] = {**record, "status": status,
                                   "receipt_at_ms": int(time.time() * 1000)}
        if status == "undelivered":
            updated["error"] = error
        await self.state.set_delivery(ix_id, item, updated)
        logger.info("sms: message %s of %s %s", item, ix_id, status)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(self._quiet(coro), name="sms-receipt")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quiet(coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except Exception:
            logger.exception("sms: applying a delivery receipt failed")

    async def close(self) -> None:
        for task in list(self._tasks):
            while not task.done():  # cancelled again should a Redis call swallow it
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
        self._tasks.clear()
