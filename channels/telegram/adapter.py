"""The Telegram adapter: a python-telegram-bot `Application` embedded in our event loop.

    webhook mode   POST <webhook_path> from Telegram, X-Telegram-Bot-Api-Secret-Token checked
                   (missing or wrong: 403, logged, nothing stored); the update is processed
                   before we answer, so a failure answers 500 and Telegram delivers it again
    polling mode   a tracked task long-polls getUpdates through the library's Bot
    agent MESSAGE  (event feed) -> a job in the persistent outbox -> sendMessage to the
                   resident's chat, retried (429, 5xx, network) or failed for good (400, 403: the
                   bot blocked), each state in the interaction's delivery record
                   (`service.deliveries(ix_id)`); a redelivered event queues nothing twice

What the adapter remembers (open interactions, languages, updates handled or failed, what was
sent) is in the channel's memory (`service.channel_state("telegram")`), shared by every cityline
process and kept over a restart. Whichever process runs the outbox sends what was queued.

The library never owns the loop: the Application is built with `.updater(None)` and entered as
an async context manager (initialize/shutdown) around `start()`/`stop()`; `run_polling()` and
`run_webhook()` are never used because they install signal handlers and run the loop themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from telegram import Update
from telegram import error as tg_errors
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from channels.telegram.errors import TelegramStartError
from channels.telegram.inbound import LANGUAGE_PREFIX, TelegramInbound, chat_of
from router.config import CitylineConfig
from router.config_telegram import TelegramConfig
from router.http.app import json_error
from router.models import Channel, Event, EventType
from router.outbox import DeliveryError, OutboundJob, Outbox, RetryPolicy
from router.service import RoutingService

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Only what the handlers use: Telegram then does not even send the rest.
ALLOWED_UPDATES = ["message", "callback_query"]
# an update handled is not handled again when Telegram delivers it once more
HANDLED_TTL_S = 7 * 86_400.0
FAILED_TTL_S = 86_400.0


def _file_url(base_url: str) -> str:
    """The file download base next to `base_url` (…/bot -> …/file/bot), so a local Bot API
    server is used for files too."""
    head, sep, tail = base_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep else base_url


class TelegramAdapter:
    """`setup_routes(app)` before the HTTP app starts, then `start()`; `handle_event` is fed by
    the EventFeed of the `telegram` channel; `stop()` at shutdown."""

    name = "telegram"
    channel = "telegram"

    def __init__(
        self,
        service: RoutingService,
        cfg: CitylineConfig,
        tg_cfg: TelegramConfig,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.service = service
        self.cfg = cfg
        self.tg = tg_cfg
        self.token = env.get(tg_cfg.token_env, "")
        self.secret_token = env.get(tg_cfg.secret_token_env, "")
        self.state = service.channel_state(Channel.telegram)
        self.outbox = Outbox(self.state, self._deliver,
                             RetryPolicy(attempts=tg_cfg.send_attempts,
                                         backoff_s=tg_cfg.send_backoff_s))
        self.inbound = TelegramInbound(service, tg_cfg, self.outbox.submit)
        self.application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._poller: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------

    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        application = (
            Application.builder()
            .token(self.token)
            .base_url(self.tg.base_url)
            .base_file_url(_file_url(self.tg.base_url))
            .updater(None)
            .build()
        )
        application.add_handler(CommandHandler("start", self.inbound.on_start))
        application.add_handler(
            CallbackQueryHandler(self.inbound.on_language, pattern=f"^{LANGUAGE_PREFIX}"))
        only_new = filters.UpdateType.MESSAGE  # edits (and live-location moves) are ignored
        application.add_handler(
            MessageHandler(only_new & filters.LOCATION, self.inbound.on_location))
        application.add_handler(
            MessageHandler(only_new & filters.CONTACT, self.inbound.on_contact))
        application.add_handler(
            MessageHandler(only_new & filters.TEXT & ~filters.COMMAND, self.inbound.on_text))
        application.add_error_handler(self._on_error)
        return application

    async def start(self) -> None:
        if not self.token:
            raise TelegramStartError(f"{self.tg.token_env} is not set: no bot token")
        if self.tg.mode == "webhook" and not self.secret_token:
            logger.warning("telegram: %s is not set: the webhook refuses every request",
                           self.tg.secret_token_env)
        application = self._build()
        # Entered in order, left in reverse on a failed start or at stop(): stop the
        # Application's update fetcher before shutting it down (closing its HTTP clients).
        stack = contextlib.AsyncExitStack()
        try:
            await stack.enter_async_context(application)  # initialize (getMe) / shutdown
            await application.start()
            stack.push_async_callback(application.stop)
            await self.inbound.recover()
            bot = application.bot
            if self.tg.mode == "polling":
                # Telegram refuses getUpdates while a webhook is set
                await bot.delete_webhook()
            elif self.tg.public_url:
                url = self.tg.public_url.rstrip("/") + self.tg.webhook_path
                await bot.set_webhook(url, secret_token=self.secret_token or None,
                                      allowed_updates=ALLOWED_UPDATES)
                logger.info("telegram: webhook registered at %s", url)
        except tg_errors.InvalidToken:
            await self._abandon(application, stack)
            # the library's message quotes the token: not chained, never logged
            raise TelegramStartError("the Bot API rejected the bot token") from None
        except tg_errors.TelegramError as exc:
            await self._abandon(application, stack)
            text = str(exc).replace(self.token, "<token>")
            raise TelegramStartError(f"the Bot API refused to start the bot: {text}") from exc
        except BaseException:
            await self._abandon(application, stack)
            raise
        self.application, self._stack = application, stack
        await self.outbox.start()  # replies left from before are sent now
        if self.tg.mode == "polling":
            self._poller = asyncio.create_task(self._poll(), name="telegram-poller")
            self._poller.add_done_callback(self._poller_done)
        logger.info("telegram: adapter started as @%s (mode %s, queue %s)",
                    application.bot.username, self.tg.mode, self.tg.queue)

    @staticmethod
    async def _abandon(application: Application[Any, Any, Any, Any, Any, Any],
                       stack: contextlib.AsyncExitStack) -> None:
        await stack.aclose()
        # When initialize() fails (a rejected token), the Application's shutdown() is a no-op
        # because it never counted as initialized, yet the Bot had already opened its HTTP
        # clients: close them directly (harmless if already closed).
        await application.bot.shutdown()

    async def stop(self) -> None:
        # intake first (the poller), the outbox (unsent replies stay queued in Redis), then
        # the Application (fetcher, then HTTP clients)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.outbox.stop()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None
        self.application = None
        logger.info("telegram: adapter stopped")

    # --- updates in -----------------------------------------------------------------------

    async def _process(self, update: Update) -> bool:
        """Run the handlers on one update once; False if one of them raised (the error
        handler marks it failed)."""
        assert self.application is not None
        update_id = str(update.update_id)
        if await self.state.claimed("handled", update_id):
            logger.info("telegram: update %s handled before; ignored", update_id)
            return True
        await self.application.process_update(update)
        if await self.state.claimed("failed", update_id):
            await self.state.release("failed", update_id)  # a later delivery tries afresh
            return False
        await self.state.claim("handled", update_id, HANDLED_TTL_S)
        return True

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        update_id = update.update_id if isinstance(update, Update) else None
        logger.error("telegram: update %s failed", update_id, exc_info=context.error)
        if update_id is not None:
            await self.state.claim("failed", str(update_id), FAILED_TTL_S)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_post(self.tg.webhook_path, self.webhook)

    def _refuse(self, request: web.Request, status: int, code: str, message: str) -> web.Response:
        logger.warning("telegram: %s %s from %s refused: %s %s (%s)", request.method,
                       request.path, request.remote, status, code, message)
        return json_error(status, code, message)

    async def webhook(self, request: web.Request) -> web.Response:
        if self.application is None:
            return self._refuse(request, 503, "not_started", "the Telegram bot is not running")
        if not self.secret_token:
            return self._refuse(request, 503, "not_configured", "the webhook has no secret")
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret_token.encode()):
            what = "wrong" if given else "missing"
            return self._refuse(request, 403, "bad_secret_token", f"{what} {SECRET_HEADER}")
        try:
            data = json.loads(await request.read())
        except (UnicodeDecodeError, ValueError):
            return self._refuse(request, 400, "malformed_json", "the body is not valid JSON")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return self._refuse(request, 400, "invalid_body", "the body is not an Update")
        try:
            update = Update.de_json(data, self.application.bot)
        except (KeyError, TypeError, ValueError) as exc:
            return self._refuse(request, 400, "invalid_body", f"the body is not an Update: {exc}")
        if not await self._process(update):
            return json_error(500, "update_failed", "the update could not be handled")
        return web.Response(status=200)

    async def _poll(self) -> None:
        assert self.application is not None
        bot = self.application.bot
        offset: int | None = None
        while True:
            try:
                updates = await bot.get_updates(offset=offset, timeout=self.tg.poll_timeout_s,
                                                allowed_updates=ALLOWED_UPDATES)
            except tg_errors.TelegramError as exc:
                logger.warning("telegram: getUpdates failed (%s); again in %.1fs", exc,
                               self.tg.poll_retry_s)
                await asyncio.sleep(self.tg.poll_retry_s)
                continue
            for update in updates:
                if not await self._process(update):
                    # not fetched again: a handler that failed once would fail every time
                    logger.error("telegram: update %s skipped after its handler failed",
                                 update.update_id)
                offset = update.update_id + 1

    def _poller_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.critical("telegram: the poller died; no updates are received",
                            exc_info=task.exception())

    # --- replies ------------------------------------------------------------------------

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        """Queue the agent's message in the outbox (once, however often the event comes)."""
        if event.type != EventType.MESSAGE or (event.model_extra or {}).get("from") != "agent":
            return
        chat_id = chat_of(interaction.get("resident", ""))
        if chat_id is None:
            logger.error("telegram: ix=%s has no Telegram chat (resident %r); reply dropped",
                         event.ix, interaction.get("resident"))
            return
        found = await self.service.announced_message(event)
        if found is not None:
            index, m = found
            await self.outbox.submit(OutboundJob(ix_id=event.ix, item=str(index),
                                                 to=str(chat_id), text=str(m.get("text") or "")))

    def _clean(self, exc: Exception) -> str:
        text = str(exc) or type(exc).__name__
        return text.replace(self.token, "<token>") if self.token else text

    async def _deliver(self, job: OutboundJob) -> None:
        """The outbox's transport: sendMessage, its errors sorted into retry or give up."""
        if self.application is None:
            raise DeliveryError("the bot is not running")
        try:
            await self.application.bot.send_message(int(job.to), job.text)
        except tg_errors.Forbidden as exc:  # the resident blocked the bot
            raise DeliveryError(self._clean(exc), permanent=True, status="blocked") from None
        except (tg_errors.BadRequest, tg_errors.ChatMigrated) as exc:  # the chat is gone
            raise DeliveryError(self._clean(exc), permanent=True, status="rejected") from None
        except tg_errors.RetryAfter as exc:
            raise DeliveryError(f"flood control: retry after {exc.retry_after}") from None
        except tg_errors.TelegramError as exc:  # 5xx, network, timeouts: may work later
            raise DeliveryError(self._clean(exc)) from None
