"""The web form adapter: residents' requests from an HTML form or as JSON, a status page, and
the agents' answers handed to the channel that reaches the resident.

    GET  /form?lang=pl|en|uk   the form: category (the skill catalogue's information and
                               intervention topics), description, address and/or lat/lon,
                               optional photo, contact for the answer, optional phone for SMS,
                               consent to be remembered (unchecked), a hidden CSRF token
    POST /form                 multipart; CSRF checked; answers a page with the reference
                               number and the private link to /status/<ref>?key=<key>
    POST /api/v1/requests      the same as JSON (no photo); 201 {ref, status_url}
    GET  /status/<ref>         the state only (waiting, being handled, closed), in the language
                               asked for or the city's; never anything the resident wrote
    GET  /status/<ref>?key=K   with the request's own key: also when it was received, its
                               category and the agents' answers (escaped text, oldest first),
                               in the resident's language
    POST /status/<ref>/same-as  (and POST /api/v1/requests/<ref>/same-as, JSON): the resident
                               says their request is one of the likely duplicates shown to
                               them, and is told of that case's outcome (channels/webform/
                               same_as.py)

The status key: reference numbers are sequential (YYYY-NNNNNN), so anyone could walk through
them; what a request holds beyond its state is shown only to whoever has its key. The key is 144
random bits (for a form: derived from the served form's nonce with the CSRF secret, so sending
the same form twice gives the same link), handed out once on the thank-you page or in the JSON
answer; only its SHA-256 is stored (meta `status_key_sha256`), so a copy of the data does not
open the pages.

Answers: an agent's MESSAGE on a web-form interaction is queued (`router.outbox.submit`) in the
outbox of the e-mail channel (an e-mail contact) or the SMS channel (a phone), whose workers send
it. If that channel is not enabled, a failed delivery is recorded for the agent to see; the answer
is still on the status page.

Submissions over the per-IP rate (counted in Redis, shared by every process) get 429; bad input
422 (400 for a body that is not a form or not JSON at all), a photo over the limit 413, a
missing/forged/expired CSRF token 403. Nothing of a refused request is stored. Everything
resident-supplied is stored as text and every page escapes what it shows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from channels.webform import same_as
from channels.webform.same_as import API_SAME_AS_PATH, SAME_AS_PATH, SameAsRequest
from channels.webform.validation import (
    CsrfTokens,
    WebformRequest,
    photo_extension,
    sniff_photo,
)
from router.auth import Role
from router.cases import NUMBER as cases_number
from router.cases import Actor
from router.config_webform import WebformConfig
from router.errors import CitylineError
from router.hash_fields import as_float, json_object
from router.http.api.openapi import OPENAPI_KEY, document_channel_route
from router.http.app import json_error
from router.models import Channel, Event, EventType, IntakeRequest
from router.outbox import OutboundJob, submit
from router.service import RoutingService

logger = logging.getLogger(__name__)

FORM_PATH = "/form"
API_PATH = "/api/v1/requests"
STATUS_PATH = "/status/{ref}"
CATEGORY_KINDS = ("information", "intervention")
FORM_FIELDS = frozenset({"category", "description", "address", "lat", "lon", "contact", "phone",
                         "consent"})
MAX_FIELD_BYTES = 64 * 1024  # one text input; the description itself is limited in characters
REF = re.compile(r"^[0-9]{4}-[0-9]{1,12}$")
KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
KEY_META = "status_key_sha256"  # meta field: the SHA-256 (hex) of the request's status key
RATE_WINDOW_S = 60.0  # rate_limit_per_ip counts submissions per address in this window
MAX_LIKELY = 5  # likely duplicates shown (and so joinable by the resident), nearest first

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "title": "Zgłoszenie do urzędu", "category": "Sprawa", "description": "Opis",
        "address": "Adres (opcjonalnie)", "lat": "Szerokość geogr. (opcjonalnie)",
        "lon": "Długość geogr. (opcjonalnie)", "photo": "Zdjęcie (opcjonalnie, JPEG/PNG/WebP)",
        "contact": "E-mail lub telefon do odpowiedzi",
        "phone": "Telefon do SMS (opcjonalnie)",
        "consent": "Zapamiętaj mnie, aby urzędnicy widzieli moje wcześniejsze kontakty z urzędem",
        "send": "Wyślij",
        "information": "Informacje", "intervention": "Zgłoszenia interwencyjne",
        "thanks": "Dziękujemy, zgłoszenie przyjęto", "ref": "Numer zgłoszenia",
        "maybe_reported": "Ten problem mógł już zostać zgłoszony w pobliżu:",
        "status": "Sprawdź stan zgłoszenia", "state": "Stan", "created": "Przyjęto",
        "error": "Nie udało się przyjąć zgłoszenia", "back": "Wróć do formularza",
        "not_found": "Nie ma zgłoszenia o tym numerze",
        "st_waiting": "przyjęte, czeka na obsługę", "st_handling": "w trakcie obsługi",
        "st_closed": "zakończone",
        "answers": "Odpowiedzi", "no_answers": "Nie ma jeszcze odpowiedzi.",
        "keep_link": "Zachowaj ten link: tylko pod nim zobaczysz odpowiedzi.",
        "private": "Odpowiedzi są widoczne tylko pod linkiem otrzymanym po wysłaniu zgłoszenia.",
        "answer_subject": "[{ref}] Odpowiedź na zgłoszenie: {label}",
    },
    "en": {
        "title": "Request to the city hall", "category": "Matter", "description": "Description",
        "address": "Address (optional)", "lat": "Latitude (optional)",
        "lon": "Longitude (optional)", "photo": "Photo (optional, JPEG/PNG/WebP)",
        "contact": "E-mail or phone for the answer",
        "phone": "Phone for SMS (optional)",
        "consent": "Remember me so agents can see my earlier contacts with the city",
        "send": "Send",
        "information": "Information", "intervention": "Reports",
        "thanks": "Thank you, your request was received", "ref": "Reference number",
        "maybe_reported": "This problem may already have been reported nearby:",
        "status": "Check the status of your request", "state": "Status", "created": "Received",
        "error": "The request could not be accepted", "back": "Back to the form",
        "not_found": "There is no request with this number",
        "st_waiting": "received, waiting", "st_handling": "being handled",
        "st_closed": "closed",
        "answers": "Answers", "no_answers": "No answer yet.",
        "keep_link": "Keep this link: the answers are shown only there.",
        "private": "The answers are shown only at the link you received when you sent the "
                   "request.",
        "answer_subject": "[{ref}] Answer to your request: {label}",
    },
    "uk": {
        "title": "Звернення до міської ради", "category": "Питання", "description": "Опис",
        "address": "Адреса (необов’язково)", "lat": "Широта (необов’язково)",
        "lon": "Довгота (необов’язково)", "photo": "Фото (необов’язково, JPEG/PNG/WebP)",
        "contact": "E-mail або телефон для відповіді",
        "phone": "Телефон для SMS (необов’язково)",
        "consent": "Запам’ятати мене, щоб працівники бачили мої попередні звернення до міста",
        "send": "Надіслати",
        "information": "Інформація", "intervention": "Повідомлення про проблеми",
        "thanks": "Дякуємо, звернення прийнято", "ref": "Номер звернення",
        "maybe_reported": "Цю проблему, можливо, вже повідомили поблизу:",
        "status": "Перевірити стан звернення", "state": "Стан", "created": "Прийнято",
        "error": "Не вдалося прийняти звернення", "back": "Назад до форми",
        "not_found": "Звернення з таким номером немає",
        "st_waiting": "прийняте, очікує", "st_handling": "опрацьовується",
        "st_closed": "завершене",
        "answers": "Відповіді", "no_answers": "Відповіді ще немає.",
        "keep_link": "Збережіть це посилання: лише за ним видно відповіді.",
        "private": "Відповіді видно лише за посиланням, отриманим після надсилання звернення.",
        "answer_subject": "[{ref}] Відповідь на ваше звернення: {label}",
    },
}
for _lang, _more in same_as.TEXTS.items():
    TEXTS[_lang] |= _more
STATE_TEXT = {"new": "st_waiting", "queued": "st_waiting", "offered": "st_waiting",
              "connected": "st_handling", "wrapup": "st_handling"}


class Refused(Exception):
    """A submission refused before anything was stored: status, code, message, details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


