"""Inbound Telegram: what `/start`, a language choice, a text and a shared location do.

The callbacks are python-telegram-bot handler callbacks; they run inside `Application.
process_update`, so an exception here reaches the adapter's error handler (the webhook then
answers 500 and Telegram delivers the update again; intake is idempotent by external id).

Threading: a chat has at most one open interaction (queued, offered or connected); a message
while it is open is a resident message of it, otherwise it opens a new one whose external id is
`<chat_id>:<message_id>`. Messages of one chat are handled one at a time (a lock per chat), so two
quick first messages cannot open two interactions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import ContextTypes

from queues import errors as store_errors
from router.config_telegram import TelegramConfig
from router.models import Channel, IntakeRequest
from router.service import RoutingService

logger = logging.getLogger(__name__)

TELEGRAM = Channel.telegram
OPEN_STATES = frozenset({"queued", "offered", "connected"})
LANGUAGE_PREFIX = "lang:"
LANGUAGE_KEY = "language"  # in python-telegram-bot's chat_data

LANGUAGE_LABELS = {"pl": "Polski", "en": "English", "uk": "Українська"}
CHOOSE_LANGUAGE = "Wybierz język · Choose your language · Оберіть мову"
LANGUAGE_SET = {
    "pl": "Język: polski. Napisz, w czym możemy pomóc.",
    "en": "Language: English. Tell us how we can help.",
    "uk": "Мова: українська. Напишіть, чим ми можемо допомогти.",
}
RECEIVED = {
    "pl": "Dziękujemy. Numer sprawy: {ref}. Konsultant wkrótce odpowie.",
    "en": "Thank you. Your reference number is {ref}. An agent will answer soon.",
    "uk": "Дякуємо. Номер звернення: {ref}. Консультант скоро відповість.",
}
SUBJECT_CHARS = 80


def resident_of(chat_id: int) -> str:
    return f"tg:{chat_id}"


def chat_of(resident: str) -> int | None:
    """The chat id of a `tg:<chat_id>` resident, None for anything else."""
    prefix, _, rest = resident.partition(":")
    if prefix != "tg" or not rest.lstrip("-").isdigit():
        return None
    return int(rest)


def location_text(lat: float, lon: float) -> str:
    return f"Shared location: {lat:.6f}, {lon:.6f}"


class TelegramInbound:
    """The handler callbacks, with the chat -> open interaction directory they share."""

    def __init__(self, service: RoutingService, tg: TelegramConfig) -> None:
        self.service = service
        self.tg = tg
        self.languages = [lang for lang in service.cfg.city.languages if lang in LANGUAGE_LABELS]
        # chat id -> id of its open interaction; a cache, each entry checked before use, filled
        # from the store at start (`recover`) so a restart keeps conversations together
        self._open: dict[int, str] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def recover(self) -> int:
        """Fill the directory from the store's open Telegram interactions."""
        for ix in await self.service.active_interactions(TELEGRAM):
            chat_id = chat_of(ix.get("resident", ""))
            if chat_id is not None and ix.get("id"):
                self._open[chat_id] = ix["id"]
        return len(self._open)

    @asynccontextmanager
    async def _chat(self, chat_id: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            # dropped when nobody waits, so the dict holds only chats being handled
            if not lock.locked() and self._locks.get(chat_id) is lock:
                del self._locks[chat_id]

    async def open_interaction(self, chat_id: int) -> str | None:
        ix_id = self._open.get(chat_id)
        if ix_id is None:
            return None
        try:
            ix = await self.service.store.interaction(ix_id)
        except store_errors.NotFoundError:
            ix = {}
        if ix.get("state") in OPEN_STATES:
            return ix_id
        del self._open[chat_id]
        return None

    def language(self, update: Update, chat_data: dict[Any, Any] | None) -> str:
        chosen = (chat_data or {}).get(LANGUAGE_KEY)
        if chosen in self.service.cfg.city.languages:
            return str(chosen)
        user = update.effective_user
        code = (user.language_code or "")[:2] if user else ""
        return code if code in self.service.cfg.city.languages else \
            self.service.cfg.city.default_language

    # --- handler callbacks ----------------------------------------------------------------

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not self.languages:
            return
        keyboard = InlineKeyboardMarkup([[
            InlineKeyboardButton(LANGUAGE_LABELS[lang], callback_data=LANGUAGE_PREFIX + lang)
            for lang in self.languages
        ]])
        await message.reply_text(CHOOSE_LANGUAGE, reply_markup=keyboard)

    async def on_language(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        lang = (query.data or "").removeprefix(LANGUAGE_PREFIX)
        if lang not in self.languages:
            await query.answer()
            return
        if context.chat_data is not None:
            context.chat_data[LANGUAGE_KEY] = lang
        await query.answer()
        await query.edit_message_text(LANGUAGE_SET[lang])
        logger.debug("telegram: chat=%s language=%s", update.effective_chat and
                     update.effective_chat.id, lang)

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or not message.text:
            return
        await self._receive(update, context, message, message.text, {})

    async def on_location(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.location is None:
            return
        lat, lon = message.location.latitude, message.location.longitude
        await self._receive(update, context, message, location_text(lat, lon),
                            {"lat": lat, "lon": lon})

    async def _receive(self, update: Update, context: ContextTypes.DEFAULT_TYPE,
                       message: Message, text: str, meta: dict[str, float]) -> None:
        chat_id = message.chat_id
        async with self._chat(chat_id):
            ix_id = await self.open_interaction(chat_id)
            if ix_id is not None:
                await self.service.resident_message(ix_id, text)
                if meta:  # a location shared in an open chat: on the interaction too
                    await self.service.attach_meta(ix_id, meta)
                logger.debug("telegram: chat=%s message=%s joins ix=%s", chat_id,
                             message.message_id, ix_id)
                return
            language = self.language(update, context.chat_data)
            user = update.effective_user
            req = IntakeRequest(
                channel=TELEGRAM,
                queue=self.tg.queue,
                language=language,
                resident=resident_of(chat_id),
                resident_name=(user.full_name if user else "")[:200],
                subject=text.splitlines()[0][:SUBJECT_CHARS] if text.strip() else "",
                body=text,
                external_id=f"{chat_id}:{message.message_id}",
                meta={"chat_id": chat_id, **meta},
            )
            res = await self.service.create_interaction(req)
            self._open[chat_id] = res.id
        logger.info("telegram: chat=%s opened ix=%s ref=%s (new=%s)", chat_id, res.id, res.ref,
                    res.created)
        if res.created:
            await message.reply_text(RECEIVED.get(language, RECEIVED["en"]).format(ref=res.ref))
