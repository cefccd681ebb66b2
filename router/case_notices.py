"""Telling residents what became of their case, on the channel they used.

Who is told and how is decided when they subscribe (the reporter when the case is made, a
duplicate's reporter when it is linked): `subscriber_for` reads the interaction. The notice
itself is an outbox job (`router.outbox.submit`) in the outbox of the channel that carries it,
sent by whichever process runs that channel, retried while the peer is down:

| the resident used | the notice goes by                                               |
|-------------------|------------------------------------------------------------------|
| e-mail            | e-mail, to the reply address, threaded under their mail          |
| sms, voice        | SMS to the number (a withheld caller ID: no notice)              |
| telegram          | the bot, to the chat                                             |
| webform           | the e-mail or phone given on the form (as the form's answers)    |
| chat              | the contact the agent recorded with the case, else the one the   |
|                   | resident gave when starting the chat, else the chat itself       |

The web chat has no address to send to later: a conversation is its only route. A notice for a
chat subscriber (`via="chat"`, `to` = the interaction id) is therefore not an outbox job but a
message of the city's own (sender "system") posted into the conversation while it is live
(queued, offered or connected), which the chat adapter delivers like an agent's message (and
records as `delivered` once it is on the resident's screen). Whatever the channel of the
subscriber, a case made from (or a report linked to) a live chat also posts the case number and
its status link into that chat, whatever `cases.notify_on` says (`chat_link`): the link is the
chat resident's way to follow the case. Once the chat has ended, a notice cannot reach them: the
delivery record says so (`no_channel`, with when the link was given in the chat, if it was).

When no channel can carry it (a chat that ended, a channel that is off), a delivery record with
status `no_channel` says so next to the interaction, and the public status page
(/cases/<number>) is the resident's only way to learn the outcome.

The job's item is `case:<number>:<status>`, so one resident gets one notice per status however
often it is asked for (a retry of the request, a second process): the outbox claims it once; a
chat post is claimed the same way. The link posted into a chat for a subscriber told by e-mail
or SMS is item `case:<number>:open:chat`, so both records stand side by side.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from queues.cases import Subscriber
from router.config import CitylineConfig
from router.errors import CitylineError, NotFound
from router.hash_fields import meta_of
from router.identity import contact_of, phone_identity
from router.outbox import SUBMITTED_TTL_S, OutboundJob, submit

logger = logging.getLogger(__name__)

_TG = re.compile(r"^(?:tg|telegram):(-?\d{1,20})$")
# A chat conversation the resident is (or may come back to, within the reconnect grace) in:
# a message posted now reaches them. In wrap-up the chat has already told them it ended.
LIVE_CHAT_STATES = frozenset({"queued", "offered", "connected"})

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "open": "Zgłoszenie przyjęto pod numerem {number} ({category}).",
        "completed": "Zgłoszenie {number} ({category}) zostało załatwione.",
        "rejected": "Zgłoszenie {number} ({category}) zostało odrzucone.",
        "in_progress": "Zgłoszenie {number} ({category}) jest w realizacji.",
        "assigned": "Zgłoszenie {number} ({category}) zostało przyjęte do realizacji.",
        "note": "Uwagi: {note}",
        "link": "Stan zgłoszenia: {url}",
        "subject": "Zgłoszenie {number}: {status}",
        "st_open": "przyjęte", "st_completed": "załatwione", "st_rejected": "odrzucone",
        "st_in_progress": "w realizacji", "st_assigned": "przyjęte",
        "sign": "{city}",
    },
    "en": {
        "open": "Your report is registered as {number} ({category}).",
        "completed": "Your report {number} ({category}) has been dealt with.",
        "rejected": "Your report {number} ({category}) has been rejected.",
        "in_progress": "Your report {number} ({category}) is being dealt with.",
        "assigned": "Your report {number} ({category}) has been taken on.",
        "note": "Note: {note}",
        "link": "Status: {url}",
        "subject": "Report {number}: {status}",
        "st_open": "registered", "st_completed": "completed", "st_rejected": "rejected",
        "st_in_progress": "in progress", "st_assigned": "taken on",
        "sign": "{city}",
    },
    "uk": {
        "open": "Ваше повідомлення зареєстровано під номером {number} ({category}).",
        "completed": "Ваше повідомлення {number} ({category}) виконано.",
        "rejected": "Ваше повідомлення {number} ({category}) відхилено.",
        "in_progress": "Ваше повідомлення {number} ({category}) виконується.",
        "assigned": "Ваше повідомлення {number} ({category}) прийнято до виконання.",
        "note": "Примітка: {note}",
        "link": "Стан: {url}",
        "subject": "Повідомлення {number}: {status}",
        "st_open": "зареєстровано", "st_completed": "виконано", "st_rejected": "відхилено",
        "st_in_progress": "виконується", "st_assigned": "прийнято",
        "sign": "{city}",
    },
}


def texts(lang: str) -> dict[str, str]:
    return TEXTS.get(lang, TEXTS["en"])



def contact_route(contact: str, region: str) -> tuple[str, str]:
    """(via, to) for a contact typed by a resident or an agent: e-mail or SMS, or ("", "")."""
    try:
        clean = contact_of(contact, region)
    except ValueError:
        return "", ""
    return ("email", clean) if "@" in clean else ("sms", clean)


def _channel_route(channel: str, ix: dict[str, str], meta: dict[str, Any],
                   region: str) -> tuple[str, str]:
    """(via, to) from what the channel the resident used knows of them, or ("", "")."""
    if channel == "email":
        to = str(meta.get("reply_to") or ix.get("resident") or "")
        return ("email", to) if to else ("", "")
    if channel in ("sms", "voice"):
        ident = phone_identity(ix.get("resident", ""), region)
        return ("sms", ident[len("tel:"):]) if ident else ("", "")
    if channel == "telegram":
        m = _TG.match(ix.get("resident", "").strip())
        chat = str(meta.get("chat_id") or (m.group(1) if m else ""))
        return ("telegram", chat) if chat else ("", "")
    if channel == "webform":
        route = contact_route(str(meta.get("contact") or ix.get("resident") or ""), region)
        if not route[0] and meta.get("phone"):
            route = contact_route(str(meta["phone"]), region)
        return route
    if channel == "chat":
        # the contact typed when starting the chat (channels/chat keeps it in meta "contact"),
        # else the conversation itself, as long as it lasts
        route = contact_route(str(meta.get("contact") or ""), region)
        if not route[0] and ix.get("id"):
            route = ("chat", ix["id"])
        return route
    return "", ""


def subscriber_for(cfg: CitylineConfig, ix: dict[str, str], contact: str = "",
                   *, agreed: bool = True) -> Subscriber:
    """How the resident of interaction `ix` is told of the case's outcome. `contact` (an
    e-mail address or a phone number the resident gave the agent) wins over what the channel
    knows; one that is not a usable address is ignored (the channel's own route stands).
    `agreed` False: the resident does not want to be told; no route nor contact is kept with
    the case, only the fact (they have the number and the public status page)."""
    region = cfg.city.country
    channel = ix.get("channel", "")
    meta = meta_of(ix)
    if not agreed:
        return Subscriber(ix=ix.get("id", ""), via="", to="",
                          language=ix.get("language") or cfg.city.default_language,
                          ref=ix.get("ref", ""), channel=channel, declined="1")
    via, to = contact_route(contact, region) if contact else ("", "")
    if not via:
        via, to = _channel_route(channel, ix, meta, region)
    reply_id = str(meta.get("message_id") or "") if via == "email" and channel == "email" else ""
    return Subscriber(ix=ix.get("id", ""), via=via, to=to,
                      language=ix.get("language") or cfg.city.default_language,
                      ref=ix.get("ref", ""), channel=channel, reply_to_id=reply_id)


def status_url(cfg: CitylineConfig, number: str, lang: str) -> str:
    """The case's public status page: absolute with `cases.public_url`, else relative (the web
    chat page is served by cityline itself, so the relative link works there)."""
    return f"{cfg.cases.public_url.rstrip('/')}/cases/{number}?lang={lang}"


def notice_text(cfg: CitylineConfig, case: dict[str, str], status: str, note: str,
                lang: str, *, relative_link: bool = False) -> str:
    """The notice in `lang`; the status link only with `cases.public_url`, or, with
    `relative_link` (a message shown on cityline's own chat page), a relative one."""
    t = texts(lang)
    skill = cfg.skills.get(case.get("category", ""))
    category = (skill.labels.get(lang) or next(iter(skill.labels.values()), "")) if skill else ""
    number = case.get("number", "")
    parts = [t.get(status, t["completed"]).format(number=number, category=category or "-")]
    if note.strip():
        parts.append(t["note"].format(note=" ".join(note.split())))
    if cfg.cases.public_url or relative_link:
        parts.append(t["link"].format(url=status_url(cfg, number, lang)))
    parts.append(t["sign"].format(city=cfg.city.name))
    return "\n".join(parts)


def _enabled(cfg: CitylineConfig, via: str) -> bool:
    block = getattr(cfg.channels, via, None)
    return bool(getattr(block, "enabled", False))


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _chat_ended_error(service: Any, number: str, ix_id: str) -> str:
    """What the delivery record of a notice that found the chat over says: whether (and when)
    the case number and its status link were given in the chat before it ended."""
    records = await service.channel_state("chat").deliveries(ix_id)
    given = [r for r in (records.get(f"case:{number}:open"),
                         records.get(f"case:{number}:open:chat"))
             if r and r.get("status") in ("sent", "delivered")]
    if not given:
        return ("the chat has ended and the resident left no contact: not told (the public "
                "status page only)")
    first = min(given, key=lambda r: int(r.get("at_ms") or 0))
    tz = ZoneInfo(service.cfg.city.timezone)
    when = datetime.fromtimestamp(int(first.get("at_ms") or 0) / 1000, tz)
    how = "shown" if any(r.get("status") == "delivered" for r in given) else "posted"
    return (f"the chat has ended: not told; the case number and status link were {how} in "
            f"the chat at {when:%Y-%m-%d %H:%M} ({service.cfg.city.timezone})")


async def _post_to_chat(service: Any, case: dict[str, str], status: str, note: str,
                        sub: Subscriber, *, item: str, record_ended: bool) -> str:
    """Post the notice of `status` into the web chat conversation `sub.ix` while it is live.
    Returns "queued" (posted: the chat adapter shows it, in this or any process, and records
    `delivered` once it is on the resident's screen), "already" (posted before) or
    "no_channel" (the chat is over; with `record_ended` a delivery record says so)."""
    cfg: CitylineConfig = service.cfg
    number = case.get("number", "")
    state = service.channel_state("chat")
    claim = f"{sub.ix}:{item}"
    if not await state.claim("case_notice", claim, SUBMITTED_TTL_S):
        return "already"
    lang = cfg.city.language(sub.language)
    try:
        ix = await service.interaction(sub.ix)
    except NotFound:
        ix = {}
    if ix.get("state") in LIVE_CHAT_STATES:
        url = status_url(cfg, number, lang)
        text = notice_text(cfg, case, status, note, lang, relative_link=True)
        try:
            index = await service.system_message(sub.ix, text, notice=item, link=url)
        except CitylineError as exc:  # it ended between the read and the post
            logger.info("cases: %s %s: chat %s ended meanwhile (%s)", number, status, sub.ix,
                        exc)
        else:
            await state.set_delivery(sub.ix, item, {
                "status": "sent", "to": sub.ix, "via": "chat", "attempts": 1, "error": "",
                "message": index, "at_ms": _now_ms()})
            logger.info("cases: %s %s: posted into chat %s", number, status, sub.ix)
            return "queued"
    # nothing was posted: a later call (the chat cannot come back) finds the same and says so
    await state.release("case_notice", claim)
    if record_ended:
        await state.set_delivery(sub.ix, item, {
            "status": "no_channel", "to": sub.ix, "via": "chat", "attempts": 0,
            "error": await _chat_ended_error(service, number, sub.ix), "at_ms": _now_ms()})
        logger.info("cases: %s %s: chat %s is over, resident not told", number, status, sub.ix)
    return "no_channel"


async def chat_link(service: Any, case: dict[str, str], sub: Subscriber) -> str:
    """The case was made from (or a report linked to) the web chat of `sub`: post its number
    and status link into that chat while it is live, whatever `cases.notify_on` says: it is how
    a chat resident follows the case. "" when the report did not come by chat, else as
    `_post_to_chat`. For a subscriber told through the chat itself this is their `open` notice
    (a later `notify` of `open` finds it done); for one told by e-mail or SMS (a contact was
    given) it is a separate item, and a chat already over is not recorded (the contact is)."""
    if sub.channel != "chat" or not sub.ix:
        return ""
    number = case.get("number", "")
    in_chat = sub.via == "chat"
    item = f"case:{number}:open" if in_chat else f"case:{number}:open:chat"
    return await _post_to_chat(service, case, "open", "", sub, item=item, record_ended=in_chat)


async def _record_untold(service: Any, via: str, ix_id: str, item: str, status: str, to: str,
                         error: str) -> bool:
    """Record that the resident of `ix_id` was not told `item`, and why; False (nothing
    written) when the record says so already: asked again (the notices worker after the
    inline path, a retry), it neither rewrites the record nor logs the same thing twice."""
    state = service.channel_state(via)
    known = (await state.deliveries(ix_id)).get(item) or {}
    if known.get("status") == status and known.get("error") == error:
        return False
    await state.set_delivery(ix_id, item, {"status": status, "to": to, "via": via,
                                           "attempts": 0, "error": error,
                                           "at_ms": int(time.time() * 1000)})
    return True


async def notify(service: Any, case: dict[str, str], status: str, note: str,
                 subscribers: list[Subscriber]) -> list[dict[str, str]]:
    """Queue the notice of `status` for every subscriber; returns per subscriber {ix, via,
    result}: queued (for a chat: posted into the live conversation), already (queued before),
    no_channel, channel_off. `service` is the RoutingService."""
    cfg: CitylineConfig = service.cfg
    number = case.get("number", "")
    item = f"case:{number}:{status}"
    out: list[dict[str, str]] = []
    for sub in subscribers:
        ix_id = sub.ix or f"case-{case.get('id', '')}"
        if sub.declined:
            out.append({"ix": sub.ix, "via": "", "result": "declined"})
            await _record_untold(service, "", ix_id, item, "declined", "", "the resident did "
                                 "not want to be told: the public status page only")
            continue
        if not sub.via or not sub.to:
            out.append({"ix": sub.ix, "via": "", "result": "no_channel"})
            if await _record_untold(service, "", ix_id, item, "no_channel", "", "no way to "
                                    "reach the resident: the public status page only"):
                logger.info("cases: %s %s: no channel for %s (status page only)", number,
                            status, sub.key)
            continue
        if not _enabled(cfg, sub.via):
            out.append({"ix": sub.ix, "via": sub.via, "result": "channel_off"})
            if await _record_untold(service, sub.via, ix_id, item, "failed", sub.to,
                                    f"the {sub.via} channel is not enabled"):
                logger.warning("cases: %s %s: the %s channel is off; %s not told", number,
                               status, sub.via, sub.key)
            continue
        if sub.via == "chat":
            result = await _post_to_chat(service, case, status, note, sub, item=item,
                                         record_ended=True)
            out.append({"ix": sub.ix, "via": "chat", "result": result})
            continue
        lang = cfg.city.language(sub.language)
        text = notice_text(cfg, case, status, note, lang)
        payload: dict[str, Any] = {"ref": sub.ref or number, "language": lang, "case": number}
        if sub.via == "email":
            t = texts(lang)
            payload["subject"] = t["subject"].format(number=number, status=t[f"st_{status}"])
            if sub.reply_to_id:
                payload["in_reply_to"] = sub.reply_to_id
                payload["references"] = [sub.reply_to_id]
        job = OutboundJob(ix_id=ix_id, item=item, to=sub.to, text=text, payload=payload)
        queued = await submit(service.channel_state(sub.via), job)
        out.append({"ix": sub.ix, "via": sub.via, "result": "queued" if queued else "already"})
        if queued:
            logger.info("cases: %s %s: notice queued for %s via %s", number, status, ix_id,
                        sub.via)
    return out
