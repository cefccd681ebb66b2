"""The agent desktop's API: sign in, change state, see offers, work an interaction.

The route table lets role agent reach these only with its own `{agent_id}`. Every action on an
interaction first checks that the agent holds it, so touching another agent's interaction is a
uniform 403 `forbidden`; the Lua script then re-checks atomically (the interaction may move
between that read and the script) and refuses a stale action without changing anything.
"""

from __future__ import annotations

from router.errors import NotFound
from router.http.api.schemas import (
    Accepted,
    AgentLoginRequest,
    AgentStateRequest,
    AgentView,
    Closed,
    Completed,
    CompleteRequest,
    InteractionList,
    InteractionView,
    MessagePosted,
    MessageRequest,
    Rejected,
    Transferred,
    WrapupEndRequest,
)
from router.http.api.table import Call
from router.models import TransferRequest
from router.service import RoutingService


async def load_agent(service: RoutingService, agent_id: str) -> AgentView:
    profile = service.profile(agent_id)  # 404 unknown_agent when not configured
    try:
        stored = await service.agent_view(agent_id)
    except NotFound:
        stored = None  # configured but never logged in: offline
    return AgentView.build(profile, stored)


async def agent_login(call: Call) -> AgentView:
    body: AgentLoginRequest = call.body
    agent_id = call.param("agent_id")
    await call.service.agent_login(agent_id, ready=body.ready, reason=body.reason or "")
    return await load_agent(call.service, agent_id)


async def set_agent_state(call: Call) -> AgentView:
    body: AgentStateRequest = call.body
    agent_id = call.param("agent_id")
    await call.service.agent_state(agent_id, body.state, body.reason or "")
    return await load_agent(call.service, agent_id)


async def get_agent(call: Call) -> AgentView:
    return await load_agent(call.service, call.param("agent_id"))


async def agent_offers(call: Call) -> InteractionList:
    agent_id = call.param("agent_id")
    call.service.profile(agent_id)
    offers = await call.service.offers(agent_id)
    return InteractionList(interactions=[InteractionView.from_hash(ix) for ix in offers])


async def agent_interactions(call: Call) -> InteractionList:
    agent_id = call.param("agent_id")
    call.service.profile(agent_id)
    held = await call.service.agent_interactions(agent_id)
    return InteractionList(interactions=[InteractionView.from_hash(ix) for ix in held])


async def _held(call: Call) -> tuple[str, str]:
    """(agent id, interaction id) after checking that the agent holds the interaction."""
    agent_id, ix_id = call.param("agent_id"), call.param("ix_id")
    call.service.profile(agent_id)
    await call.service.interaction_for(agent_id, ix_id)
    return agent_id, ix_id


async def accept(call: Call) -> Accepted:
    agent_id, ix_id = await _held(call)
    return Accepted(wait_ms=await call.service.accept(agent_id, ix_id))


async def reject(call: Call) -> Rejected:
    agent_id, ix_id = await _held(call)
    await call.service.reject(agent_id, ix_id)
    return Rejected()


async def complete(call: Call) -> Completed:
    body: CompleteRequest = call.body  # an empty body is the defaults
    agent_id, ix_id = await _held(call)
    state = await call.service.complete(agent_id, ix_id, disposition=body.disposition,
                                        note=body.note)
    return Completed(state=state)  # type: ignore[arg-type]  # the script says wrapup|closed


async def wrapup_end(call: Call) -> Closed:
    body: WrapupEndRequest = call.body
    agent_id, ix_id = await _held(call)
    await call.service.wrapup_end(agent_id, ix_id, body.disposition, body.note)
    return Closed()


async def agent_transfer(call: Call) -> Transferred:
    body: TransferRequest = call.body
    agent_id, ix_id = await _held(call)
    position = await call.service.transfer(ix_id, body, by_agent=agent_id, by=call.user.username)
    return Transferred(position=position)


async def agent_message(call: Call) -> MessagePosted:
    body: MessageRequest = call.body
    agent_id, ix_id = await _held(call)
    return MessagePosted(index=await call.service.agent_message(agent_id, ix_id, body.text))
