"""The channel memory and the persistent outbox on the real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from router.outbox import DeliveryError, OutboundJob, Outbox, RetryPolicy
from router.service import RoutingService
from tests.routing_fixtures import eventually

FAST = RetryPolicy(attempts=3, backoff_s=0.05, backoff_max_s=0.1)


async def test_claims_are_first_come_and_can_be_released(service: RoutingService) -> None:
    sms, email = service.channel_state("sms"), service.channel_state("email")
    assert await sms.claim("seen", "m1", 60)
    assert not await sms.claim("seen", "m1", 60)
    assert await email.claim("seen", "m1", 60)  # scoped by channel
    await sms.release("seen", "m1")
    assert not await sms.claimed("seen", "m1")
    assert await sms.claim("seen", "m1", 60)


async def test_rate_windows_count_per_key_and_window(service: RoutingService) -> None:
    state = service.channel_state("sms")
    assert [await state.hit("+48600100200", 60, now_s=120.0) for _ in range(3)] == [1, 2, 3]
    assert await state.hit("+48600100201", 60, now_s=120.0) == 1
    assert await state.hit("+48600100200", 60, now_s=180.0) == 1


async def test_links_flags_and_fragments(service: RoutingService) -> None:
    state = service.channel_state("sms")
    await state.set_link("thread", "+48600", {"ix": "i1", "last": "5"}, 60)
    assert await state.link("thread", "+48600") == {"ix": "i1", "last": "5"}
    await state.drop_link("thread", "+48600")
    assert await state.link("thread", "+48600") == {}
    await state.set_flag("opted_out", "+48600")
    assert await state.has_flag("opted_out", "+48600")
    await state.set_flag("opted_out", "+48600", False)
    assert not await state.has_flag("opted_out", "+48600")
    assert await state.add_fragment("g", 2, 2, {"text": "b"}, 100.0) == 1
    assert await state.add_fragment("g", 1, 2, {"text": "a"}, 100.0) == 2
    assert await state.overdue_fragments(99.0) == []
    assert await state.overdue_fragments(100.0) == ["g"]
    assert await state.take_fragments("g") == (2, {1: {"text": "a"}, 2: {"text": "b"}})
    assert await state.take_fragments("g") is None  # one winner only


async def test_outbox_retries_then_sends_and_records_each_state(
        service: RoutingService) -> None:
    tries: list[str] = []

    async def flaky(job: OutboundJob) -> None:
        tries.append(job.text)
        if len(tries) == 1:
            raise DeliveryError("gateway 503")

    outbox = Outbox(service.channel_state("sms"), flaky, FAST, tick_s=0.02)
    job = OutboundJob(ix_id="ix1", item="3", to="+48600", text="hello")
    assert await outbox.submit(job)
    assert not await outbox.submit(job)  # the same message again is not sent twice
    assert (await service.deliveries("ix1"))["3"]["status"] == "queued"
    await outbox.start()
    try:
        await eventually(lambda: _status(service, "ix1", "3", "sent"))
    finally:
        await outbox.stop()
    assert not await outbox.submit(job)  # nor once it was sent
    record = (await service.deliveries("ix1"))["3"]
    assert record["attempts"] == 2 and record["channel"] == "sms" and record["error"] == ""
    assert tries == ["hello", "hello"] and await outbox.pending() == 0


async def test_outbox_gives_up_after_the_last_try_and_on_permanent_errors(
        service: RoutingService) -> None:
    async def down(job: OutboundJob) -> None:
        if job.item == "opt":
            raise DeliveryError("resident opted out", permanent=True, status="opted_out")
        raise DeliveryError("connection refused")

    outbox = Outbox(service.channel_state("email"), down, FAST, tick_s=0.02)
    await outbox.submit(OutboundJob(ix_id="ix2", item="ack", to="a@b.pl"))
    await outbox.submit(OutboundJob(ix_id="ix2", item="opt", to="a@b.pl"))
    await outbox.start()
    try:
        await eventually(lambda: _status(service, "ix2", "ack", "failed"))
    finally:
        await outbox.stop()
    got = await service.deliveries("ix2")
    assert got["ack"]["attempts"] == 3 and got["ack"]["error"] == "connection refused"
    assert got["opt"]["status"] == "opted_out" and got["opt"]["attempts"] == 1


async def test_outbox_jobs_survive_a_stop_and_a_crashed_sender(service: RoutingService) -> None:
    """A job taken by a process that died is taken again once its lease runs out."""
    sent: list[str] = []

    async def ok(job: OutboundJob) -> None:
        sent.append(job.item)

    state = service.channel_state("sms")
    dead = Outbox(state, ok, FAST, lease_s=0.2)
    await dead.submit(OutboundJob(ix_id="ix3", item="1", to="+48600"))
    taken = await state.store.take_due("sms", time.time(), 10, 0.2)  # "crashes" while sending
    assert [job_id for job_id, _ in taken] == ["ix3:1"]
    again = Outbox(state, ok, FAST, lease_s=0.2, tick_s=0.02)
    assert await again.run_once() == 0  # leased to the dead one for now
    await asyncio.sleep(0.25)
    assert await again.run_once() == 1
    assert sent == ["1"] and await again.pending() == 0


async def test_two_outboxes_never_send_one_job_twice(service: RoutingService) -> None:
    sent: list[str] = []

    async def ok(job: OutboundJob) -> None:
        await asyncio.sleep(0.001)
        sent.append(job.item)

    state = service.channel_state("sms")
    a, b = Outbox(state, ok, FAST), Outbox(state, ok, FAST)
    for i in range(200):
        await a.submit(OutboundJob(ix_id="ix4", item=str(i), to="+48600"))
    while await a.pending():
        await asyncio.gather(a.run_once(), b.run_once())
    assert sorted(sent, key=int) == [str(i) for i in range(200)]


async def _status(service: RoutingService, ix_id: str, item: str, want: str) -> bool:
    return (await service.deliveries(ix_id)).get(item, {}).get("status") == want


@pytest.mark.parametrize("attempts,expected", [(1, 2.0), (2, 4.0), (9, 300.0)])
def test_backoff_doubles_up_to_the_limit(attempts: int, expected: float) -> None:
    assert RetryPolicy().pause_after(attempts) == expected


async def test_a_delivery_record_never_steps_back(service: RoutingService) -> None:
    """A receipt may overtake the sender: "delivered" stays when "sent" is written after it."""
    state = service.channel_state("sms")
    assert await state.set_delivery("ix5", "1", {"status": "queued"})
    assert await state.set_delivery("ix5", "1", {"status": "delivered"})
    assert not await state.set_delivery("ix5", "1", {"status": "sent"})
    assert (await service.deliveries("ix5"))["1"]["status"] == "delivered"
    assert await state.set_delivery("ix5", "2", {"status": "retrying"})
    assert await state.set_delivery("ix5", "2", {"status": "failed", "error": "x"})
    # a receipt outranks our own conclusion: a resend that failed after a crash does not hide
    # that the first try was delivered, and a receipt corrects an earlier "failed"
    assert not await state.set_delivery("ix5", "1", {"status": "failed", "error": "resend"})
    assert (await service.deliveries("ix5"))["1"]["status"] == "delivered"
    assert await state.set_delivery("ix5", "2", {"status": "delivered"})
    assert await state.set_delivery("ix5", "1", {"status": "undelivered"})  # receipts: equal


async def test_the_message_an_event_announced(service: RoutingService, redis) -> None:
    """By the event's index; an event from before MESSAGE carried one, by its time."""
    from router.models import Channel, Event, IntakeRequest
    from tests.routing_fixtures import events

    ix = (await service.create_interaction(IntakeRequest(channel=Channel.chat))).id
    await service.resident_message(ix, "one")
    await asyncio.sleep(0.002)  # by time, two messages of one millisecond are told apart badly
    await service.resident_message(ix, "two")
    first, second = await events(redis, "MESSAGE")
    assert await service.announced_message(second) == (2, await service.store.message_at(ix, 2))
    old = Event.model_validate({**second.model_dump(), "index": None})
    found = await service.announced_message(old)
    assert found is not None and found[0] == 2 and found[1]["text"] == "two"
    assert await service.announced_message(Event.model_validate(
        {**first.model_dump(), "type": "ENTERQUEUE"})) is None
