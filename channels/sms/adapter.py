"""The SMS adapter: gateway webhooks in, the agent's replies out through the gateway's HTTP API.

    POST /webhooks/sms/generic  JSON {id, from, to, text, parts?: {ref, index, total}},
                                signed: X-Cityline-Signature: sha256=<hex HMAC-SHA256 of body>
    POST /webhooks/sms/twilio   Twilio-style form (MessageSid, From, To, Body),
                                signed: X-Twilio-Signature
    POST /webhooks/sms/status   delivery receipt, JSON {id, status, error?}: `id` the gateway's
                                message id (or the `reference` we sent), `status` delivered /
                                undelivered (failed, rejected, expired); signed as /generic
    POST /webhooks/sms/twilio/status  Twilio-style status callback (MessageSid, MessageStatus,
                                ErrorCode), signed: X-Twilio-Signature
    agent MESSAGE (event feed)  -> a job in the channel's persistent outbox (router.outbox),
                                   which posts the segments to the gateway and retries with
                                   backoff, surviving restarts; the status the agent sees is
                                   `service.deliveries(ix_id)`: queued, retrying, sent, failed,
                                   opted_out, then delivered / undelivered from the receipts

Other channels may hand the outbox a message too (`router.outbox.submit(
service.channel_state("sms"), job)`): the sender uses only `job.to` and `job.text`.

The generic webhooks' secret comes from the variable named by `webhook_secret_env`; without one,
from `<data_dir>/sms-webhook-secret`, generated on the first start (see webhook_secret.py).

Unsigned requests get 401, wrongly signed 403, bad bodies 400, a number over its rate 429; each
is logged and nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from channels.sms import webhook_secret
from channels.sms.inbound import (
    OPTED_OUT,
    GenericInbound,
    Inbound,
    InboundSms,
    Outcome,
    TwilioInbound,
    check_generic_signature,
    check_twilio_signature,
    normalise_number,
)
from channels.sms.outbound import Gateway, GatewayError, split_segments
from channels.sms.receipts import GenericStatus, Receipts, TwilioStatus
from router.config_sms import SmsConfig
from router.http.app import json_error
from router.models import Event, EventType
from router.outbox import DeliveryError, OutboundJob, Outbox, RetryPolicy
from router.service import RoutingService
from router.tasks import cancel_for_sure

logger = logging.getLogger(__name__)

GENERIC_PATH = "/webhooks/sms/generic"
TWILIO_PATH = "/webhooks/sms/twilio"
STATUS_PATH = "/webhooks/sms/status"
TWILIO_STATUS_PATH = "/webhooks/sms/twilio/status"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
SIGNATURE_CODES = {401: "unsigned", 403: "bad_signature"}
SENT_KEY = "sms_sent"  # job.payload: segments the gateway took so far (kept across retries)


class SmsAdapter:
    """One per cityline process: `setup_routes(app)` before the app starts, then `start()`;
    `handle_event` is fed by the EventFeed of the `sms` channel; `stop()` at shutdown."""

    name = "sms"
    channel = "sms"

    def __init__(
        self,
        service: RoutingService,
        sms: SmsConfig,
        data_dir: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        tick_s: float = 0.5,
    ) -> None:
        env = os.environ if env is None else env
        self.service = service
        self.cfg = sms
        self.region = service.cfg.city.country
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.webhook_secret = env.get(sms.webhook_secret_env, "")
        self.twilio_token = env.get(sms.twilio_auth_token_env, "")
        self.gateway_token = env.get(sms.gateway_token_env, "")
        self.state = service.channel_state(self.channel)
        self.inbound = Inbound(service, sms, self.state)
        self.receipts = Receipts(self.state, sms.receipt_window_s)
        self.tick_s = tick_s
        retry = RetryPolicy(attempts=sms.retry.attempts, backoff_s=sms.retry.backoff_s,
                            backoff_max_s=sms.retry.backoff_max_s)
        # a job is leased to one process while it sends: long enough for every segment to
        # time out once, so no other process takes it meanwhile
        lease_s = max(120.0, sms.gateway_timeout_s * sms.max_segments + 30.0)
        self.outbox = Outbox(self.state, self._send, retry, lease_s=lease_s, tick_s=tick_s)
        self.gateway: Gateway | None = None
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if not self.webhook_secret:
            await self._secret_from_file()
        if not self.twilio_token:
            logger.warning("sms: %s is not set: the Twilio webhooks refuse every request",
                           self.cfg.twilio_auth_token_env)
        try:
            if self.cfg.gateway_url:
                self._session = aiohttp.ClientSession()
                self.gateway = Gateway(self._session, self.cfg.gateway_url, self.gateway_token,
                                       self.cfg.sender, self.cfg.gateway_timeout_s)
            else:
                logger.warning("sms: no gateway_url configured: replies cannot be sent")
            await self.outbox.start()
            self._worker = asyncio.create_task(self._work(), name="sms-parts-worker")
        except BaseException:
            await self.stop()
            raise
        logger.info("sms: adapter started (queue %s)", self.cfg.queue)

    async def _secret_from_file(self) -> None:
        if self.data_dir is None:
            logger.warning("sms: %s is not set: the generic webhooks refuse every request",
                           self.cfg.webhook_secret_env)
            return
        try:
            secret, path = await asyncio.to_thread(webhook_secret.load_or_create, self.data_dir)
        except OSError as exc:
            logger.error("sms: %s is not set and no secret could be kept in %s (%s): the "
                         "generic webhooks refuse every request", self.cfg.webhook_secret_env,
                         self.data_dir, exc)
            return
        self.webhook_secret = secret
        logger.info("sms: %s is not set: the generic webhooks are signed with the secret in %s",
                    self.cfg.webhook_secret_env, path)

    async def stop(self) -> None:
        await self.outbox.stop()  # what is not sent stays in the outbox for the next start
        if self._worker is not None:
            await cancel_for_sure(self._worker)
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.gateway = None

    # --- webhooks -----------------------------------------------------------------------

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(GENERIC_PATH, self.generic_webhook)
        app.router.add_post(TWILIO_PATH, self.twilio_webhook)
        app.router.add_post(STATUS_PATH, self.status_webhook)
        app.router.add_post(TWILIO_STATUS_PATH, self.twilio_status_webhook)

    def _refuse(self, request: web.Request, status: int, code: str, message: str,
                details: Any = None) -> web.Response:
        logger.warning("sms: %s %s from %s refused: %s %s (%s)", request.method, request.path,
                       request.remote, status, code, message)
        return json_error(status, code, message, details=details)

    async def _signed_json(self, request: web.Request, model: type[BaseModel], what: str
                           ) -> BaseModel | web.Response:
        """The body of a generic webhook, signature checked and validated; or the refusal."""
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
            return model.model_validate(data)
        except ValidationError as exc:
            return self._refuse(request, 400, "invalid_body", f"the body is not {what}",
                                details=_errors(exc))

    async def _signed_form(self, request: web.Request, model: type[BaseModel], what: str
                           ) -> BaseModel | web.Response:
        """The form of a Twilio-style webhook, signature checked and validated; or the
        refusal."""
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
            return model.model_validate(dict(params))
        except ValidationError as exc:
            return self._refuse(request, 400, "invalid_body", f"the form is not {what}",
                                details=_errors(exc))

    async def generic_webhook(self, request: web.Request) -> web.Response:
        msg = await self._signed_json(request, GenericInbound, "an SMS")
        if isinstance(msg, web.Response):
            return msg
        assert isinstance(msg, GenericInbound)
        number = normalise_number(msg.from_, self.region)
        if number is None:
            return self._refuse(request, 400, "invalid_number", "`from` is not a phone number")
        outcome = await self.inbound.receive(InboundSms(
            msg_id=msg.id, number=number, text=msg.text, to=msg.to, parts=msg.parts))
        if outcome.status == "rate_limited":
            return self._rate_limited(request, number)
        return web.json_response(_answer(outcome))

    async def twilio_webhook(self, request: web.Request) -> web.Response:
        msg = await self._signed_form(request, TwilioInbound, "an SMS")
        if isinstance(msg, web.Response):
            return msg
        assert isinstance(msg, TwilioInbound)
        number = normalise_number(msg.From, self.region)
        if number is None:
            return self._refuse(request, 400, "invalid_number", "`From` is not a phone number")
        outcome = await self.inbound.receive(InboundSms(
            msg_id=f"twilio:{msg.MessageSid}", number=number, text=msg.Body, to=msg.To))
        if outcome.status == "rate_limited":
            return self._rate_limited(request, number)
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    async def status_webhook(self, request: web.Request) -> web.Response:
        receipt = await self._signed_json(request, GenericStatus, "a delivery status")
        if isinstance(receipt, web.Response):
            return receipt
        assert isinstance(receipt, GenericStatus)
        done = await self.receipts.receive(receipt.id, receipt.status, receipt.error)
        return web.json_response({"status": done})

    async def twilio_status_webhook(self, request: web.Request) -> web.Response:
        receipt = await self._signed_form(request, TwilioStatus, "a status callback")
        if isinstance(receipt, web.Response):
            return receipt
        assert isinstance(receipt, TwilioStatus)
        error = f"error code {receipt.ErrorCode}" if receipt.ErrorCode else ""
        await self.receipts.receive(receipt.MessageSid, receipt.MessageStatus, error)
        return web.Response(status=204)

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
        found = await self.service.announced_message(event)
        if found is not None:
            index, m = found
            await self.reply(event.ix, index, interaction.get("resident", ""),
                             str(m.get("text") or ""))

    async def reply(self, ix_id: str, msg_index: int, to: str, text: str) -> bool:
        """Queue agent message `msg_index` of `ix_id` for the resident once, however often its
        event comes (False if it was queued before)."""
        job = OutboundJob(ix_id=ix_id, item=str(msg_index), to=to, text=text)
        return await self.outbox.submit(job)

    async def _send(self, job: OutboundJob) -> None:
        """The outbox's transport: post the segments of `job.text` the gateway has not taken
        yet. Raises DeliveryError (permanent when trying again cannot help)."""
        number = normalise_number(job.to, self.region) if job.to else None
        if number is None:
            raise DeliveryError(f"no phone number to send to ({job.to!r})", permanent=True)
        if await self.state.has_flag(OPTED_OUT, number):
            logger.info("sms: %s not sent: %s opted out", job.id, number)
            raise DeliveryError("the resident opted out (STOP)", permanent=True,
                                status="opted_out")
        if self.gateway is None:
            raise DeliveryError("no SMS gateway configured", permanent=True)
        if not job.text.strip():
            raise DeliveryError("the message is empty", permanent=True)
        segments, truncated = split_segments(job.text, self.cfg.max_segments)
        done = int(job.payload.get(SENT_KEY) or 0)
        if truncated and done == 0:
            logger.warning("sms: %s cut to %d segments", job.id, len(segments))
        total = len(segments)
        while done < total:
            reference = f"{job.id}:{done + 1}"
            parts = (job.id, done + 1, total) if total > 1 else None
            try:
                gw_id = await self.gateway.send_segment(number, segments[done], reference, parts)
            except GatewayError as exc:
                raise DeliveryError(str(exc), permanent=exc.permanent) from exc
            done += 1
            job.payload[SENT_KEY] = done  # kept with the job: a retry sends only the rest
            await self.receipts.sent(job.ix_id, job.item, done, total, [gw_id, reference],
                                     job.attempts)

    # --- the worker: overdue multi-part messages ----------------------------------------

    async def _work(self) -> None:
        while True:
            try:
                await self.inbound.flush_overdue()
            except Exception:
                logger.exception("sms: assembling overdue multi-part messages failed")
            await asyncio.sleep(self.tick_s)


def _answer(outcome: Outcome) -> dict[str, str]:
    out = {"status": outcome.status}
    if outcome.ix_id:
        out["interaction"] = outcome.ix_id
    return out


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
            for e in exc.errors(include_input=False, include_url=False)]
