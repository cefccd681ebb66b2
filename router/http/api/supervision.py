"""What supervisors see and steer: every agent, the queues, live figures, moving a waiting contact.

Reads here go to Redis directly (pipelined, one round trip per kind of key) instead of through
the routing service, whose methods are about one interaction or one agent at a time; nothing
here changes state except `move_interaction`, which goes through the service like every change.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from router.errors import Conflict, NotFound
from router.http.api.schemas import (
    AgentList,
    AgentView,
    PriorityRequest,
    QueueList,
    QueueView,
    Reprioritised,
    ServiceLevelView,
    Transferred,
)
from router.http.api.table import Call
from router.models import InteractionState, TransferRequest
from router.service import RoutingService
from router.stats import LiveSnapshot, StatsAggregator

STATS_KEY = web.AppKey("cityline_api_stats", StatsAggregator)


async def list_agents(call: Call) -> AgentList:
    service = call.service
    ids = sorted(service.cfg.agents)
    async with service.store.redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hgetall(service.store.keys.agent(agent_id))
        rows = await pipe.execute()
    return AgentList(
        agents=[
            AgentView.build(service.profile(agent_id), row or None)
            for agent_id, row in zip(ids, rows, strict=True)
        ]
    )


async def set_priority(call: Call) -> Reprioritised:
    """A supervisor raises a waiting interaction's priority (it keeps its place in time)."""
    body: PriorityRequest = call.body
    position = await call.service.set_priority(call.param("ix_id"), body.priority,
                                               by=call.user.username)
    return Reprioritised(priority=body.priority, position=position)


async def move_interaction(call: Call) -> Transferred:
    """A supervisor moves a waiting interaction to another queue or to a named agent."""
    body: TransferRequest = call.body
    ix_id = call.param("ix_id")
    ix = await call.service.store.interaction(ix_id)
    if ix.get("state") != InteractionState.queued:
        # An interaction with an agent is that agent's to hand over (their transfer endpoint).
        raise Conflict(
            f"only a waiting interaction can be moved; this one is {ix.get('state')}",
            code="invalid_state",
        )
    position = await call.service.transfer(ix_id, body, by=call.user.username)
    return Transferred(position=position)


async def waiting(
    service: RoutingService, queues: Sequence[str]
) -> dict[str, tuple[int, int | None]]:
    """queue -> (number waiting, position time of the first in line or None).

    Costs one ZCARD and one ZRANGE per bucket the queue has used, never a scan of the waiting.
    """
    redis, keys = service.store.redis, service.store.keys
    async with redis.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.smembers(keys.queue_buckets(name))
        bucket_sets = await pipe.execute()
    owners: list[str] = []
    async with redis.pipeline(transaction=False) as pipe:
        for name, buckets in zip(queues, bucket_sets, strict=True):
            for bucket in sorted(buckets):
                owners.append(name)
                pipe.zcard(keys.bucket(bucket))
                pipe.zrange(keys.bucket(bucket), 0, 0, withscores=True)
        replies = await pipe.execute()
    out: dict[str, tuple[int, int | None]] = {name: (0, None) for name in queues}
    for i, name in enumerate(owners):
        count, head = int(replies[2 * i]), replies[2 * i + 1]
        total, oldest = out[name]
        if head:
            score = int(head[0][1])
            oldest = score if oldest is None else min(oldest, score)
        out[name] = (total + count, oldest)
    return out


def _queue_view(service: RoutingService, name: str, count: int, oldest: int | None) -> QueueView:
    q = service.cfg.queues[name]
    return QueueView(
        name=name,
        channel=q.channel,
        labels=dict(q.labels),
        skills=dict(q.skills),
        priority=q.priority,
        strategy=q.strategy,
        service_level=ServiceLevelView(
            target_pct=q.service_level.target_pct, threshold_s=q.service_level.threshold_s
        ),
        max_wait_s=q.max_wait_s,
        overflow=q.overflow,
        offer_timeout_s=q.offer_timeout_s,
        wrapup_s=q.wrapup_s,
        waiting=count,
        oldest_position_ms=oldest,
    )


async def list_queues(call: Call) -> QueueList:
    names = list(call.service.cfg.queues)
    counts = await waiting(call.service, names)
    return QueueList(queues=[_queue_view(call.service, n, *counts[n]) for n in names])


async def get_queue(call: Call) -> QueueView:
    name = call.param("name")
    if name not in call.service.cfg.queues:
        raise NotFound(f"unknown queue {name!r}", code="unknown_queue")
    counts = await waiting(call.service, [name])
    return _queue_view(call.service, name, *counts[name])


async def live_stats(call: Call) -> LiveSnapshot:
    return await call.request.app[STATS_KEY].live_snapshot()
