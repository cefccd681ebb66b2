"""The routing service: what channels and the HTTP API may ask of the router.

It turns requests into placements and timeouts from the config, calls the store, and translates
store refusals into boundary errors. Every method that acts for an agent takes the agent id the
caller was authenticated as; the scripts check that the interaction is really theirs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from queues import errors as store_errors
from queues.buckets import Placement
from queues.channel_state import ChannelStateStore
from queues.residents import HISTORY_CAP, Linked, ResidentStore, Withdrawn
from queues.store import Abandoned, Blending, Enqueued, RoutingStore
from router import placement as pl
from router.channel_state import ChannelState
from router.config import CitylineConfig
from router.errors import BadRequest, NotFound, Unprocessable, from_store
from router.identity import identities_of, identity_of
from router.models import AgentProfile, Channel, Event, EventType, IntakeRequest, TransferRequest

if TYPE_CHECKING:
    from router.cases import CaseService

logger = logging.getLogger(__name__)


class RoutingService:
    def __init__(self, store: RoutingStore, cfg: CitylineConfig) -> None:
        self.store = store
        self.cfg = cfg
        tz = ZoneInfo(cfg.city.timezone)
        store.tz_offset_ms = lambda: int(datetime.now(tz).utcoffset().total_seconds() * 1000)
        self._channel_store: ChannelStateStore | None = None
        self._residents: ResidentStore | None = None
        self._cases: CaseService | None = None

    @property
    def blending(self) -> Blending:
        b = self.cfg.routing.blending
        return Blending(b.voice_with_open_text, b.text_during_voice)

    async def _do(self, coro: Any) -> Any:
        try:
            return await coro
        except store_errors.StoreError as exc:
            raise from_store(exc) from None

    # --- intake -------------------------------------------------------------------------

    def default_queue(self, channel: Channel) -> str:
        for name, q in self.cfg.queues.items():
            if q.channel == channel:
                return name
        raise Unprocessable(f"no queue serves the {channel} channel", code="no_queue_for_channel")

    def _queue(self, name: str) -> Any:
        if name not in self.cfg.queues:
            raise NotFound(f"unknown queue {name!r}", code="unknown_queue")
        return self.cfg.queues[name]

    async def create_interaction(self, req: IntakeRequest) -> Enqueued:
        queue = req.queue or self.default_queue(req.channel)
        q = self._queue(queue)
        if q.channel != req.channel:
            raise Unprocessable(
                f"queue {queue!r} serves {q.channel}, not {req.channel}", code="channel_mismatch"
            )
        language = req.language or self.cfg.city.default_language
        if language not in self.cfg.city.languages:
            raise Unprocessable(f"language {language!r} is not served", code="unknown_language")
        if req.topic and req.topic not in self.cfg.skills:
            raise Unprocessable(f"unknown topic {req.topic!r}", code="unknown_topic")
        extra = pl.extra_skills(self.cfg, language, req.topic)
        target = pl.placement(self.cfg, queue, extra=extra, priority=req.priority)
        fields = {
            "language": language,
            "topic": req.topic or "",
            "resident": req.resident,
            "resident_name": req.resident_name,
            "subject": req.subject,
            "body": req.body,
            "meta": json.dumps(req.meta),
            "extra_skills": json.dumps(extra, sort_keys=True),
        }
        ext = f"{req.channel}:{req.external_id}" if req.external_id else ""
        done: Enqueued = await self._do(
            self.store.enqueue(
                target,
                fields,
                escalate_after_ms=pl.escalation_after_ms(self.cfg, queue, 0),
                max_wait_ms=pl.max_wait_ms(self.cfg, queue),
                external_key=ext,
            )
        )
        await self._recognise(done.id, req)
        return done

    async def deflect(self, channel: Channel, *, topic: str, language: str, resident: str,
                      reason: str, meta: dict[str, Any] | None = None,
                      abandoned: bool = False) -> Enqueued:
        """A contact that ended in self-service, never queued: answered by it alone (an IVR
        information leaf: DEFLECTED), or, with `abandoned`, left there (a caller who hung up
        in the IVR menus: IVRABANDON, `reason` = where). Either gets a reference number."""
        fields = {"channel": str(channel), "queue": "", "topic": topic, "language": language,
                  "resident": resident, "meta": json.dumps(meta or {})}
        return await self._do(self.store.deflect(fields, reason, abandoned=abandoned))

    async def find_external(self, channel: Channel, external_id: str) -> str | None:
        """The interaction a channel's own id created (see IntakeRequest.external_id)."""
        return await self.store.by_external(f"{channel}:{external_id}")

    async def active_interactions(self, channel: Channel) -> list[dict[str, str]]:
        return await self.store.active_for_channel(str(channel))

    async def request_callback(self, ix_id: str, number: str) -> bool:
        """The waiting resident will be called back at `number`, keeping their place."""
        return await self._do(self.store.request_callback(ix_id, number))

    async def resident_left(self, ix_id: str, at_ms: int | None = None) -> Abandoned:
        short_ms = int(self.cfg.routing.short_abandon_s * 1000)
        return await self._do(self.store.abandon(ix_id, short_abandon_ms=short_ms, at_ms=at_ms))

    async def attach_meta(self, ix_id: str, meta: dict[str, Any]) -> bool:
        """Facts learnt after the contact began (a shared location) for the agent to see;
        False once the interaction has ended."""
        return await self._do(self.store.attach_meta(ix_id, meta))

    def channel_state(self, channel: Channel | str) -> ChannelState:
        """What the adapter of `channel` remembers between contacts (claims, rate windows,
        conversation links, opt-outs, its outbox), shared by every process."""
        if self._channel_store is None:
            self._channel_store = ChannelStateStore(self.store.redis, self.store.keys)
        return ChannelState(self._channel_store, str(channel))

    async def deliveries(self, ix_id: str) -> dict[str, dict[str, Any]]:
        """What was sent to the resident of `ix_id` and how it went, by conversation message
        index (or "ack"): status, tries, last error."""
        return await self.channel_state("").deliveries(ix_id)

    # --- reading, for channels ------------------------------------------------------------

    async def interaction(self, ix_id: str) -> dict[str, str]:
        """The interaction's fields (router.models.Interaction); NotFound if there is none."""
        return await self._do(self.store.interaction(ix_id))

    async def interaction_by_ref(self, ref: str) -> dict[str, str]:
        return await self._do(self.store.by_ref(ref))

    async def messages(self, ix_id: str, start: int = 0) -> list[dict[str, Any]]:
        """The conversation, oldest first, from message `start` (0-based): {from, agent, text,
        t} each."""
        return await self.store.messages(ix_id, start)

    async def conversation_marks(self, ix_ids: list[str]) -> dict[str, tuple[str, str, int]]:
        """(state, agent, number of messages) of each, in one round trip (see the store)."""
        return await self.store.conversation_marks(ix_ids)

    async def announced_message(self, event: Event) -> tuple[int, dict[str, Any]] | None:
        """The message a MESSAGE event announced, with its 1-based index (the item a channel's
        outbox delivers it as); None for other events or a message no longer there."""
        extra = event.model_extra or {}
        if event.type != EventType.MESSAGE or not event.ix:
            return None
        index = int(extra.get("index") or 0)
        if index:
            found = await self.store.message_at(event.ix, index)
            return (index, found) if found is not None else None
        # an event written before MESSAGE carried its index: the message of that time
        for i, m in enumerate(await self.store.messages(event.ix), start=1):
            if m.get("from") == extra.get("from") and int(m.get("t") or 0) == event.time_ms:
                return i, m
        return None

    async def resident_message(self, ix_id: str, text: str) -> int:
        return await self._do(self.store.message(ix_id, sender="resident", text=text))

    # --- cases (router.cases) ----------------------------------------------------------------

    @property
    def cases(self) -> CaseService:
        """Cases made of intervention reports: units, status, duplicates, notices."""
        if self._cases is None:
            from router.cases import CaseService  # router.cases reads interactions through us

            self._cases = CaseService(self)
        return self._cases

    # --- residents recognised across channels ---------------------------------------------

    @property
    def residents(self) -> ResidentStore:
        """Residents who consented to be recognised: identities, consent, history."""
        if self._residents is None:
            self._residents = ResidentStore(self.store.redis, self.store.keys,
                                            self.store.scripts)
        return self._residents

    async def _recognise(self, ix_id: str, req: IntakeRequest) -> Linked | None:
        """Link the contact to its resident (see `queues.residents`).

        With consent, every identity it carries (where it came from and the contacts it gave)
        is linked to one resident and the interaction joins their history. Without consent only
        the identity it came from is looked up: it joins the history of a resident who
        consented earlier (consent holds until withdrawn), and otherwise nothing is written.
        The interaction already exists, so a failure here is logged, never raised: recognising
        a resident is a help for the agent, losing their contact would be worse.
        """
        region = self.cfg.city.country
        if req.consent:
            found = identities_of(req.channel, req.resident, req.contacts, region)
        else:
            primary = identity_of(req.channel, req.resident, region)
            found = [primary] if primary else []
        if not found:
            return None
        try:
            return await self.residents.link(ix_id, found, consent=req.consent,
                                             via=str(req.channel))
        except (store_errors.StoreError, RedisError) as exc:
            logger.warning("interaction %s: resident not recognised (%s)", ix_id, exc)
            return None

    async def resident_history(
        self, ix_id: str, limit: int = HISTORY_CAP
    ) -> tuple[str | None, list[dict[str, str]]]:
        """(resident id, their other interactions newest first) for `ix_id`; (None, []) when
        its resident is not recognised. Callers check who may read `ix_id` first."""
        rid = await self.residents.resident_of_interaction(ix_id)
        if rid is None:
            return None, []
        ids = [i for i, _ in await self.residents.history(rid, limit + 1) if i != ix_id][:limit]
        names = ["id", "ref", "channel", "queue", "topic", "state", "created_ms", "subject"]
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for other in ids:
                pipe.hmget(self.store.keys.ix(other), names)
            rows = await pipe.execute()
        out = []
        for row in rows:
            values = [v.decode() if isinstance(v, bytes) else v for v in row]
            if values[0] is not None:
                out.append({n: v or "" for n, v in zip(names, values, strict=True)})
        return rid, out

    async def withdraw_consent(
        self, resident_id: str | None = None, *, contact: str | None = None
    ) -> Withdrawn:
        """The resident no longer wants to be recognised: every identity and history record of
        theirs goes (the interactions stay). Give the resident id, or any contact of theirs (a
        phone number, an e-mail address, a canonical identity such as telegram:123)."""
        if (resident_id is None) == (contact is None):
            raise BadRequest("give a resident id or a contact", code="bad_request")
        try:
            if resident_id is not None:
                return await self.residents.withdraw(resident_id)
            identity = identity_of(None, contact or "", self.cfg.city.country)
            if identity is None:
                raise Unprocessable("not a phone number, e-mail address or Telegram chat",
                                    code="invalid_contact")
            return await self.residents.withdraw_identity(identity)
        except store_errors.NotFoundError:
            raise NotFound("no resident who consented is known by that",
                           code="unknown_resident") from None

    # --- agents -------------------------------------------------------------------------

    def profile(self, agent_id: str) -> AgentProfile:
        a = self.cfg.agents.get(agent_id)
        if a is None:
            raise NotFound(f"unknown agent {agent_id!r}", code="unknown_agent")
        return AgentProfile(id=agent_id, name=a.name, skills=dict(a.skills),
                            capacity=dict(a.capacity), line=a.line, endpoint=a.endpoint)

    async def sync_agent_profiles(self) -> None:
        """Write every configured agent's profile (skills, capacity) so changes apply now."""
        for agent_id in self.cfg.agents:
            await self._do(self.store.agent_profile(self.profile(agent_id), self.blending))

    async def agent_login(self, agent_id: str, *, ready: bool = False, reason: str = "") -> None:
        if reason and reason not in self.cfg.reason_codes:
            raise Unprocessable(f"unknown reason code {reason!r}", code="unknown_reason")
        await self._do(
            self.store.agent_login(self.profile(agent_id), self.blending, ready=ready,
                                   reason=reason)
        )

    async def agent_state(self, agent_id: str, state: str, reason: str = "") -> None:
        self.profile(agent_id)
        if state == "ready":
            await self._do(self.store.agent_ready(agent_id))
        elif state == "not_ready":
            if reason not in self.cfg.reason_codes:
                raise Unprocessable(f"unknown reason code {reason!r}", code="unknown_reason")
            await self._do(self.store.agent_not_ready(agent_id, reason))
        elif state == "offline":
            await self._do(self.store.agent_logout(agent_id))
        else:
            raise BadRequest(f"unknown state {state!r}", code="unknown_state")

    async def agent_view(self, agent_id: str) -> dict[str, Any]:
        return await self._do(self.store.agent(agent_id))

    async def agent_interactions(self, agent_id: str) -> list[dict[str, str]]:
        out = []
        for ix_id in sorted(await self.store.agent_work(agent_id)):
            try:
                out.append(await self.store.interaction(ix_id))
            except store_errors.NotFoundError:
                continue
        return out

    async def offers(self, agent_id: str) -> list[dict[str, str]]:
        return [ix for ix in await self.agent_interactions(agent_id) if ix["state"] == "offered"]

    async def interaction_for(self, agent_id: str, ix_id: str) -> dict[str, str]:
        """An interaction as its agent may see it: only while the agent holds it."""
        ix = await self._do(self.store.interaction(ix_id))
        if ix.get("agent") != agent_id:
            raise from_store(store_errors.ForbiddenError("interaction is with another agent"))
        return ix

    async def accept(self, agent_id: str, ix_id: str, *, at_ms: int | None = None) -> int:
        """The agent takes the offer; `at_ms` is the channel's own time of answer, if any."""
        return await self._do(self.store.accept(ix_id, agent_id, at_ms=at_ms))

    async def ring_failed(self, ix_id: str, *, at_ms: int | None = None) -> bool:
        """The channel reports the offered agent did not take it (no answer, busy, unreachable):
        a ring-no-answer now, counted as a miss. True if the agent was paused for it."""
        holder = await self._do(self.store.holder(ix_id))
        return await self._do(self.store.offer_timeout(
            ix_id, holder, max_misses=self.cfg.routing.max_misses,
            pause_reason=self.cfg.routing.miss_pause_reason, at_ms=at_ms))

    async def reject(self, agent_id: str, ix_id: str) -> None:
        await self._do(self.store.reject(
            ix_id, agent_id, exclude_agent=self.cfg.routing.reject_excludes_agent))

    async def complete(
        self, agent_id: str, ix_id: str, *, side: str = "agent", at_ms: int | None = None,
        disposition: str = "", note: str = "",
    ) -> str:
        """End the conversation; `at_ms` is the channel's own time of hang-up, if any. A
        disposition and note given here are final when the queue has no wrap-up time, and
        kept (unless replaced) through wrap-up otherwise."""
        ix = await self.interaction_for(agent_id, ix_id)
        q = self.cfg.queues.get(ix["queue"])
        wrapup_ms = int(q.wrapup_s * 1000) if q else 0
        return await self._do(self.store.complete(ix_id, agent_id, side=side,
                                                  wrapup_ms=wrapup_ms, at_ms=at_ms,
                                                  disposition=disposition, note=note))

    async def resident_ended(self, ix_id: str, *, at_ms: int | None = None) -> str:
        """The resident ended a connected conversation (hung up, closed the chat)."""
        holder = await self._do(self.store.holder(ix_id))
        return await self.complete(holder, ix_id, side="caller", at_ms=at_ms)

    async def wrapup_end(self, agent_id: str, ix_id: str, disposition: str = "",
                         note: str = "") -> None:
        await self._do(self.store.wrapup_end(ix_id, agent_id, by="agent",
                                             disposition=disposition, note=note))

    async def agent_message(self, agent_id: str, ix_id: str, text: str) -> int:
        return await self._do(
            self.store.message(ix_id, sender="agent", text=text, agent_id=agent_id))

    async def set_priority(self, ix_id: str, priority: int, *, by: str) -> int:
        """A supervisor raises (or lowers) a waiting interaction's priority: it keeps its place
        in time and its timers (PRIORITY event). Returns its position in its new bucket."""
        ix = await self._do(self.store.interaction(ix_id))
        if ix.get("state") != "queued" or not ix.get("bucket"):
            raise from_store(store_errors.StateError(f"interaction is {ix.get('state')}"))
        current = await self._do(self.store.placement_of(ix["bucket"]))
        target = dataclasses.replace(current, priority=priority)
        return await self._do(self.store.reprioritise(ix_id, from_bucket=ix["bucket"],
                                                      target=target, by=by))

    async def transfer(self, ix_id: str, req: TransferRequest, *, by_agent: str = "",
                       by: str = "") -> int:
        """Hand over (agent, from connected) or move (supervisor, from queued)."""
        if bool(req.queue) == bool(req.agent):
            raise Unprocessable("give exactly one of queue or agent", code="transfer_target")
        ix = await self._do(self.store.interaction(ix_id))
        if req.agent:
            if req.agent not in self.cfg.agents:
                raise NotFound(f"unknown agent {req.agent!r}", code="unknown_agent")
            if req.agent == by_agent:
                raise Unprocessable("cannot transfer to yourself", code="transfer_target")
            queue = ix["queue"]
        else:
            queue = req.queue or ""
            self._queue(queue)
            if self.cfg.queues[queue].channel != ix["channel"]:
                raise Unprocessable(f"queue {queue!r} does not serve {ix['channel']}",
                                    code="channel_mismatch")
        extra = json.loads(ix.get("extra_skills") or "{}")
        target = pl.placement(self.cfg, queue, extra=extra, priority=int(ix.get("priority") or 0),
                              target_agent=req.agent or "")
        if req.agent:
            # a named expert is chosen for who they are: only the language must still match
            language_only = pl.extra_skills(self.cfg, ix.get("language") or "", None)
            target = Placement(queue=queue, channel=target.channel, priority=target.priority,
                               skills=language_only, target_agent=req.agent,
                               queue_priority=target.queue_priority)
        return await self._do(self.store.transfer(
            ix_id, target, holder=by_agent, keep_position=req.keep_position,
            escalate_after_ms=0 if req.agent else pl.escalation_after_ms(self.cfg, queue, 0),
            max_wait_ms=0 if req.agent else pl.max_wait_ms(self.cfg, queue),
            note=req.note, by=by or by_agent))

    async def system_message(self, ix_id: str, text: str, **extra: Any) -> int:
        """A message of the city's own in the conversation (sender "system": a case number and
        its status link, router.case_notices), for the resident's channel to show like an
        agent's; `extra` is kept with it (the web chat reads `notice` and `link`). Not an
        agent's answer: the chat's reply timers ignore it. Refused once the interaction has
        ended; allowed in any state before, like a resident's message (queues/lua/message.lua)."""
        return await self._do(self.store.message(ix_id, sender="system", text=text,
                                                 extra=extra))
