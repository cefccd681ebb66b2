"""Inbound Telegram: what `/start`, a language choice, a text and a shared location do.

The callbacks are python-telegram-bot handler callbacks; they run inside `Application.
process_update`, so an exception here reaches the adapter's error handler (the webhook then
answers 500 and Telegram delivers the update again; intake is idempotent by external id).

Threading: a chat has at most one open interaction (queued, offered or connected); a message
while it is open is a resident message of it, otherwise it opens a new one whose external id is
`<chat_id>:<message_id>`. Messages of one chat are handled one at a time, also across cityline
processes (a claim per chat held while one is handled), so two quick first messages cannot open
two interactions.

What a chat is remembered by lives in the channel's memory (`service.channel_state("telegram")`),
shared by every process and kept over a restart: the link "chat" (chat id -> its open
interaction) and the link "prefs" (chat id -> chosen language, own phone number shared).
The acknowledgement with the reference number goes through the persistent outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import ContextTypes

from channels.telegram.errors import TelegramError
from router.config_telegram import TelegramConfig
from router.errors import NotFound
from router.identity import contact_of
from router.models import Channel, IntakeRequest
from router.outbox import OutboundJob
from router.service import RoutingService

logger = logging.getLogger(__name__)

TELEGRAM = Channel.telegram
OPEN_STATES = frozenset({"queued", "offered", "connected"})
LANGUAGE_PREFIX = "lang:"
# how long a chat's open interaction and its preferences are remembered (refreshed on use)
OPEN_TTL_S = 30 * 86_400.0
PREFS_TTL_S = 365 * 86_400.0
# one chat handled by one process at a time: the claim's lifetime, and how long to wait for it
CHAT_LOCK_TTL_S = 30.0
CHAT_LOCK_WAIT_S = 10.0

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
CONTACT_KEPT = {
    "pl": "Dziękujemy. Zapamiętamy ten numer, aby konsultanci widzieli Twoje wcześniejsze "
          "kontakty z urzędem.",
    "en": "Thank you. We will remember this number so agents can see your earlier contacts "
          "with the city.",
    "uk": "Дякуємо. Ми запам'ятаємо цей номер, щоб консультанти бачили ваші попередні "
          "звернення до міської ради.",
}
SUBJECT_CHARS = 80

Submit = Callable[[OutboundJob], Awaitable[bool]]


class ChatBusy(TelegramError):
    """Another process has been handling this chat for too long: the update is retried."""

    error_id = "telegram_chat_busy"


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

    def __init__(self, service: RoutingService, tg: TelegramConfig, submit: Submit) -> None:
        self.service = service
        self.tg = tg
        self.submit = submit
        self.state = service.channel_state(TELEGRAM)
        self.languages = [lang for lang in service.cfg.city.languages if lang in LANGUAGE_LABELS]
        self._locks: dict[int, asyncio.Lock] = {}

    async def recover(self) -> int:
        """Link open Telegram interactions that have no link yet (made before links existed)."""
        n = 0
        for ix in await self.service.active_interactions(TELEGRAM):
            chat_id = chat_of(ix.get("resident", ""))
            if chat_id is not None and ix.get("id"):
                if not (await self.state.link("chat", str(chat_id))).get("ix"):
                    await self.state.set_link("chat", str(chat_id), {"ix": ix["id"]}, OPEN_TTL_S)
                n += 1
        return n

    @asynccontextmanager
    async def _chat(self, chat_id: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(chat_id, asyncio.Lock())
        try:
            async with lock:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + CHAT_LOCK_WAIT_S
                while not await self.state.claim("chat_lock", str(chat_id), CHAT_LOCK_TTL_S):
                    if loop.time() > deadline:
                        raise ChatBusy(f"chat {chat_id} is being handled elsewhere")
                    await asyncio.sleep(0.05)
                try:
                    yield
                finally:
                    await self.state.release("chat_lock", str(chat_id))
        finally:
            # dropped when nobody waits, so the dict holds only chats being handled
            if not lock.locked() and self._locks.get(chat_id) is lock:
                del self._locks[chat_id]

    async def open_interaction(self, chat_id: int) -> str | None:
        ix_id = (await self.state.link("chat", str(chat_id))).get("ix")
        if not ix_id:
            return None
        try:
            ix = await self.service.interaction(ix_id)
        except NotFound:
            ix = {}
        if ix.get("state") in OPEN_STATES:
            return ix_id
        await self.state.drop_link("chat", str(chat_id))
        return None

    async def prefs(self, chat_id: int) -> dict[str, str]:
        return await self.state.link("prefs", str(chat_id))

    def language(self, update: Update, prefs: dict[str, str]) -> str:
        chosen = prefs.get("language")
        if chosen in self.service.cfg.city.languages:
            return str(chosen)
        user = update.effective_user
        code = (user.language_code or "")[:2] if user else ""
        return self.service.cfg.city.language(code)

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
        chat = update.effective_chat
        if chat is not None:
            await self.state.set_link("prefs", str(chat.id), {"language": lang}, PREFS_TTL_S)
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

    async def on_contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """The resident shared their own phone number (the "share contact" button): it is
        remembered for recognising them across channels, and told to the agent if a
        conversation is open. Someone else's contact card is just ignored."""
        message = update.effective_message
        user = update.effective_user
        contact = message.contact if message is not None else None
        if message is None or contact is None or user is None or contact.user_id != user.id:
            return
        try:
            phone = contact_of(contact.phone_number, self.service.cfg.city.country)
        except ValueError:
            logger.info("telegram: chat=%s shared an unusable phone number", message.chat_id)
            return
        async with self._chat(message.chat_id):
            await self.state.set_link("prefs", str(message.chat_id), {"phone": phone},
                                      PREFS_TTL_S)
            ix_id = await self.open_interaction(message.chat_id)
            if ix_id is not None:
                await self.service.attach_meta(ix_id, {"phone": phone})
            language = self.language(update, await self.prefs(message.chat_id))
        await message.reply_text(CONTACT_KEPT.get(language, CONTACT_KEPT["en"]))

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
            prefs = await self.prefs(chat_id)
            language = self.language(update, prefs)
            user = update.effective_user
            phone = prefs.get("phone", "")
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
                # a number the resident shared themselves: they asked to be recognised by it
                contacts=[phone] if phone else [],
                consent=bool(phone),
            )
            res = await self.service.create_interaction(req)
            await self.state.set_link("chat", str(chat_id), {"ix": res.id}, OPEN_TTL_S)
            # queued once (a retried update finds it submitted), sent by the outbox
            await self.submit(OutboundJob(
                ix_id=res.id, item="ack", to=str(chat_id),
                text=RECEIVED.get(language, RECEIVED["en"]).format(ref=res.ref)))
        logger.info("telegram: chat=%s opened ix=%s ref=%s (new=%s)", chat_id, res.id, res.ref,
                    res.created)
