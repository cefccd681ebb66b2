"""Contacts coming in, and reading them back.

Channels and external systems (role intake) create interactions and report what the resident
does; supervisors read any interaction; an agent reads one only while it holds it.
"""

from __future__ import annotations

from aiohttp import web

from router.auth import Principal, Role
from router.http.api.schemas import (
    DeliveryView,
    InteractionCreated,
    InteractionView,
    MessageList,
    MessagePosted,
    MessageRequest,
    MessageView,
    ResidentLeft,
    ResidentLeftRequest,
)
from router.http.api.table import Call, json_reply
from router.models import IntakeRequest, InteractionState
from router.service import RoutingService


async def create_interaction(call: Call) -> web.StreamResponse:
    body: IntakeRequest = call.body
    done = await call.service.create_interaction(body)
    if done.created:
        state = InteractionState.queued
    else:  # the channel delivered the same contact again: report where the first one is now
        state = InteractionState((await call.service.store.interaction(done.id))["state"])
    answer = InteractionCreated(
        id=done.id, ref=done.ref, state=state, created=done.created, enqueued_ms=done.enqueued_ms
    )
    return json_reply(answer, 201 if done.created else 200)


async def resident_left(call: Call) -> ResidentLeft:
    body: ResidentLeftRequest = call.body
    left = await call.service.resident_left(call.param("ix_id"), body.at_ms)
    return ResidentLeft(wait_ms=left.wait_ms, short=left.short, ended_ms=left.ended_ms)


async def resident_message(call: Call) -> MessagePosted:
    body: MessageRequest = call.body
    index = await call.service.resident_message(call.param("ix_id"), body.text)
    return MessagePosted(index=index)


async def readable_interaction(
    service: RoutingService, principal: Principal, ix_id: str
) -> dict[str, str]:
    """The interaction if this caller may read it (403 for an agent not holding it)."""
    if principal.role == Role.agent:
        assert principal.agent_id is not None
        return await service.interaction_for(principal.agent_id, ix_id)
    return await service.store.interaction(ix_id)


async def get_interaction(call: Call) -> InteractionView:
    ix = await readable_interaction(call.service, call.user, call.param("ix_id"))
    return InteractionView.from_hash(ix)


async def interaction_messages(call: Call) -> MessageList:
    ix_id = call.param("ix_id")
    await readable_interaction(call.service, call.user, ix_id)
    entries = await call.service.store.messages(ix_id)
    sent = {k: DeliveryView.from_record(v)
            for k, v in (await call.service.deliveries(ix_id)).items()}
    return MessageList(
        messages=[
            MessageView(
                sender=str(m.get("from", "")),
                agent=str(m.get("agent", "")),
                text=str(m.get("text", "")),
                time_ms=int(m.get("t", 0)),
                delivery=sent.get(str(index)),
            )
            for index, m in enumerate(entries, start=1)
        ],
        acknowledgement=sent.get("ack"),
    )


async def find_reference(call: Call) -> InteractionView:
    return InteractionView.from_hash(await call.service.store.by_ref(call.param("ref")))