class WebformAdapter:
    """One per cityline process: `setup_routes(app)` before the app starts; `handle_event` is
    fed by the EventFeed of the `webform` channel and hands agents' answers to the e-mail or SMS
    outbox of the contact given (the web form has no transport of its own)."""

    name = "webform"
    channel = "webform"

    def __init__(self, service: RoutingService, cfg: Any, form_cfg: WebformConfig,
                 data_dir: Path, *, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        env = os.environ if env is None else env
        self.service = service
        self.cfg = cfg  # the whole CitylineConfig: city languages, skills
        self.form_cfg = form_cfg
        self.uploads = Path(data_dir) / "uploads"
        secret = env.get(form_cfg.csrf_secret_env, "")
        if not secret:
            logger.warning("webform: %s is not set: using a random CSRF secret for this process "
                           "(open forms fail after a restart or on another process)",
                           form_cfg.csrf_secret_env)
        self.csrf = CsrfTokens(secret.encode() if secret else secrets.token_bytes(32),
                               form_cfg.csrf_max_age_s)
        self.state = service.channel_state(Channel.webform)
        self.clock = clock  # wall-clock seconds: the rate windows are shared between processes

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        logger.info("webform: adapter started (queue %s)", self.form_cfg.queue)

    async def stop(self) -> None:
        return None

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        """An agent's message is the answer to the request: hand it to the resident's channel.
        (COMPLETEAGENT and the rest need nothing: the status page reads the state itself.)"""
        if event.type != EventType.MESSAGE or (event.model_extra or {}).get("from") != "agent":
            return
        found = await self.service.announced_message(event)
        if found is not None:
            index, m = found
            await self.answer(event.ix, index, interaction, str(m.get("text") or ""))

    async def answer(self, ix_id: str, index: int, interaction: dict[str, str],
                     text: str) -> None:
        """Queue conversation message `index` of `ix_id` once for the resident's e-mail or
        phone, or record why it cannot be sent. Idempotent: the outbox takes a message once."""
        meta = json_object(interaction.get("meta"))
        contact = str(meta.get("contact") or interaction.get("resident") or "")
        lang = interaction.get("language") or self.cfg.city.default_language
        ref = interaction.get("ref", "")
        item = str(index)
        if "@" in contact:
            via, enabled, what = "email", self.cfg.channels.email.enabled, "e-mail"
            subject = _texts(lang)["answer_subject"].format(
                ref=ref, label=self.label(interaction.get("topic", ""), lang))
            payload = {"ref": ref, "language": lang, "subject": subject}
        elif contact.startswith("+"):
            via, enabled, what = "sms", self.cfg.channels.sms.enabled, "SMS"
            payload = {"ref": ref, "language": lang}
        else:
            await self._undeliverable(ix_id, item, contact, "",
                                      "the request has no e-mail or phone for the answer")
            return
        if not enabled:
            await self._undeliverable(ix_id, item, contact, via,
                                      f"the {what} channel is not enabled")
            return
        job = OutboundJob(ix_id=ix_id, item=item, to=contact, text=text, payload=payload)
        if await submit(self.service.channel_state(via), job):
            logger.info("webform: answer %s of %s (%s) queued for %s", item, ix_id, ref, via)

    async def _undeliverable(self, ix_id: str, item: str, to: str, via: str,
                             error: str) -> None:
        logger.warning("webform: answer %s of %s cannot be sent to the resident: %s "
                       "(it is shown on the status page only)", item, ix_id, error)
        await self.state.set_delivery(ix_id, item, {
            "status": "failed", "to": to, "via": via, "attempts": 0, "error": error,
            "at_ms": int(time.time() * 1000)})

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get(FORM_PATH, self.form_page)
        app.router.add_post(FORM_PATH, self.form_submit)
        app.router.add_post(API_PATH, self.api_submit)
        app.router.add_get(STATUS_PATH, self.status_page)
        app.router.add_post(SAME_AS_PATH, self.same_as_submit)
        app.router.add_post(API_SAME_AS_PATH, self.api_same_as)
        document_channel_route(
            app, API_PATH, "POST", summary="Report a problem or ask a question (the web form)",
            request=WebformRequest,
            responses={"201": "reference number and status page", "422": "invalid request",
                       "429": "too many requests from this address"},
        )
        document_channel_route(
            app, API_SAME_AS_PATH, "POST",
            summary="The resident's request is one of its likely duplicates: join that case",
            request=SameAsRequest,
            responses={"200": "the request is part of the case (linked now or already)",
                       "403": "the key does not open this request",
                       "404": "no web-form request with this reference",
                       "409": "the case is not a likely duplicate of this request (or the "
                              "request is part of another case)",
                       "422": "invalid request", "429": "too many requests from this address"},
        )
        document = app.get(OPENAPI_KEY)
        if document is not None:  # the path's {ref}, which document_channel_route cannot say
            document["paths"][API_SAME_AS_PATH]["post"]["parameters"] = [{
                "name": "ref", "in": "path", "required": True,
                "schema": {"type": "string", "pattern": REF.pattern},
                "description": "the request's reference number"}]

    # --- catalogue and language ---------------------------------------------------------

    def language(self, request: web.Request, fallback: str = "") -> str:
        return self.cfg.city.language(request.query.get("lang") or fallback)

    def categories(self) -> dict[str, Any]:
        return {sid: s for sid, s in self.cfg.skills.items() if s.kind in CATEGORY_KINDS}

    def label(self, skill_id: str, lang: str) -> str:
        skill = self.cfg.skills.get(skill_id)
        if skill is None:
            return skill_id
        return (skill.labels.get(lang) or skill.labels.get(self.cfg.city.default_language)
                or skill_id)

    def _context(self) -> dict[str, Any]:
        return {"categories": set(self.categories()), "languages": set(self.cfg.city.languages),
                "region": self.cfg.city.country}

    # --- the HTML form ------------------------------------------------------------------

    async def form_page(self, request: web.Request) -> web.Response:
        lang = self.language(request)
        t = _texts(lang)
        groups = []
        for kind in CATEGORY_KINDS:
            options = "".join(
                f'<option value="{_e(sid)}">{_e(self.label(sid, lang))}</option>'
                for sid, s in self.categories().items() if s.kind == kind)
            if options:
                groups.append(f'<optgroup label="{_e(t[kind])}">{options}</optgroup>')
        body = (
            f'<form method="post" action="{FORM_PATH}?lang={_e(lang)}" '
            'enctype="multipart/form-data">'
            f'<input type="hidden" name="csrf_token" value="{_e(self.csrf.issue())}">'
            f'<label>{_e(t["category"])}<select name="category" required>'
            f'{"".join(groups)}</select></label>'
            f'<label>{_e(t["description"])}<textarea name="description" required '
            f'maxlength="5000" rows="6"></textarea></label>'
            f'<label>{_e(t["address"])}<input name="address" maxlength="300"></label>'
            f'<label>{_e(t["lat"])}<input name="lat" type="number" step="any" min="-90" '
            'max="90"></label>'
            f'<label>{_e(t["lon"])}<input name="lon" type="number" step="any" min="-180" '
            'max="180"></label>'
            f'<label>{_e(t["photo"])}<input name="photo" type="file" '
            'accept="image/jpeg,image/png,image/webp"></label>'
            f'<label>{_e(t["contact"])}<input name="contact" required maxlength="320"></label>'
            f'<label>{_e(t["phone"])}<input name="phone" type="tel" maxlength="320"></label>'
            '<label class="check"><input name="consent" type="checkbox" value="yes"> '
            f'{_e(t["consent"])}</label>'
            f'<button type="submit">{_e(t["send"])}</button></form>'
        )
        return _page(lang, t["title"], body)

    async def form_submit(self, request: web.Request) -> web.Response:
        lang = self.language(request)
        try:
            await self._rate(request)
            fields, photo = await self._read_multipart(request)
            bad = self.csrf.check(fields.pop("csrf_token", None))
            if bad:
                raise Refused(403, "csrf_failed", f"the form's security token is {bad}; "
                              "reload the form and send it again")
            nonce = fields.get("_nonce", "")
            fields.pop("_nonce", None)
            fields.setdefault("language", lang)
            form = self._validate(fields)
            kind = None
            if photo is not None:
                kind = sniff_photo(photo, list(self.form_cfg.photo_types))
                if kind is None:
                    raise Refused(422, "bad_photo", "the photo is not a "
                                  + "/".join(self.form_cfg.photo_types).upper() + " image")
            ref, key = await self._create(form, photo, kind, external_id=nonce)
        except Refused as exc:
            self._log_refusal(request, exc)
            t = _texts(lang)
            body = (f'<p role="alert">{_e(str(exc))}</p>'
                    + "".join(f"<p>{_e(d['loc'])}: {_e(d['msg'])}</p>"
                              for d in exc.details or [])
                    + f'<p><a href="{FORM_PATH}?lang={_e(lang)}">{_e(t["back"])}</a></p>')
            return _page(lang, t["error"], body, status=exc.status)
        t = _texts(lang)
        url = _status_url(ref, key, lang)
        body = (f'<p>{_e(t["ref"])}: <strong class="ref">{_e(ref)}</strong></p>'
                f'<p><a href="{_e(url)}">{_e(t["status"])}</a></p>'
                f'<p>{_e(t["keep_link"])}</p>')
        likely = await self.likely_duplicates(form)
        if likely:
            items = "".join(
                f'<li><a class="duplicate" href="/cases/{_e(c["number"])}?lang={_e(lang)}">'
                f'{_e(c["number"])}</a> ({_e(c["status"])}) {_e(c["address"])}'
                f'{self._same_as_form(ref, key, c["number"], lang, t)}</li>'
                for c in likely)
            body += f'<p>{_e(t["maybe_reported"])}</p><ul class="duplicates">{items}</ul>'
        return _page(lang, t["thanks"], body, private=True)

    def _same_as_form(self, ref: str, key: str, number: str, lang: str,
                      t: dict[str, str]) -> str:
        """The button next to a likely duplicate: "this is mine, tell me its outcome"."""
        action = SAME_AS_PATH.format(ref=ref) + f"?lang={lang}"
        return (f'<form class="same-as" method="post" action="{_e(action)}">'
                f'<input type="hidden" name="csrf_token" value="{_e(self.csrf.issue())}">'
                f'<input type="hidden" name="key" value="{_e(key)}">'
                f'<input type="hidden" name="case_number" value="{_e(number)}">'
                f'<button type="submit">{_e(t["same_as"])}</button></form>')

    async def likely_duplicates(self, form: WebformRequest) -> list[dict[str, str]]:
        """Open cases of the same category near the reported place (cases.duplicate_radius_m,
        duplicate_window_hours), as anyone may see them: number, status, address."""
        if form.lat is None or form.lon is None:
            return []
        try:
            found = await self.service.cases.find_duplicates(form.category, form.lat, form.lon)
        except CitylineError:  # cases are off, or the category has no case rule
            return []
        return [{"number": str(c.get("number", "")), "status": str(c.get("status", "")),
                 "address": str(c.get("address", ""))} for c in found[:MAX_LIKELY]]

    async def _read_multipart(self, request: web.Request) -> tuple[dict[str, str], bytes | None]:
        fields: dict[str, str] = {}
        photo: bytes | None = None
        if request.content_type == "application/x-www-form-urlencoded":
            # a form without the file input (or a script): the same fields, never a photo
            try:
                posted = await request.post()
            except (UnicodeDecodeError, ValueError):
                raise Refused(400, "malformed_form", "the body is not a valid form") from None
            for name, value in posted.items():
                if name not in FORM_FIELDS | {"csrf_token"} or not isinstance(value, str):
                    raise Refused(422, "unknown_field", f"unknown form field {name!r}")
                fields[name] = value
            return _with_nonce(fields), None
        if request.content_type != "multipart/form-data":
            raise Refused(415, "unsupported_media_type", "send the form as multipart/form-data")
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader):
                    raise Refused(400, "malformed_form", "nested multipart is not a form")
                name = part.name or ""
                if name == "photo":
                    data = await _read_part(part, self.form_cfg.max_photo_bytes, "photo")
                    photo = data or None  # an empty file input sends an empty part
                elif name in FORM_FIELDS or name == "csrf_token":
                    raw = await _read_part(part, MAX_FIELD_BYTES, name)
                    try:
                        fields[name] = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise Refused(400, "invalid_utf8", f"{name} is not valid UTF-8") from None
                else:
                    raise Refused(422, "unknown_field", f"unknown form field {name!r}")
        except ValueError as exc:  # aiohttp's complaints about a broken multipart body
            raise Refused(400, "malformed_form", f"the body is not a valid form ({exc})") from None
        return _with_nonce(fields), photo

    # --- JSON ---------------------------------------------------------------------------

    async def api_submit(self, request: web.Request) -> web.Response:
        # No CSRF token here: a browser can only send a cross-site POST with Content-Type
        # application/json after a CORS preflight, which this server never answers with
        # permission; so a foreign page cannot make a resident's browser submit this.
        # Requiring the JSON content type is what makes that hold.
        try:
            await self._rate(request)
            data = await self._read_json(request)
            form = self._validate(data)
            ref, key = await self._create(form, None, None)
        except Refused as exc:
            self._log_refusal(request, exc)
            return json_error(exc.status, exc.code, str(exc), details=exc.details)
        return web.json_response({"ref": ref, "status_url": _status_url(ref, key),
                                  "likely_duplicates": await self.likely_duplicates(form)},
                                 status=201, headers={"Cache-Control": "no-store"})

    # --- "this is the same problem" (channels/webform/same_as.py) ----------------------

    async def same_as_submit(self, request: web.Request) -> web.Response:
        """The thank-you page's button: join the likely duplicate; an HTML answer."""
        lang = self.language(request)
        ref = request.match_info["ref"]
        try:
            await self._rate(request)
            fields = await self._read_same_as_form(request)
            bad = self.csrf.check(fields.get("csrf_token"))
            if bad:
                raise Refused(403, "csrf_failed", f"the form's security token is {bad}; "
                              "go back, reload the page and try again")
            _ix, case, linked = await self.same_as(ref, fields.get("key", ""),
                                                   fields.get("case_number", ""))
        except Refused as exc:
            self._log_refusal(request, exc)
            t = _texts(lang)
            body = (f'<p role="alert">{_e(str(exc))}</p>'
                    f'<p><a href="{FORM_PATH}?lang={_e(lang)}">{_e(t["back"])}</a></p>')
            return _page(lang, t["same_as_error"], body, status=exc.status, private=True)
        t = _texts(lang)
        number = case["number"]
        said = t["same_as_linked" if linked else "same_as_already"].format(ref=ref,
                                                                         number=number)
        body = (f'<p class="same-as-done">{_e(said)}</p>'
                f'<p><a class="case" href="{_e(_case_url(number, lang))}">'
                f'{_e(t["same_as_case"])} {_e(number)}</a></p>'
                f'<p><a href="{_e(_status_url(ref, fields["key"], lang))}">'
                f'{_e(t["status"])}</a></p>')
        return _page(lang, t["same_as_done"], body, private=True)

    async def api_same_as(self, request: web.Request) -> web.Response:
        """The JSON twin (no CSRF token, for the reason api_submit gives; the key is in the
        body, never in a URL that logs keep)."""
        ref = request.match_info["ref"]
        try:
            await self._rate(request)
            data = await self._read_json(request)
            try:
                body = SameAsRequest.model_validate(data)
            except ValidationError as exc:
                details = [{"loc": ".".join(str(p) for p in e["loc"]) or "body",
                            "msg": e["msg"]}
                           for e in exc.errors(include_input=False, include_url=False)]
                raise Refused(422, "invalid_request", "the request is not valid",
                              details=details) from None
            ix, case, linked = await self.same_as(ref, body.key, body.case_number)
        except Refused as exc:
            self._log_refusal(request, exc)
            return json_error(exc.status, exc.code, str(exc), details=exc.details)
        lang = self.language(request, ix.get("language", ""))
        number = case["number"]
        return web.json_response({"ref": ref, "case_number": number, "linked": linked,
                                  "case_url": _case_url(number, lang)},
                                 headers={"Cache-Control": "no-store"})

    async def same_as(self, ref: str, key: str,
                      number: str) -> tuple[dict[str, str], dict[str, str], bool]:
        """Link web-form request `ref` (opened by `key`) to case `number`, one of its likely
        duplicates; (the interaction, the case, linked now). Refused: 404 no such request,
        403 the key does not open it, 422 not a case number, 409 not a likely duplicate
        (another category, too far, too old, closed, or the request has no place) or the
        request is part of another case.
        """
        ix = await self._own_request(ref, key)
        if not cases_number.match(number):
            raise Refused(422, "invalid_case_number", "case_number is not a case number")
        if ix.get("case") == number:  # asked again: nothing to do, say so
            try:
                case = await self.service.cases.get(number)
            except CitylineError as exc:
                raise Refused(exc.status, exc.code, exc.message) from None
            logger.info("webform: request %s is already part of case %s", ref, number)
            return ix, case, False
        meta = json_object(ix.get("meta"))
        lat, lon = as_float(meta.get("lat")), as_float(meta.get("lon"))
        try:
            found = await self.service.cases.find_duplicates(ix.get("topic", ""), lat, lon)
        except CitylineError as exc:  # cases are off, or the category has no case rule
            raise Refused(409, "not_a_likely_duplicate", "this request's category has no "
                          f"cases ({exc.message})") from None
        if number not in {str(c.get("number", "")) for c in found[:MAX_LIKELY]}:
            raise Refused(409, "not_a_likely_duplicate",
                          f"case {number} is not an open case of the same category near the "
                          "place of this request")
        actor = Actor(f"resident:{ref}", Role.intake)
        try:
            case, linked = await self.service.cases.link(ix, number, actor)
        except CitylineError as exc:  # gone closed meanwhile, or the ix has another case
            other = exc.code == "exists"
            code = "part_of_another_case" if other else exc.code
            message = (f"this request is already part of case {exc.message}" if other
                       else f"case {number}: {exc.message}")
            raise Refused(exc.status, code, message) from None
        logger.info("webform: the resident of %s (%s) joined case %s%s", ref, ix.get("id"),
                    number, "" if linked else " (already linked)")
        return ix, case, linked

    async def _own_request(self, ref: str, key: str) -> dict[str, str]:
        """The web-form interaction `ref` if `key` opens it: 404 / 403 otherwise."""
        ix: dict[str, str] | None = None
        if REF.match(ref):
            try:
                ix = await self.service.interaction_by_ref(ref)
            except CitylineError:
                ix = None
        if not ix or ix.get("channel") != Channel.webform:
            raise Refused(404, "not_found", f"there is no web-form request {ref}")
        if not _key_opens(key, json_object(ix.get("meta")).get(KEY_META)):
            raise Refused(403, "wrong_key", "the key does not open this request")
        return ix

    async def _read_same_as_form(self, request: web.Request) -> dict[str, str]:
        if request.content_type not in ("application/x-www-form-urlencoded",
                                        "multipart/form-data"):
            raise Refused(415, "unsupported_media_type", "send the button's form")
        if (request.content_length or 0) > MAX_FIELD_BYTES:
            raise Refused(413, "request_too_large", f"larger than {MAX_FIELD_BYTES} bytes")
        try:
            posted = await request.post()
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "malformed_form", "the body is not a valid form") from None
        fields: dict[str, str] = {}
        for name, value in posted.items():
            if name not in ("csrf_token", "key", "case_number") or not isinstance(value, str):
                raise Refused(422, "unknown_field", f"unknown form field {name!r}")
            fields[name] = value.strip()
        return fields

    async def _read_json(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise Refused(415, "unsupported_media_type", "send application/json")
        raw = await request.read()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise Refused(400, "invalid_utf8", "the body is not valid UTF-8") from None
        except ValueError:
            raise Refused(400, "malformed_json", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused(422, "invalid_body", "the body must be a JSON object")
        return data

    # --- shared -------------------------------------------------------------------------

    async def _rate(self, request: web.Request) -> None:
        # request.remote is the peer; behind a proxy, aiohttp must be told to trust its
        # X-Forwarded-For (or every resident shares the proxy's limit). Counted in Redis per
        # minute, so every process shares one limit; refused tries count too, so an address
        # that keeps flooding stays refused until it pauses for a minute.
        ip = request.remote or "?"
        count = await self.state.hit(f"ip:{ip}", RATE_WINDOW_S, now_s=self.clock())
        if count > self.form_cfg.rate_limit_per_ip:
            raise Refused(429, "too_many_requests",
                          f"more than {self.form_cfg.rate_limit_per_ip} requests a minute")

    def _validate(self, data: dict[str, Any]) -> WebformRequest:
        try:
            return WebformRequest.model_validate(data, context=self._context())
        except ValidationError as exc:
            details = [{"loc": ".".join(str(p) for p in e["loc"]) or "body", "msg": e["msg"]}
                       for e in exc.errors(include_input=False, include_url=False)]
            raise Refused(422, "invalid_request", "the request is not valid",
                          details=details) from None

    def _status_key(self, nonce: str) -> str:
        """The secret of a request's status link: random, or for a served form derived from
        its nonce (sending the same form again must show the same link)."""
        if not nonce:
            return secrets.token_urlsafe(18)
        mac = hmac.new(self.csrf.secret, f"status:{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()

    async def _create(self, form: WebformRequest, photo: bytes | None, kind: str | None,
                      *, external_id: str = "") -> tuple[str, str]:
        """Queue the request; returns its reference number and status key."""
        key = self._status_key(external_id)
        meta: dict[str, str | float] = {"contact": form.contact, KEY_META: _digest(key)}
        if form.phone:
            meta["phone"] = form.phone
        if form.address:
            meta["address"] = form.address
        if form.lat is not None and form.lon is not None:
            meta["lat"], meta["lon"] = form.lat, form.lon
        incoming: Path | None = None
        if photo is not None and kind is not None:
            # written before the interaction exists, moved under its id once it does: a photo
            # whose interaction failed is removed, an interaction never points at no file
            name = f"photo-{secrets.token_hex(12)}.{photo_extension(kind)}"
            incoming = self.uploads / ".incoming" / name
            await asyncio.to_thread(_write, incoming, photo)
            meta["photo"] = name
        language = form.language or self.cfg.city.default_language
        req = IntakeRequest(
            channel=Channel.webform, queue=self.form_cfg.queue, topic=form.category,
            language=language, resident=form.contact,
            subject=self.label(form.category, language), body=form.description,
            external_id=external_id or None, meta=meta, contacts=form.contacts,
            consent=form.consent)
        try:
            res = await self.service.create_interaction(req)
        except BaseException:
            if incoming is not None:
                await asyncio.to_thread(_remove, incoming)
            raise
        if incoming is not None:
            if res.created:
                await asyncio.to_thread(_move, incoming, self.uploads / res.id / incoming.name)
            else:
                await asyncio.to_thread(_remove, incoming)  # a repeat keeps the first photo
        logger.info("webform: request %s (%s) queued as %s%s", res.ref, form.category, res.id,
                    "" if res.created else " (repeat)")
        return res.ref, key

    def _log_refusal(self, request: web.Request, exc: Refused) -> None:
        logger.warning("webform: %s %s from %s refused: %s %s (%s)", request.method,
                       request.path, request.remote, exc.status, exc.code, exc)

    # --- status -------------------------------------------------------------------------

    async def status_page(self, request: web.Request) -> web.Response:
        """The state for anyone with the reference; the rest only with the request's key."""
        ref = request.match_info["ref"]
        ix: dict[str, str] | None = None
        if REF.match(ref):
            try:
                ix = await self.service.interaction_by_ref(ref)
            except CitylineError:
                ix = None
        if not ix or ix.get("channel") != Channel.webform:
            lang = self.language(request)
            t = _texts(lang)
            return _page(lang, t["not_found"], f"<p>{_e(ref)}</p>", status=404)
        meta = json_object(ix.get("meta"))
        if not _key_opens(request.query.get("key", ""), meta.get(KEY_META)):
            # a stranger may have guessed the number: not even the resident's language
            lang = self.language(request)
            t = _texts(lang)
            rows = [(t["ref"], ref), (t["state"], self._state(ix, t))]
            body = _rows(rows) + f'<p>{_e(t["private"])}</p>'
            return _page(lang, t["status"], body)
        lang = self.language(request, ix.get("language", ""))
        t = _texts(lang)
        tz = self.cfg.city.tzinfo()
        created = datetime.fromtimestamp(int(ix.get("created_ms") or 0) / 1000, tz)
        rows = [(t["ref"], ref), (t["state"], self._state(ix, t)),
                (t["created"], created.strftime("%Y-%m-%d %H:%M")),
                (t["category"], self.label(ix.get("topic", ""), lang))]
        answers = [m for m in await self.service.messages(ix["id"])
                   if m.get("from") == "agent"]
        items = "".join(
            f'<li><time>{_e(_when(m.get("t"), tz))}</time>'
            f'<p class="answer">{_e(m.get("text") or "")}</p></li>'
            for m in answers)  # stored order: the newest last
        body = (_rows(rows) + f'<h2>{_e(t["answers"])}</h2>'
                + (f'<ol class="answers">{items}</ol>' if items
                   else f'<p>{_e(t["no_answers"])}</p>'))
        return _page(lang, t["status"], body, private=True)

    @staticmethod
    def _state(ix: dict[str, str], t: dict[str, str]) -> str:
        return t[STATE_TEXT.get(ix.get("state", ""), "st_closed")]


def _rows(rows: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"


def _when(t_ms: Any, tz: Any) -> str:
    try:
        return datetime.fromtimestamp(int(t_ms) / 1000, tz).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_opens(key: str, stored: Any) -> bool:
    """Does `key` open the request whose meta holds `stored` (a SHA-256 hex)? A request made
    before keys existed has none and is opened by no key."""
    if not isinstance(stored, str) or not stored or not KEY.match(key):
        return False
    return hmac.compare_digest(_digest(key), stored)



def _with_nonce(fields: dict[str, str]) -> dict[str, str]:
    token = fields.get("csrf_token", "")
    if token.count(".") == 2:
        # one submission of one served form is one contact, however often it is sent
        fields["_nonce"] = "form:" + token.split(".")[1]
    return fields


async def _read_part(part: BodyPartReader, limit: int, name: str) -> bytes:
    data = bytearray()
    while chunk := await part.read_chunk(65536):
        data += chunk
        if len(data) > limit:
            raise Refused(413, "request_too_large", f"{name} is larger than {limit} bytes")
    return bytes(data)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _texts(lang: str) -> dict[str, str]:
    return TEXTS.get(lang, TEXTS["en"])


def _status_url(ref: str, key: str, lang: str = "") -> str:
    """The resident's private link to the request (relative: the site's own origin)."""
    return f"/status/{ref}?key={key}" + (f"&lang={lang}" if lang else "")


def _case_url(number: str, lang: str) -> str:
    """A case's public status page (relative: served by this server, see router.http)."""
    return f"/cases/{number}?lang={lang}"



def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(lang: str, title: str, body: str, *, status: int = 200,
          private: bool = False) -> web.Response:
    """A whole page; `body` is markup already escaped by the caller. A `private` page (it holds
    or links with a status key) is never cached, and no search engine keeps it."""
    text = (
        f'<!doctype html><html lang="{_e(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem}"
        "label{display:block;margin:.8rem 0}input,select,textarea{display:block;width:100%}"
        "label.check input{display:inline;width:auto}.answer{white-space:pre-wrap}"
        "</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>"
    )
    headers = {"Content-Security-Policy": "default-src 'self'; "
               "style-src 'unsafe-inline'; frame-ancestors 'none'",
               "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer"}
    if private:
        headers |= {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers=headers)
