"""The hold loop: a routed caller waits on its FastAGI session, under cityline's control.

Music on hold plays; every `announce_every_s` the caller hears their place in line and the
estimated wait (router.waiting records it as announced, to be measured against the real wait),
and, where the route offers it, "press 1 to be called back - you keep your place". The loop
ends when the interaction stops waiting: the dispatcher offered it and the adapter's Redirect
takes the channel away from this session (the session then closes; the caller is not gone), or
the caller pressed 1 (the resident will be called back, the channel is hung up).

The same loop resumes after an agent did not answer (the dialplan runs AGI(hold)) or a blind
transfer to a queue (Redirect to cityline-hold): `resume` finds the interaction by the call's
uniqueid. A caller's hang-up is never decided here: only Asterisk's Hangup event (with its exact
time) ends an interaction, so a session that closes because of a Redirect is harmless.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable

from channels.voice.agi import AgiSession
from channels.voice.agi_env import AgiEnv
from router.models import Channel
from router.service import RoutingService
from router.waiting import WaitEstimate, WaitEstimator

logger = logging.getLogger(__name__)


def sound(language: str, name: str) -> str:
    """Prompt files, one folder per language (asterisk_conf/README.md lists them)."""
    return f"cityline/{language}/{name}"


class Holding:
    def __init__(
        self, service: RoutingService, estimator: WaitEstimator, default_every_s: float
    ) -> None:
        self.service = service
        self.estimator = estimator
        self.default_every_s = default_every_s

    def continuation(self, ix_id: str, env: AgiEnv) -> Callable[[AgiSession], Awaitable[None]]:
        async def hold(session: AgiSession) -> None:
            await self.hold(session, ix_id, env)

        return hold

    async def resume(self, session: AgiSession, env: AgiEnv) -> None:
        """The `hold` AGI script: back on hold after a missed ring or a transfer."""
        ix_id = await self.service.find_external(Channel.voice, env.uniqueid)
        if ix_id is None:
            logger.warning("voice: hold requested for unknown call %s", env.uniqueid)
            await session.hangup()
            return
        await self.hold(session, ix_id, env)

    async def hold(self, session: AgiSession, ix_id: str, env: AgiEnv) -> None:
        ix = await self.service.store.interaction(ix_id)
        meta = json.loads(ix.get("meta") or "{}")
        language = ix.get("language") or "pl"
        every_s = float(meta.get("announce_every_s") or 0) or self.default_every_s
        offer_callback = bool(meta.get("callback_offer")) and bool(env.caller.e164)
        await session.set_music(True)
        pressed: str | None = None
        while True:
            if (await self.service.store.interaction(ix_id)).get("state") != "queued":
                return  # offered: the Redirect to the agent is on its way
            digit = pressed or await session.wait_for_digit(int(every_s * 1000))
            pressed = None
            if digit == "1" and offer_callback:
                if await self.service.request_callback(ix_id, env.caller.e164 or ""):
                    await session.set_music(False)
                    await session.stream_file(sound(language, "callback-confirmed"))
                    await session.hangup()
                    logger.info("voice: %s will be called back at %s", ix.get("ref"),
                                env.caller.e164)
                return
            if digit is not None:
                continue  # any other key: keep holding
            estimate = await self.estimator.estimate(ix_id, ix["queue"])
            if estimate is None:
                return
            pressed = await self._announce(session, language, estimate, offer_callback)

    async def _announce(
        self, session: AgiSession, language: str, estimate: WaitEstimate, offer_callback: bool
    ) -> str | None:
        """Place, estimated wait and the callback offer; the key pressed during the offer."""
        await session.set_music(False)
        await session.stream_file(sound(language, "your-position"))
        await session.say_number(estimate.position)
        if estimate.wait_s > 0:
            await session.stream_file(sound(language, "estimated-wait"))
            await session.say_number(max(1, math.ceil(estimate.wait_s / 60)))
            await session.stream_file(sound(language, "minutes"))
        pressed = None
        if offer_callback:
            pressed = await session.stream_file(sound(language, "press-1-callback"), "1")
        await session.set_music(True)
        return pressed
