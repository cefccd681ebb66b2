"""Agents and queues managed at run time (/api/v1/admin/agents, /api/v1/admin/queues).

Supervisors and admins read; only admins change. Every change goes through
`router.directory.Directory`, which validates it against the whole configuration (422
`validation_error` with `details`, each `loc` relative to the agent or queue when it is about
it), writes it and applies it in this process before the answer; other processes apply it
within a second. A removal (or a reset that removes) refused because something still needs the
entry is 409 `in_use`, with `details` when it is the configuration (another queue, a channel,
an IVR flow's step) that names it.

`POST .../reset` drops the admins' change of one agent or queue: the file's definition applies
again (validated like setting it), or, for an entry only admins added, it is removed; 409
`not_changed` when there is nothing to reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from router.config import AgentConfig
from router.directory import Directory, DirectoryInvalid, InUse, directory_of, parse_queue
from router.errors import NotFound
from router.http.api.schemas_admin import (
    AdminAgent,
    AdminAgentList,
    AdminQueue,
    AdminQueueList,
    QueueBody,
    Removed,
    ResetDone,
)
from router.http.api.supervision import waiting
from router.http.api.table import Call
from router.http.api.validation import ApiError


async def _directory(call: Call) -> Directory:
    directory = directory_of(call.service)
    await directory.refresh()  # one GET: answers show what every process is about to apply
    return directory


@contextmanager
def _refusals() -> Iterator[None]:
    """A directory's refusal as the API answers it: 422 with the configuration's problems, 409
    for an entry in use (with the places that name it, when the configuration does)."""
    try:
        yield
    except DirectoryInvalid as exc:
        raise ApiError(422, exc.code, exc.message, details=exc.details()) from None
    except InUse as exc:
        if not exc.problems:
            raise
        raise ApiError(409, exc.code, exc.message, details=exc.details()) from None


async def _agent_views(call: Call, directory: Directory, ids: list[str]) -> list[AdminAgent]:
    store = call.service.store
    async with store.redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hget(store.keys.agent(agent_id), "state")
        states = await pipe.execute()
    agents = directory.cfg.agents
    return [
        AdminAgent(id=agent_id, origin=directory.origin("agent", agent_id),
                   state=state or "offline", config=agents[agent_id])
        for agent_id, state in zip(ids, states, strict=True)
    ]  # fmt: skip


async def admin_list_agents(call: Call) -> AdminAgentList:
    directory = await _directory(call)
    views = await _agent_views(call, directory, list(directory.cfg.agents))
    return AdminAgentList(version=directory.version, agents=views,
                          removed=directory.removed("agent"))  # fmt: skip


async def admin_get_agent(call: Call) -> AdminAgent:
    directory = await _directory(call)
    agent_id = call.param("agent_id")
    if agent_id not in directory.cfg.agents:
        raise NotFound(f"unknown agent {agent_id!r}", code="unknown_agent")
    return (await _agent_views(call, directory, [agent_id]))[0]


async def admin_put_agent(call: Call) -> AdminAgent:
    directory = await _directory(call)
    agent_id = call.param("agent_id")
    body: AgentConfig = call.body
    with _refusals():
        await directory.set_agent(agent_id, body, by=call.user.username)
    return (await _agent_views(call, directory, [agent_id]))[0]


async def admin_delete_agent(call: Call) -> Removed:
    directory = await _directory(call)
    agent_id = call.param("agent_id")
    with _refusals():
        version = await directory.remove_agent(agent_id, by=call.user.username)
    return Removed(removed=agent_id, version=version)


async def admin_reset_agent(call: Call) -> ResetDone:
    directory = await _directory(call)
    agent_id = call.param("agent_id")
    with _refusals():
        done = await directory.reset_agent(agent_id, by=call.user.username)
    return ResetDone(reset=agent_id, result=done.result, version=done.version)


async def _queue_views(call: Call, directory: Directory, names: list[str]) -> list[AdminQueue]:
    counts = await waiting(call.service, names)
    queues = directory.cfg.queues
    return [
        AdminQueue(name=name, origin=directory.origin("queue", name), waiting=counts[name][0],
                   config=queues[name])
        for name in names
    ]  # fmt: skip


async def admin_list_queues(call: Call) -> AdminQueueList:
    directory = await _directory(call)
    views = await _queue_views(call, directory, list(directory.cfg.queues))
    return AdminQueueList(version=directory.version, queues=views,
                          removed=directory.removed("queue"))  # fmt: skip


async def admin_get_queue(call: Call) -> AdminQueue:
    directory = await _directory(call)
    name = call.param("name")
    if name not in directory.cfg.queues:
        raise NotFound(f"unknown queue {name!r}", code="unknown_queue")
    return (await _queue_views(call, directory, [name]))[0]


async def admin_put_queue(call: Call) -> AdminQueue:
    directory = await _directory(call)
    name = call.param("name")
    body: QueueBody = call.body
    with _refusals():
        queue = parse_queue(body.model_dump(mode="json", exclude_unset=True))
        await directory.set_queue(name, queue, by=call.user.username)
    return (await _queue_views(call, directory, [name]))[0]


async def admin_delete_queue(call: Call) -> Removed:
    directory = await _directory(call)
    name = call.param("name")
    with _refusals():
        version = await directory.remove_queue(name, by=call.user.username)
    return Removed(removed=name, version=version)


async def admin_reset_queue(call: Call) -> ResetDone:
    directory = await _directory(call)
    name = call.param("name")
    with _refusals():
        done = await directory.reset_queue(name, by=call.user.username)
    return ResetDone(reset=name, result=done.result, version=done.version)
