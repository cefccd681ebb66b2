"""The public status page of a case: GET /cases/<number>?lang=pl|en|uk, and the look-up form
GET /cases?number=... that leads to it.

A resident who quotes their case number (from the notice, the agent, the web form) sees its
category, status and history with the notes meant for residents. The look-up takes what the
resident has: the case number, typed in any case and with spaces, or the reference number of
their contact (the acknowledgement's `2026-000123`), which leads to the case made of it.

Case numbers are sequential, so anyone can read any case: the page shows only what
`CaseService.public_view` gives, which holds nothing about who reported it (no name, contact,
description or internal note; the place rounded to ~100 m). Everything shown is escaped.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from typing import Any

from aiohttp import web

from router.cases import NUMBER
from router.errors import CitylineError
from router.service import RoutingService

PATH = "/cases/{number}"
LOOKUP = "/cases"
REF = re.compile(r"^[0-9]{4}-[0-9]{1,12}$")  # an interaction's reference number
SERVICE_KEY = web.AppKey("cityline_public_cases_service", RoutingService)

TEXTS: dict[str, dict[str, str]] = {
    "pl": {"lookup": "Sprawdź zgłoszenie", "number": "Numer zgłoszenia lub kontaktu",
           "show": "Pokaż", "no_case": "Kontakt {ref} nie ma (jeszcze) zgłoszenia",
           "title": "Zgłoszenie {number}", "not_found": "Nie ma zgłoszenia o tym numerze",
           "category": "Kategoria", "unit": "Realizuje", "status": "Stan", "place": "Miejsce",
           "created": "Przyjęto", "due": "Termin", "closed": "Zakończono",
           "duplicate_of": "Powtórzenie zgłoszenia", "history": "Historia",
           "open": "przyjęte", "assigned": "przydzielone", "in_progress": "w realizacji",
           "completed": "załatwione", "rejected": "odrzucone", "duplicate": "powtórzone"},
    "en": {"lookup": "Look up a report", "number": "Report or contact number",
           "show": "Show", "no_case": "Contact {ref} has no report (yet)",
           "title": "Report {number}", "not_found": "There is no report with this number",
           "category": "Category", "unit": "Handled by", "status": "Status", "place": "Place",
           "created": "Received", "due": "Due", "closed": "Closed",
           "duplicate_of": "Repeats report", "history": "History",
           "open": "received", "assigned": "assigned", "in_progress": "in progress",
           "completed": "completed", "rejected": "rejected", "duplicate": "duplicate"},
    "uk": {"lookup": "Перевірити повідомлення", "number": "Номер повідомлення або звернення",
           "show": "Показати", "no_case": "Звернення {ref} (ще) не має повідомлення",
           "title": "Повідомлення {number}", "not_found": "Повідомлення з таким номером немає",
           "category": "Категорія", "unit": "Виконує", "status": "Стан", "place": "Місце",
           "created": "Прийнято", "due": "Термін", "closed": "Завершено",
           "duplicate_of": "Повторює повідомлення", "history": "Історія",
           "open": "прийняте", "assigned": "призначене", "in_progress": "виконується",
           "completed": "виконане", "rejected": "відхилене", "duplicate": "повторне"},
}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _texts(lang: str) -> dict[str, str]:
    return TEXTS.get(lang, TEXTS["en"])


def setup_public_cases(app: web.Application, service: RoutingService) -> None:
    app[SERVICE_KEY] = service
    app.router.add_get(PATH, case_page)
    app.router.add_get(LOOKUP, lookup_page)


def _lang(request: web.Request, service: RoutingService) -> str:
    return service.cfg.city.language(request.query.get("lang"))


def _form(lang: str, value: str = "") -> str:
    t = _texts(lang)
    return (f'<form method="get" action="{LOOKUP}"><input type="hidden" name="lang" '
            f'value="{_e(lang)}"><label>{_e(t["number"])} <input name="number" required '
            f'maxlength="40" value="{_e(value)}" autocomplete="off"></label> '
            f'<button>{_e(t["show"])}</button></form>')


async def _case_number(service: RoutingService, typed: str) -> tuple[str, str]:
    """(case number, "") for what a resident typed, or ("", why not) in their words' key."""
    wanted = "".join(typed.split()).upper()
    if NUMBER.match(wanted):
        try:
            return (await service.cases.get(wanted))["number"], ""
        except CitylineError:
            return "", "not_found"
    if REF.match(wanted):
        try:
            ix = await service.interaction_by_ref(wanted)
        except CitylineError:
            return "", "not_found"
        return (ix["case"], "") if ix.get("case") else ("", "no_case")
    return "", "not_found"


