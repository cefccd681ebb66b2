"""The SMS adapter: gateway webhooks in, the agent's replies out through the gateway's HTTP API.

    POST /webhooks/sms/generic  JSON {id, from, to, text, parts?: {ref, index, total}},
                                signed: X-Cityline-Signature: sha256=<hex HMAC-SHA256 of body>
    POST /webhooks/sms/twilio   Twilio-style form (MessageSid, From, To, Body),
                                signed: X-Twilio-Signature
    agent MESSAGE (event feed)  -> segments POSTed to the gateway; failures retried with
                                   exponential backoff by the worker task; status per message
                                   in SmsRedisState.deliveries(ix_id)

Unsigned requests get 401, wrongly signed 403, bad bodies 400, a number over its rate 429; each
is logged and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from channels.sms.inbound import (
    GenericInbound,
    Inbound,
    InboundSms,
    Outcome,
    TwilioInbound,
    check_generic_signature,
    check_twilio_signature,
    normalise_number,
)
from channels.sms.outbound import (
    Gateway,
    GatewayError,
    OutboundJob,
    backoff_s,
    split_segments,
)
from channels.sms.state import SmsRedisState
from router.config_sms import SmsConfig
from router.http.app import json_error
from router.models import Event, EventType
from router.service import RoutingService

logger = logging.getLogger(__name__)

GENERIC_PATH = "/webhooks/sms/generic"
TWILIO_PATH = "/webhooks/sms/twilio"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SIGNATURE_CODES = {401: "unsigned", 403: "bad_signature"}


class SmsAdapter:
    """One per cityline process: `setup_routes(app)` before the app starts, then `start()`;
    `handle_event` is fed by the EventFeed of the `sms` channel; `stop()` at shutdown."""

    name = "sms"
    channel = "sms"

    def __init__(
        self,
        service: RoutingService,
        sms: SmsConfig,
        *,
        env: Mapping[str, str] | None = None,
        tick_s: float = 0.5,
    ) -> None:
        env = os.environ if env is None else env
        self.service = service
        self.cfg = sms
        self.region = service.cfg.city.country
        self.webhook_secret = env.get(sms.webhook_secret_env, "")
        self.twilio_token = env.get(sms.twilio_auth_token_env, "")
        self.gateway_token = env.get(sms.gateway_token_env, "")
        self.state = SmsRedisState(service.store.redis, service.store.keys)
        self.inbound = Inbound(service, sms, self.state)
        self.tick_s = tick_s
        self.gateway: Gateway | None = None
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._retries: list[tuple[float, int, OutboundJob]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.cfg.gateway_url:
            self._session = aiohttp.ClientSession()
            self.gateway = Gateway(self._session, self.cfg.gateway_url, self.gateway_token,
                                   self.cfg.sender, self.cfg.gateway_timeout_s)
        else:
            logger.warning("sms: no gateway_url configured: replies cannot be sent")
        if not self.webhook_secret:
            logger.warning("sms: %s is not set: the generic webhook refuses every request",
                           self.cfg.webhook_secret_env)
        if not self.twilio_token:
            logger.warning("sms: %s is not set: the Twilio webhook refuses every request",
                           self.cfg.twilio_auth_token_env)
        self._worker = asyncio.create_task(self._work(), name="sms-retry-worker")
        logger.info("sms: adapter started (queue %s)", self.cfg.queue)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._retries:
            logger.warning("sms: %d replies still waiting for a retry at shutdown",
                           len(self._retries))
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.gateway = None

    # --- webhooks -----------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(GENERIC_PATH, self.generic_webhook)
        app.router.add_post(TWILIO_PATH, self.twilio_webhook)

    def _refuse(self, request: web.Request, status: int, code: str, message: str,
                details: Any = None) -> web.Response:
        logger.warning("sms: %s %s from %s refused: %s %s (%s)", request.method, request.path,
                       request.remote, status, code, message)
        return json_error(status, code, message, details=details)

    async def generic_webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.webhook_secret:
            return self._refuse(request, 503, "not_configured", "the webhook has no secret")
        bad = check_generic_signature(self.webhook_secret, body,
                                      request.headers.get("X-Cityline-Signature"))
        if bad:
            return self._refuse(request, bad, SIGNATURE_CODES[bad],
                                "missing or wrong X-Cityline-Signature")
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError:
            return self._refuse(request, 400, "invalid_utf8", "the body is not valid UTF-8")
        except ValueError:
            return self._refuse(request, 400, "malformed_json", "the body is not valid JSON")
        try:
            msg = GenericInbound.model_validate(data)
        except ValidationError as exc:
            return self._refuse(request, 400, "invalid_body", "the body is not an SMS",
                                details=_errors(exc))
        number = normalise_number(msg.from_, self.region)
        if number is None:
            return self._refuse(request, 400, "invalid_number", "`from` is not a phone number")
        outcome = await self.inbound.receive(InboundSms(
            msg_id=msg.id, number=number, text=msg.text, to=msg.to, parts=msg.parts))
        if outcome.status == "rate_limited":
            return self._rate_limited(request, number)
        return web.json_response(_answer(outcome))

    async def twilio_webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.twilio_token:
            return self._refuse(request, 503, "not_configured", "the webhook has no auth token")
        header = request.headers.get("X-Twilio-Signature")
        if not header:
            return self._refuse(request, 401, "unsigned", "missing X-Twilio-Signature")
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                               strict_parsing=bool(body), errors="strict")
        except UnicodeDecodeError:
            return self._refuse(request, 400, "invalid_utf8", "the body is not valid UTF-8")
        except ValueError:
            return self._refuse(request, 400, "malformed_form", "the body is not a form")
        url = self._signed_url(request)
        bad = check_twilio_signature(self.twilio_token, url, params, header)
        if bad:
            return self._refuse(request, bad, SIGNATURE_CODES[bad], "wrong X-Twilio-Signature")
        try:
            msg = TwilioInbound.model_validate(dict(params))
        except ValidationError as exc:
            return self._refuse(request, 400, "invalid_body", "the form is not an SMS",
                                details=_errors(exc))
        number = normalise_number(msg.From, self.region)
        if number is None:
            return self._refuse(request, 400, "invalid_number", "`From` is not a phone number")
        outcome = await self.inbound.receive(InboundSms(
            msg_id=f"twilio:{msg.MessageSid}", number=number, text=msg.Body, to=msg.To))
        if outcome.status == "rate_limited":
            return self._rate_limited(request, number)
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    def _signed_url(self, request: web.Request) -> str:
        if self.cfg.public_url:
            return self.cfg.public_url.rstrip("/") + request.path_qs
        return str(request.url)

    def _rate_limited(self, request: web.Request, number: str) -> web.Response:
        return self._refuse(request, 429, "too_many_requests",
                            f"more than {self.cfg.rate_limit} messages a minute from {number}")

    # --- replies ------------------------------------------------------------------------

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        if event.type != EventType.MESSAGE or (event.model_extra or {}).get("from") != "agent":
            return
        ix_id = event.ix
        messages = await self.service.store.messages(ix_id)
        for index, m in enumerate(messages, start=1):
            if m.get("from") == "agent" and int(m.get("t") or 0) == event.time_ms:
                await self.reply(ix_id, index, interaction.get("resident", ""),
                                 str(m.get("text") or ""))

    async def reply(self, ix_id: str, msg_index: int, to: str, text: str) -> None:
        """Send agent message `msg_index` of `ix_id` once, however often its event comes."""
        segments, truncated = split_segments(text, self.cfg.max_segments)
        job = OutboundJob(ix_id, msg_index, to, segments, truncated)
        if not await self.state.claim_delivery(ix_id, msg_index, job.record("sending")):
            return
        if truncated:
            logger.warning("sms: reply %s cut to %d segments", job.reference, len(segments))
        await self._attempt(job)

    async def _attempt(self, job: OutboundJob) -> None:
        if not job.to:
            return await self._finish(job, "failed", "the interaction has no resident number")
        if await self.state.is_opted_out(job.to):
            logger.info("sms: reply %s not sent: %s opted out", job.reference, job.to)
            return await self._finish(job, "opted_out", "the resident opted out (STOP)")
        if self.gateway is None:
            return await self._finish(job, "failed", "no SMS gateway configured")
        job.attempts += 1
        try:
            await self.gateway.send(job)
        except GatewayError as exc:
            job.last_error = str(exc)
            if exc.permanent or job.attempts >= self.cfg.retry.attempts:
                logger.error("sms: reply %s to %s failed after %d tries: %s", job.reference,
                             job.to, job.attempts, exc)
                return await self._finish(job, "failed", str(exc))
            pause = backoff_s(job.attempts, self.cfg.retry.backoff_s, self.cfg.retry.backoff_max_s)
            logger.warning("sms: reply %s try %d failed (%s); again in %.2fs", job.reference,
                           job.attempts, exc, pause)
            record = job.record("retrying") | {"retry_in_s": pause}
            await self.state.set_delivery(job.ix_id, job.msg_index, record)
            due = asyncio.get_running_loop().time() + pause
            heapq.heappush(self._retries, (due, next(self._seq), job))
            self._wake.set()
            return None
        await self._finish(job, "delivered")
        return None

    async def _finish(self, job: OutboundJob, status: str, error: str = "") -> None:
        job.last_error = "" if status == "delivered" else (error or job.last_error)
        await self.state.set_delivery(job.ix_id, job.msg_index, job.record(status))

    async def delivery_status(self, ix_id: str) -> dict[int, dict[str, Any]]:
        """Per agent message (1-based index in the conversation): status, tries, error."""
        return await self.state.deliveries(ix_id)

    # --- the worker: retries and overdue multi-part messages ----------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            while self._retries and self._retries[0][0] <= loop.time():
                _due, _n, job = heapq.heappop(self._retries)
                try:
                    await self._attempt(job)
                except Exception:
                    logger.exception("sms: retry of %s failed", job.reference)
            try:
                await self.inbound.flush_overdue()
            except Exception:
                logger.exception("sms: assembling overdue multi-part messages failed")
            delay = self.tick_s
            if self._retries:
                delay = max(0.0, min(delay, self._retries[0][0] - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)


def _answer(outcome: Outcome) -> dict[str, str]:
    out = {"status": outcome.status}
    if outcome.ix_id:
        out["interaction"] = outcome.ix_id
    return out


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)]
