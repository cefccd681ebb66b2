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
| chat              | the contact the agent recorded with the case, if any             |

When no channel can carry it (a chat without a contact, a channel that is off), a delivery
record with status `no_channel` says so next to the interaction, and the public status page
(/cases/<number>) is the resident's only way to learn the outcome.

The job's item is `case:<number>:<status>`, so one resident gets one notice per status however
often it is asked for (a retry of the request, a second process): the outbox claims it once.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from queues.cases import Subscriber
from router.config import CitylineConfig
from router.identity import contact_of, phone_identity
from router.outbox import OutboundJob, submit

logger = logging.getLogger(__name__)

_TG = re.compile(r"^(?:tg|telegram):(-?\d{1,20})$")

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


def _meta(ix: dict[str, str]) -> dict[str, Any]:
    try:
        value = json.loads(ix.get("meta") or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _contact_route(contact: str, region: str) -> tuple[str, str]:
    """(via, to) for a contact typed by a resident or an agent: e-mail or SMS, or ("", "")."""
    try:
        clean = contact_of(contact, region)
    except ValueError:
        return "", ""
    return ("email", clean) if "@" in clean else ("sms", clean)


def subscriber_for(cfg: CitylineConfig, ix: dict[str, str], contact: str = "") -> Subscriber:
    """How the resident of interaction `ix` is told of the case's outcome. `contact` (an
    e-mail address or a phone number the resident gave the agent) wins over what the channel
    knows, which is the only way for a web chat."""
    region = cfg.city.country
    channel = ix.get("channel", "")
    meta = _meta(ix)
    via, to = "", ""
    if contact:
        via, to = _contact_route(contact, region)
    elif channel == "email":
        to = str(meta.get("reply_to") or ix.get("resident") or "")
        via = "email" if to else ""
    elif channel in ("sms", "voice"):
        ident = phone_identity(ix.get("resident", ""), region)
        if ident:
            via, to = "sms", ident[len("tel:"):]
    elif channel == "telegram":
        m = _TG.match(ix.get("resident", "").strip())
        chat = str(meta.get("chat_id") or (m.group(1) if m else ""))
        if chat:
            via, to = "telegram", chat
    elif channel == "webform":
        via, to = _contact_route(str(meta.get("contact") or ix.get("resident") or ""), region)
        if not via and meta.get("phone"):
            via, to = _contact_route(str(meta["phone"]), region)
    reply_id = str(meta.get("message_id") or "") if via == "email" and channel == "email" else ""
    return Subscriber(ix=ix.get("id", ""), via=via, to=to,
                      language=ix.get("language") or cfg.city.default_language,
                      ref=ix.get("ref", ""), channel=channel, reply_to_id=reply_id)


def notice_text(cfg: CitylineConfig, case: dict[str, str], status: str, note: str,
                lang: str) -> str:
    t = texts(lang)
    skill = cfg.skills.get(case.get("category", ""))
    category = (skill.labels.get(lang) or next(iter(skill.labels.values()), "")) if skill else ""
    number = case.get("number", "")
    parts = [t.get(status, t["completed"]).format(number=number, category=category or "-")]
    if note.strip():
        parts.append(t["note"].format(note=" ".join(note.split())))
    base = cfg.cases.public_url.rstrip("/")
    if base:
        parts.append(t["link"].format(url=f"{base}/cases/{number}?lang={lang}"))
    parts.append(t["sign"].format(city=cfg.city.name))
    return "\n".join(parts)


def _enabled(cfg: CitylineConfig, via: str) -> bool:
    block = getattr(cfg.channels, via, None)
    return bool(getattr(block, "enabled", False))


async def notify(service: Any, case: dict[str, str], status: str, note: str,
                 subscribers: list[Subscriber]) -> list[dict[str, str]]:
    """Queue the notice of `status` for every subscriber; returns per subscriber {ix, via,
    result}: queued, already (queued before), no_channel, channel_off. `service` is the
    RoutingService."""
    cfg: CitylineConfig = service.cfg
    number = case.get("number", "")
    item = f"case:{number}:{status}"
    out: list[dict[str, str]] = []
    for sub in subscribers:
        ix_id = sub.ix or f"case-{case.get('id', '')}"
        if not sub.via or not sub.to:
            out.append({"ix": sub.ix, "via": "", "result": "no_channel"})
            await service.channel_state("").set_delivery(ix_id, item, {
                "status": "no_channel", "to": "", "via": "", "attempts": 0,
                "error": "no way to reach the resident: the public status page only",
                "at_ms": int(time.time() * 1000)})
            logger.info("cases: %s %s: no channel for %s (status page only)", number, status,
                        sub.key)
            continue
        if not _enabled(cfg, sub.via):
            out.append({"ix": sub.ix, "via": sub.via, "result": "channel_off"})
            await service.channel_state(sub.via).set_delivery(ix_id, item, {
                "status": "failed", "to": sub.to, "via": sub.via, "attempts": 0,
                "error": f"the {sub.via} channel is not enabled",
                "at_ms": int(time.time() * 1000)})
            logger.warning("cases: %s %s: the %s channel is off; %s not told", number, status,
                           sub.via, sub.key)
            continue
        lang = sub.language if sub.language in cfg.city.languages else cfg.city.default_language
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