async def lookup_page(request: web.Request) -> web.Response:
    """The form; with `number`, a redirect to the case's page (303) or the form again (404)."""
    service = request.app[SERVICE_KEY]
    lang = _lang(request, service)
    t = _texts(lang)
    typed = request.query.get("number", "")[:40]
    if not typed.strip():
        return _page(lang, t["lookup"], _form(lang))
    number, why = await _case_number(service, typed)
    if number:
        raise web.HTTPSeeOther(f"/cases/{number}?lang={lang}")
    message = t["no_case"].format(ref=typed.strip()) if why == "no_case" else t["not_found"]
    return _page(lang, t["lookup"], f"<p>{_e(message)}</p>" + _form(lang, typed), status=404)


async def case_page(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    cfg = service.cfg
    lang = _lang(request, service)
    t = _texts(lang)
    number = request.match_info["number"]
    view: dict[str, Any] | None = None
    if NUMBER.match(number):
        try:
            view = await service.cases.public_view(number, lang)
        except CitylineError:
            view = None
    if view is None:
        return _page(lang, t["not_found"], f"<p>{_e(number)}</p>" + _form(lang, number),
                     status=404)
    tz = cfg.city.tzinfo()

    def when(ms: Any) -> str:
        return datetime.fromtimestamp(int(ms) / 1000, tz).strftime("%Y-%m-%d %H:%M") if ms else ""

    place = view["address"]
    if view["lat"] is not None:
        place = f"{place} ({view['lat']:.3f}, {view['lon']:.3f})".strip()
    rows = [(t["category"], view["category_label"]), (t["unit"], view["unit_label"]),
            (t["status"], t.get(view["status"], view["status"])), (t["place"], place),
            (t["created"], when(view["created_ms"])), (t["due"], when(view["due_ms"]))]
    if view["closed_ms"]:
        rows.append((t["closed"], when(view["closed_ms"])))
    dl = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v)
    if view["duplicate_of"]:  # the case whose outcome this one shares: one click away
        other = view["duplicate_of"]
        dl += (f'<dt>{_e(t["duplicate_of"])}</dt><dd><a href="/cases/{_e(other)}?lang='
               f'{_e(lang)}">{_e(other)}</a></dd>')
    dl += "</dl>"
    items = "".join(
        f'<li><time>{_e(when(h["time_ms"]))}</time> '
        f'<strong>{_e(t.get(h["status"], h["status"]))}</strong>'
        + (f'<p class="note">{_e(h["note"])}</p>' if h["note"] else "") + "</li>"
        for h in view["history"])
    body = (dl + f'<h2>{_e(t["history"])}</h2><ol class="history">{items}</ol>'
            + f'<h2>{_e(t["lookup"])}</h2>' + _form(lang))
    return _page(lang, t["title"].format(number=view["number"]), body)


def _page(lang: str, title: str, body: str, *, status: int = 200) -> web.Response:
    text = (
        f'<!doctype html><html lang="{_e(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem}"
        "dt{font-weight:bold}.note{white-space:pre-wrap;margin:.2rem 0 .6rem}</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>"
    )
    headers = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
               "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=headers)
