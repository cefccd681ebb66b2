"""Delivery receipts: the gateway's later word on a message it took ("delivered" to the handset,
or "undelivered") written over the message's delivery record, which the agent sees.

When the gateway takes a segment, a link (kind "sent") from the gateway's message id (and from
our own reference, for gateways that name that one instead) leads back to the interaction, the
conversation item, which segment of how many it was and the outbox's try that took it. A receipt
stores the segment's status under the link "receipts" of the message; the message is
"delivered" once every segment is, and "undelivered" as soon as one is not.

A receipt is applied at once, whatever the record says then. The outbox writes "sent" only after
the send function returned, so a receipt may come before it (a fast gateway, or a first segment
refused while later ones are still being posted); a delivery record never steps back
(`ChannelState.set_delivery`), so the outbox's later "sent" or "retrying" is dropped and the
receipt's status stays. What that dropped "sent" would have said the receipt writes instead:
the try that took the message (from the links), the time, no error but the receipt's own. A
record that failed or was opted out (or is gone) is left alone.

The "sent" link is written only once the gateway answered with its id, so a receipt may even
come before it. Such a receipt is kept (link "early", EARLY_TTL_S) and applied by whichever
comes second: the sender, which looks for one after writing each link, or the webhook, which
looks for the link again after keeping the receipt. Both write before they read, so at least
one of them sees the other, in one process or several; applying a receipt twice changes
nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from router.channel_state import ChannelState

logger = logging.getLogger(__name__)

SENT = "sent"  # link: gateway message id (or our reference) -> {ix, item, segment, segments,
#                attempt}
RECEIPTS = "receipts"  # link: "<ix>:<item>" -> {segments, error, "<segment>": status,
#                        "try:<segment>": the outbox's try that took it}
EARLY = "early"  # link: an id not linked yet -> {status, raw, error}, a receipt that came first
EARLY_TTL_S = 600.0  # far longer than the gateway takes to answer a segment
PENDING = frozenset({"queued", "retrying"})
AFTER_SENT = frozenset({"sent", "delivered", "undelivered"})

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


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class Receipts:
    def __init__(self, state: ChannelState, window_s: float) -> None:
        self.state = state
        self.window_s = window_s

    async def sent(self, ix_id: str, item: str, segment: int, segments: int,
                   keys: list[str], attempt: int = 0) -> None:
        """The gateway took `segment` (1-based) of message `item` in the outbox's try
        `attempt`; `keys` name it in receipts. A receipt that came before is applied now."""
        fields = {"ix": ix_id, "item": item, "segment": str(segment), "segments": str(segments),
                  "attempt": str(attempt)}
        for key in dict.fromkeys(k for k in keys if k):
            await self.state.set_link(SENT, key, fields, self.window_s)
            early = await self.state.link(EARLY, key)
            if early.get("status"):
                try:
                    await self._record(fields, early["status"], early.get("raw", ""),
                                       early.get("error", ""))
                    await self.state.drop_link(EARLY, key)
                except Exception:  # the segment was taken all the same
                    logger.exception("sms: applying an early receipt for %s failed", key)

    async def receive(self, msg_id: str, raw_status: str, error: str = "") -> str:
        """Apply one receipt; returns what it did ("delivered", "undelivered", "ignored" for a
        status on the way, "unknown" for an id we never sent, forgot, or have not linked yet:
        that one is kept EARLY_TTL_S for the sender to apply)."""
        status = final_status(raw_status)
        if status is None:
            return "ignored"
        sent = await self.state.link(SENT, msg_id)
        if not (sent.get("ix") and sent.get("item")):
            # the gateway may report before its answer reached the sender: keep the receipt,
            # then look again, as the sender writes its link before it looks for this
            await self.state.set_link(EARLY, msg_id, {"status": status, "raw": raw_status,
                                                      "error": error}, EARLY_TTL_S)
            sent = await self.state.link(SENT, msg_id)
            if not (sent.get("ix") and sent.get("item")):
                logger.info("sms: receipt %r for unknown message %s (kept %.0fs)", raw_status,
                            msg_id, EARLY_TTL_S)
                return "unknown"
            await self.state.drop_link(EARLY, msg_id)
        await self._record(sent, status, raw_status, error)
        return status

    async def _record(self, sent: dict[str, str], status: str, raw_status: str,
                      error: str) -> None:
        """Store one segment's receipt with its message's, then apply them."""
        ix_id, item = sent["ix"], sent["item"]
        segment = sent.get("segment", "1")
        fields = {"segments": sent.get("segments", "1"), segment: status}
        if sent.get("attempt"):
            fields[f"try:{segment}"] = sent["attempt"]
        if status == "undelivered":
            fields["error"] = error or f"the gateway reported {raw_status.strip()}"
        await self.state.set_link(RECEIPTS, f"{ix_id}:{item}", fields, self.window_s)
        await self.apply(ix_id, item)

    async def apply(self, ix_id: str, item: str) -> bool:
        """Write the receipts of (ix_id, item) over its record, whether the outbox has recorded
        "sent" yet or not; False if they change nothing (some segments still on the way, the
        status already there, or a record that failed, was opted out or is gone)."""
        record = (await self.state.deliveries(ix_id)).get(item) or {}
        before = record.get("status")
        if before not in PENDING and before not in AFTER_SENT:
            return False  # failed, opted out, or no record: receipts change nothing
        receipts = await self.state.link(RECEIPTS, f"{ix_id}:{item}")
        segments = _int(receipts.pop("segments", "1"), 1) or 1
        error = receipts.pop("error", "")
        tries = [_int(v) for k, v in receipts.items() if k.startswith("try:")]
        got = [v for k, v in receipts.items() if not k.startswith("try:")]
        if "undelivered" in got:
            status = "undelivered"
        elif got.count("delivered") >= segments:
            status = "delivered"
        else:
            return False  # some segments still on the way
        if before == status:
            return False
        updated: dict[str, Any] = {**record, "status": status,
                                   "receipt_at_ms": int(time.time() * 1000)}
        if before in PENDING:
            # the outbox's "sent" will be dropped (a record never steps back): say what it
            # would have said, the try that took the message and no error
            updated.pop("retry_in_s", None)
            updated["attempts"] = max([_int(record.get("attempts")), *tries])
            updated["error"] = ""
            updated["at_ms"] = updated["receipt_at_ms"]
        if status == "undelivered":
            updated["error"] = error
        await self.state.set_delivery(ix_id, item, updated)
        logger.info("sms: message %s of %s %s", item, ix_id, status)
        return True
