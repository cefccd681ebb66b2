"""A persistent outbox: what cityline sends a resident (an acknowledgement, an agent's reply)
is stored before the first try and retried with backoff until it is sent or fails for good.

Jobs live in Redis (`queues.channel_state`), so a restart or a crash resumes them, and several
processes may drain one outbox (each due job is leased to one of them). Every state of a job is
written to the interaction's delivery record, which the agent sees next to the message.
The channel supplies the transport: `send(job)` returns normally once the peer (the smarthost,
the SMS gateway, the Bot API) took the message, or raises `DeliveryError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

from router.channel_state import ChannelState
from router.tasks import cancel_for_sure

logger = logging.getLogger(__name__)

# An event delivered again after its message was sent must not send it twice: the submission
# is remembered this long (the event feed redelivers within minutes; 30 days is generous).
SUBMITTED_TTL_S = 30 * 86_400


class DeliveryError(Exception):
    """The peer did not take the message. `permanent`: trying again cannot help (a refused
    recipient, an opt-out); `status` is then what the agent sees (default "failed")."""

    def __init__(self, message: str, *, permanent: bool = False, status: str = "failed") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status


class OutboundJob(BaseModel):
    """One message to one resident. `item` is the conversation message index it delivers (or a
    name such as "ack"); `payload` is the channel's own (subject, threading headers, ...)."""

    ix_id: str
    item: str
    to: str
    text: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    attempts: int = 0
    last_error: str = ""

    @property
    def id(self) -> str:
        return f"{self.ix_id}:{self.item}"


class RetryPolicy(BaseModel):
    attempts: int = Field(6, ge=1, description="tries in all, the first one included")
    backoff_s: float = Field(2.0, gt=0, description="pause before the first retry; doubled")
    backoff_max_s: float = Field(300.0, gt=0)

    def pause_after(self, attempts: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempts - 1)))


Sender = Callable[[OutboundJob], Awaitable[None]]


async def _record(state: ChannelState, job: OutboundJob, status: str, **extra: Any) -> None:
    record = {"status": status, "to": job.to, "attempts": job.attempts,
              "error": job.last_error, "at_ms": int(time.time() * 1000), **extra}
    await state.set_delivery(job.ix_id, job.item, record)


async def submit(state: ChannelState, job: OutboundJob) -> bool:
    """Queue `job` in the outbox of `state`'s channel once (False if already there or sent).
    Another channel may hand a message to this one (the web form answers by e-mail or SMS):
    whichever process runs that channel's `Outbox` sends it within its tick."""
    if not await state.claim("outbox", job.id, SUBMITTED_TTL_S):
        return False
    await state.store.put_job(state.channel, job.id, job.model_dump(), time.time())
    await _record(state, job, "queued")
    return True


class Outbox:
    """`submit` jobs; `start()` runs the worker that sends them; `stop()` leaves what is not yet
    sent in Redis for the next start."""

    def __init__(self, state: ChannelState, send: Sender, retry: RetryPolicy, *,
                 lease_s: float = 120.0, tick_s: float = 1.0, batch: int = 50) -> None:
        self.state = state
        self.send = send
        self.retry = retry
        self.lease_s = lease_s
        self.tick_s = tick_s
        self.batch = batch
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.sent = 0

    @property
    def channel(self) -> str:
        return self.state.channel

    async def _record(self, job: OutboundJob, status: str, **extra: Any) -> None:
        await _record(self.state, job, status, **extra)

    async def submit(self, job: OutboundJob) -> bool:
        """Queue `job` once: False if this (interaction, item) was already submitted (events
        arrive at least once)."""
        stored = await submit(self.state, job)
        if stored:
            self._wake.set()
        return stored

    async def pending(self) -> int:
        return await self.state.store.pending_jobs(self.channel)

    async def run_once(self, now_s: float | None = None) -> int:
        """Try every due job once; returns how many were tried."""
        now = time.time() if now_s is None else now_s
        taken = await self.state.store.take_due(self.channel, now, self.batch, self.lease_s)
        for job_id, data in taken:
            try:
                job = OutboundJob.model_validate(data)
            except ValueError:
                logger.error("%s outbox: job %s is unreadable, dropped", self.channel, job_id)
                await self.state.store.finish_job(self.channel, job_id)
                continue
            await self._attempt(job)
        return len(taken)

    async def _attempt(self, job: OutboundJob) -> None:
        job.attempts += 1
        try:
            await self.send(job)
        except DeliveryError as exc:
            job.last_error = str(exc)
            if exc.permanent or job.attempts >= self.retry.attempts:
                logger.error("%s outbox: %s to %s failed after %d tries: %s", self.channel,
                             job.id, job.to, job.attempts, exc)
                await self._record(job, exc.status if exc.permanent else "failed")
                await self.state.store.finish_job(self.channel, job.id)
                return
            pause = self.retry.pause_after(job.attempts)
            logger.warning("%s outbox: %s try %d failed (%s); again in %.1fs", self.channel,
                           job.id, job.attempts, exc, pause)
            await self.state.store.put_job(self.channel, job.id, job.model_dump(),
                                           time.time() + pause)
            await self._record(job, "retrying", retry_in_s=pause)
            return
        except Exception as exc:  # a bug in a transport: kept for a later try, never lost
            logger.exception("%s outbox: sending %s raised", self.channel, job.id)
            job.last_error = f"internal error: {type(exc).__name__}"
            await self.state.store.put_job(self.channel, job.id, job.model_dump(),
                                           time.time() + self.retry.pause_after(job.attempts))
            await self._record(job, "retrying")
            return
        job.last_error = ""
        await self._record(job, "sent")
        await self.state.store.finish_job(self.channel, job.id)
        self.sent += 1

    # --- the worker ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"{self.channel}-outbox")
            waiting = await self.pending()
            if waiting:
                logger.info("%s outbox: %d messages to send from before", self.channel, waiting)

    async def stop(self) -> None:
        """Stop the worker (a send in progress is cut short: its job is leased and will be
        taken again after `lease_s`)."""
        if self._worker is not None:
            await cancel_for_sure(self._worker)
            self._worker = None

    def kick(self) -> None:
        self._wake.set()

    async def _work(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.run_once()
                head = await self.state.store.next_due(self.channel)
            except Exception:
                logger.exception("%s outbox: worker pass failed", self.channel)
                head = None
            delay = self.tick_s
            if head is not None:
                delay = max(0.0, min(delay, head - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
