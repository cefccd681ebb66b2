"""The voice adapter: turns Asterisk's calls into interactions and the router's decisions into
call control.

    resident dials 311 -> AGI(ivr) -> IVR flow -> Routed: enqueue, then hold the caller on the
        same AGI session (music, place and estimated wait, callback offer: holding.py)
    dispatcher OFFER -> Setvar ROUTE_ENDPOINT/ROUTE_RINGTIME + Redirect to cityline-connect
        DialEnd ANSWER -> CONNECT at Asterisk's time;  NOANSWER/BUSY/... -> RINGNOANSWER
        (the dialplan puts the caller back into the hold loop, at its place)
    Hangup of the caller  -> ABANDON (waiting, ringing)
    first to leave the bridge -> COMPLETECALLER or COMPLETEAGENT (talk time to that moment)
    callback offered      -> Originate the agent's phone into cityline-callback (then the
                             resident is dialled); OriginateResponse Success -> CONNECT
    after every (re)connection to AMI: reconcile with CoreShowChannels

Times come from the events' `Timestamp` header (manager.conf `timestampevents = yes`), so waits
and talk times are Asterisk's own to the millisecond. Every action on the router is idempotent
against repeated or late events: the router's scripts refuse a transition that already happened,
and those refusals are expected here, not errors.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from channels.voice.agi_env import AgiEnv
from channels.voice.calls import CallRegistry
from channels.voice.fastagi import Continuation, FastAgiServer
from channels.voice.holding import Holding
from channels.voice.ivr import CallbackRequested, Deflected, FlowOutcome, HungUp, Routed
from channels.voice.link import AmiLink, event_time_ms
from router.config import CitylineConfig
from router.errors import CitylineError
from router.hash_fields import meta_of
from router.ivr_flow import IvrFlow
from router.models import Channel, Event, EventType, IntakeRequest
from router.service import RoutingService

logger = logging.getLogger(__name__)

VOICE = Channel.voice
# Dial statuses after which the offered agent did not take the call.
RING_FAILED = frozenset({"NOANSWER", "BUSY", "CONGESTION", "CHANUNAVAIL"})



class VoiceAdapter:
    """One per cityline process. `start()`/`stop()`; `handle_event` is fed by the EventFeed."""

    name = "voice"
    channel = "voice"

    def __init__(
        self,
        service: RoutingService,
        cfg: CitylineConfig,
        ami: AmiLink,
        flows: Mapping[str, IvrFlow],
        holding: Holding,
        *,
        fastagi_port: int | None = None,
        wall_clock: Callable[[], float] = time.time,
        ivr_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.service = service
        self.cfg = cfg
        self.voice = cfg.channels.voice
        self.ami = ami
        self.calls = CallRegistry()
        self.holding = holding
        self.wall_clock = wall_clock
        self.agi = FastAgiServer(
            cfg,
            flows,
            self.on_outcome,
            host=self.voice.fastagi_host,
            port=self.voice.fastagi_port if fastagi_port is None else fastagi_port,
            default_flow=self.voice.flow,
            handlers={"hold": self.holding.resume},
            max_sessions=self.voice.fastagi_max_sessions,
            **({"clock": ivr_clock} if ivr_clock else {}),  # business hours in tests
        )
        self._ring_reported: set[str] = set()  # RINGNOANSWERs we caused: no redirect needed
        self._last_event_ms = 0  # Asterisk's time of the latest event: "last seen alive"
        ami.on_event(self.on_ami_event)
        ami.on_connected(self.reconcile)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.agi.start()
        try:
            await self.ami.start()
        except BaseException:
            await self.agi.stop()
            raise
        logger.info("voice: adapter started (FastAGI %s:%s, AMI %s:%s)", self.voice.fastagi_host,
                    self.agi.port, self.voice.ami_host, self.voice.ami_port)

    async def stop(self) -> None:
        # AMI first: no new call control while the IVR sessions wind down
        await self.ami.stop()
        await self.agi.stop(grace_s=2.0)

    # --- IVR outcomes -------------------------------------------------------------------

    async def on_outcome(self, env: AgiEnv, outcome: FlowOutcome) -> Continuation | None:
        meta = {"asterisk_channel": env.channel, "uniqueid": env.uniqueid,
                "ivr_path": "/".join(outcome.path)}
        resident = env.caller.e164 or env.caller.raw
        if isinstance(outcome, Routed):
            created = await self.service.create_interaction(IntakeRequest(
                channel=VOICE, queue=outcome.queue, topic=outcome.topic,
                language=outcome.language, priority=outcome.priority, resident=resident,
                resident_name=env.caller_name[:200], external_id=env.uniqueid,
                meta={**meta, "callback_offer": outcome.callback_offer,
                      "announce_every_s": outcome.announce_every_s or 0},
            ))
            self.calls.track(created.id, env.channel, env.uniqueid)
            logger.info("voice: call %s queued as %s in %s", env.uniqueid, created.ref,
                        outcome.queue)
            return self.holding.continuation(created.id, env)
        if isinstance(outcome, Deflected):
            done = await self.service.deflect(
                VOICE, topic=outcome.topic, language=outcome.language, resident=resident,
                reason="ivr-info", meta=meta)
            logger.info("voice: call %s answered by the IVR (%s) as %s", env.uniqueid,
                        outcome.topic, done.ref)
            return None
        if isinstance(outcome, CallbackRequested):
            created = await self.service.create_interaction(IntakeRequest(
                channel=VOICE, queue=outcome.queue, topic=outcome.topic,
                language=outcome.language, resident=outcome.number, external_id=env.uniqueid,
                meta=meta,
            ))
            await self.service.request_callback(created.id, outcome.number)
            logger.info("voice: callback to %s requested as %s", outcome.number, created.ref)
            return None
        if isinstance(outcome, HungUp):
            left = await self.service.deflect(
                VOICE, topic="", language=outcome.language, resident=resident,
                reason=outcome.at_node, meta=meta, abandoned=True)
            logger.info("voice: caller %s hung up in the IVR at %s (%s)", env.uniqueid,
                        outcome.at_node, left.ref)
            return None
        logger.info("voice: call %s left the IVR at %s (%s)", env.uniqueid,
                    getattr(outcome, "at_node", "?"), outcome.kind)
        return None

    # --- AMI events ---------------------------------------------------------------------

    async def on_ami_event(self, name: str, fields: Mapping[str, str]) -> None:
        at = event_time_ms(fields, self.wall_clock)
        self._last_event_ms = max(self._last_event_ms, at)
        try:
            if name == "Hangup":
                await self._hangup(fields, at)
            elif name == "BridgeLeave":
                await self._bridge_leave(fields, at)
            elif name == "DialBegin":
                self._dial_begin(fields)
            elif name == "DialEnd":
                await self._dial_end(fields, at)
            elif name == "OriginateResponse":
                await self._originate_response(fields, at)
        except CitylineError as exc:
            # a transition that already happened (a late or repeated event): expected
            logger.debug("voice: %s ignored: %s", name, exc.message)

    def _dial_begin(self, f: Mapping[str, str]) -> None:
        dest = f.get("DestChannel", "")
        call = self.calls.caller(f.get("Uniqueid", ""))
        if call is not None and dest:  # a waiting caller's Dial rings the agent
            self.calls.agent_leg(call.ix_id, dest)
            return
        callback = self.calls.for_agent_channel(f.get("Channel", ""))
        if callback is not None and dest:  # the agent's phone (a callback) dials the resident
            self.calls.set_caller(callback.ix_id, dest, f.get("DestUniqueid", ""))

    async def _ix_of_caller(self, uniqueid: str) -> str | None:
        call = self.calls.caller(uniqueid)
        if call is not None:
            return call.ix_id
        return await self.service.find_external(VOICE, uniqueid) if uniqueid else None

    async def _hangup(self, f: Mapping[str, str], at: int) -> None:
        ix_id = await self._ix_of_caller(f.get("Uniqueid", ""))
        if ix_id is not None:
            ix = await self.service.store.interaction(ix_id)
            state = ix.get("state")
            if ix.get("callback") == "1" and f.get("Uniqueid") == meta_of(ix).get("uniqueid"):
                return  # the original call of a callback request: hanging up was expected
            if state in ("queued", "offered"):
                left = await self.service.resident_left(ix_id, at_ms=at)
                logger.info("voice: caller of %s hung up after %d ms (%s)", ix.get("ref"),
                            left.wait_ms, "short" if left.short else state)
            elif state == "connected":
                await self.service.resident_ended(ix_id, at_ms=at)
            self.calls.forget(ix_id)
            return
        call = self.calls.for_agent_channel(f.get("Channel", ""))
        if call is not None:
            ix = await self.service.store.interaction(call.ix_id)
            if ix.get("state") == "connected":
                await self.service.complete(ix["agent"], call.ix_id, side="agent", at_ms=at)

    async def _bridge_leave(self, f: Mapping[str, str], at: int) -> None:
        """The end of the conversation, and who ended it: the first party to leave the bridge
        is the one who hung up (the other is put out after it; their Hangup events can come in
        either order, so they cannot tell)."""
        call = self.calls.caller(f.get("Uniqueid", ""))
        side = "caller"
        if call is None:
            call, side = self.calls.for_agent_channel(f.get("Channel", "")), "agent"
        if call is None:
            return
        ix = await self.service.store.interaction(call.ix_id)
        if ix.get("state") != "connected":
            return  # already ended, or moved on (a transfer took the caller out)
        if side == "caller":
            await self.service.resident_ended(call.ix_id, at_ms=at)
        else:
            await self.service.complete(ix["agent"], call.ix_id, side="agent", at_ms=at)

    async def _dial_end(self, f: Mapping[str, str], at: int) -> None:
        ix_id = await self._ix_of_caller(f.get("Uniqueid", ""))
        if ix_id is None:
            return
        status = f.get("DialStatus", "")
        ix = await self.service.store.interaction(ix_id)
        if ix.get("state") != "offered":
            return
        if status == "ANSWER":
            await self.service.accept(ix["agent"], ix_id, at_ms=at)
        elif status in RING_FAILED:
            self._ring_reported.add(ix_id)
            await self.service.ring_failed(ix_id, at_ms=at)

    async def _originate_response(self, f: Mapping[str, str], at: int) -> None:
        ix_id = self.calls.originates.pop(f.get("ActionID", ""), None)
        if ix_id is None:
            return
        ix = await self.service.store.interaction(ix_id)
        if ix.get("state") != "offered":
            return
        if f.get("Response") == "Success":
            # the agent answered; the resident's channel is learnt when the agent's phone dials
            self.calls.track(ix_id, "", f"callback:{ix_id}")
            self.calls.agent_leg(ix_id, f.get("Channel", ""))
            await self.service.accept(ix["agent"], ix_id, at_ms=at)
        else:
            self._ring_reported.add(ix_id)
            await self.service.ring_failed(ix_id, at_ms=at)

    # --- the router's decisions ---------------------------------------------------------

    async def handle_event(self, event: Event, ix: dict[str, str]) -> None:
        if event.type == EventType.OFFER:
            await self._ring(event, ix)
        elif event.type == EventType.RINGNOANSWER:
            if event.ix in self._ring_reported:
                self._ring_reported.discard(event.ix)  # Asterisk put the caller back itself
            elif (event.model_extra or {}).get("reason") == "timeout":
                await self._back_to_hold(ix)  # our deadline passed while the phone still rings
        elif event.type == EventType.TRANSFER:
            if (event.model_extra or {}).get("from_state") == "connected":
                await self._back_to_hold(ix)
                await self._hang_up_agent(event.ix)
        elif event.type == EventType.COMPLETEAGENT:
            call = self.calls.by_ix.get(event.ix)
            if call is not None:  # the agent ended it in the desktop: end the call too
                await self.ami.action({"Action": "Hangup", "Channel": call.channel,
                                       "Cause": "16"})

    async def _ring(self, event: Event, ix: dict[str, str]) -> None:
        agent = await self.service.agent_view(event.agent)
        endpoint = agent.get("endpoint", "")
        q = self.cfg.queues.get(event.queue)
        ringtime = str(math.ceil(q.offer_timeout_s if q else 20))
        if ix.get("callback") == "1":
            await self._originate_callback(event, ix, endpoint, ringtime)
            return
        channel = meta_of(ix).get("asterisk_channel", "")
        for var, value in (("ROUTE_ENDPOINT", endpoint), ("ROUTE_RINGTIME", ringtime)):
            await self.ami.action({"Action": "Setvar", "Channel": channel, "Variable": var,
                                   "Value": value})
        reply = await self.ami.action({"Action": "Redirect", "Channel": channel,
                                       "Context": self.voice.connect_context,
                                       "Exten": event.agent, "Priority": "1"})
        if reply.get("Response") != "Success":
            # the caller is gone (its Hangup will end the interaction) or cannot be moved
            logger.warning("voice: could not ring %s for %s: %s", event.agent, ix.get("ref"),
                           reply.get("Message"))

    async def _originate_callback(self, event: Event, ix: dict[str, str], endpoint: str,
                                  ringtime: str) -> None:
        action_id = f"cb-{event.ix}-{event.id}"
        self.calls.originates[action_id] = event.ix
        number = ix.get("callback_number") or ix.get("resident", "")
        reply = await self.ami.action({
            "Action": "Originate", "ActionID": action_id, "Channel": endpoint,
            "Context": self.voice.callback_context, "Exten": number or "s", "Priority": "1",
            "CallerID": f'"{self.cfg.city.name}" <{number}>',
            "Timeout": str(int(ringtime) * 1000), "Async": "true",
            "Variable": [f"CB_TICKET={ix.get('ref', '')}", f"CB_NUMBER={number}"],
        })
        if reply.get("Response") != "Success":
            self.calls.originates.pop(action_id, None)
            self._ring_reported.add(event.ix)
            await self.service.ring_failed(event.ix)

    async def _back_to_hold(self, ix: Mapping[str, str]) -> None:
        channel = meta_of(ix).get("asterisk_channel", "")
        if channel and ix.get("callback") != "1":
            await self.ami.action({"Action": "Redirect", "Channel": channel,
                                   "Context": "cityline-hold", "Exten": ix.get("queue") or "s",
                                   "Priority": "1"})

    async def _hang_up_agent(self, ix_id: str) -> None:
        call = self.calls.by_ix.get(ix_id)
        if call is not None and call.agent_channel:
            await self.ami.action({"Action": "Hangup", "Channel": call.agent_channel,
                                   "Cause": "16"})
            self.calls.by_agent_leg.pop(call.agent_channel, None)
            call.agent_channel = ""

    # --- after a (re)connection ---------------------------------------------------------

    async def reconcile(self) -> None:
        """Make the router's voice interactions agree with the calls Asterisk still has.

        Callers still waiting keep their place. A call that vanished while we could not hear
        Asterisk ends as an abandon (waiting or ringing) or a completed call (talking), at the
        best time we know: the last moment Asterisk was heard from before the outage.
        """
        listing = await self.ami.action({"Action": "CoreShowChannels"})
        live = {e.get("Uniqueid", "") for e in listing.get("events", [])}
        at = self._last_event_ms or int(self.wall_clock() * 1000)
        kept = ended = 0
        for ix in await self.service.active_interactions(VOICE):
            meta = meta_of(ix)
            uniqueid = meta.get("uniqueid", "")
            if ix.get("callback") == "1" and ix.get("state") == "queued":
                continue
            if uniqueid in live:
                self.calls.track(ix["id"], meta.get("asterisk_channel", ""), uniqueid)
                kept += 1
                continue
            try:
                if ix["state"] == "connected":
                    await self.service.resident_ended(ix["id"], at_ms=at)
                else:
                    await self.service.resident_left(ix["id"], at_ms=at)
                ended += 1
            except CitylineError as exc:
                logger.debug("voice: reconcile %s: %s", ix["id"], exc.message)
            self.calls.forget(ix["id"])
        logger.info("voice: reconciled with Asterisk: %d calls kept, %d ended meanwhile",
                    kept, ended)
