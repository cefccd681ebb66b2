"""The web form adapter: residents' requests from an HTML form or as JSON, and a status page.

    GET  /form?lang=pl|en|uk   the form: category (the skill catalogue's information and
                               intervention topics), description, address and/or lat/lon,
                               optional photo, contact for the answer, a hidden CSRF token
    POST /form                 multipart; CSRF checked; answers a page with the reference
                               number and a link to /status/<ref>
    POST /api/v1/requests      the same as JSON (no photo); 201 {ref, status_url}
    GET  /status/<ref>         public: reference, state, created date, category; never the
                               description, contact, address or photo

Submissions over the per-IP rate get 429; bad input 422 (400 for a body that is not a form or
not JSON at all), a photo over the limit 413, a missing/forged/expired CSRF token 403. Nothing of
a refused request is stored. Everything resident-supplied is stored as text and every page
escapes what it shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from channels.webform.ratelimit import SlidingWindowLimiter
from channels.webform.validation import (
    CsrfTokens,
    WebformRequest,
    photo_extension,
    sniff_photo,
)
from queues import errors as store_errors
from router.config_webform import WebformConfig
from router.errors import CitylineError
from router.http.api.openapi import document_channel_route
from router.http.app import json_error
from router.models import Channel, Event, IntakeRequest
from router.service import RoutingService

logger = logging.getLogger(__name__)

FORM_PATH = "/form"
API_PATH = "/api/v1/requests"
STATUS_PATH = "/status/{ref}"
CATEGORY_KINDS = ("information", "intervention")
FORM_FIELDS = frozenset({"category", "description", "address", "lat", "lon", "contact"})
MAX_FIELD_BYTES = 64 * 1024  # one text input; the description itself is limited in characters
REF = re.compile(r"^[0-9]{4}-[0-9]{1,12}$")

TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "title": "Zgłoszenie do urzędu", "category": "Sprawa", "description": "Opis",
        "address": "Adres (opcjonalnie)", "lat": "Szerokość geogr. (opcjonalnie)",
        "lon": "Długość geogr. (opcjonalnie)", "photo": "Zdjęcie (opcjonalnie, JPEG/PNG/WebP)",
        "contact": "E-mail lub telefon do odpowiedzi", "send": "Wyślij",
        "information": "Informacje", "intervention": "Zgłoszenia interwencyjne",
        "thanks": "Dziękujemy, zgłoszenie przyjęto", "ref": "Numer zgłoszenia",
        "status": "Sprawdź stan zgłoszenia", "state": "Stan", "created": "Przyjęto",
        "error": "Nie udało się przyjąć zgłoszenia", "back": "Wróć do formularza",
        "not_found": "Nie ma zgłoszenia o tym numerze",
        "st_waiting": "przyjęte, czeka na obsługę", "st_handling": "w trakcie obsługi",
        "st_closed": "zakończone",
    },
    "en": {
        "title": "Request to the city hall", "category": "Matter", "description": "Description",
        "address": "Address (optional)", "lat": "Latitude (optional)",
        "lon": "Longitude (optional)", "photo": "Photo (optional, JPEG/PNG/WebP)",
        "contact": "E-mail or phone for the answer", "send": "Send",
        "information": "Information", "intervention": "Reports",
        "thanks": "Thank you, your request was received", "ref": "Reference number",
        "status": "Check the status of your request", "state": "Status", "created": "Received",
        "error": "The request could not be accepted", "back": "Back to the form",
        "not_found": "There is no request with this number",
        "st_waiting": "received, waiting", "st_handling": "being handled",
        "st_closed": "closed",
    },
    "uk": {
        "title": "Звернення до міської ради", "category": "Питання", "description": "Опис",
        "address": "Адреса (необов’язково)", "lat": "Широта (необов’язково)",
        "lon": "Довгота (необов’язково)", "photo": "Фото (необов’язково, JPEG/PNG/WebP)",
        "contact": "E-mail або телефон для відповіді", "send": "Надіслати",
        "information": "Інформація", "intervention": "Повідомлення про проблеми",
        "thanks": "Дякуємо, звернення прийнято", "ref": "Номер звернення",
        "status": "Перевірити стан звернення", "state": "Стан", "created": "Прийнято",
        "error": "Не вдалося прийняти звернення", "back": "Назад до форми",
        "not_found": "Звернення з таким номером немає",
        "st_waiting": "прийняте, очікує", "st_handling": "опрацьовується",
        "st_closed": "завершене",
    },
}
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
    """One per cityline process: `setup_routes(app)` before the app starts; `start`/`stop`
    and `handle_event` exist for the channel lifecycle and have nothing to do yet (answers to
    form requests go out through the e-mail or SMS channel of the contact given)."""

    name = "webform"
    channel = "webform"

    def __init__(self, service: RoutingService, cfg: Any, form_cfg: WebformConfig,
                 data_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
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
        self.limiter = SlidingWindowLimiter(form_cfg.rate_limit_per_ip)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        logger.info("webform: adapter started (queue %s)", self.form_cfg.queue)

    async def stop(self) -> None:
        return None

    async def handle_event(self, event: Event, interaction: dict[str, str]) -> None:
        return None

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get(FORM_PATH, self.form_page)
        app.router.add_post(FORM_PATH, self.form_submit)
        app.router.add_post(API_PATH, self.api_submit)
        app.router.add_get(STATUS_PATH, self.status_page)
        document_channel_route(
            app, API_PATH, "POST", summary="Report a problem or ask a question (the web form)",
            request=WebformRequest,
            responses={"201": "reference number and status page", "422": "invalid request",
                       "429": "too many requests from this address"},
        )

    # --- catalogue and language ---------------------------------------------------------

    def language(self, request: web.Request, fallback: str = "") -> str:
        lang = request.query.get("lang") or fallback
        return lang if lang in self.cfg.city.languages else self.cfg.city.default_language

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
            f'<button type="submit">{_e(t["send"])}</button></form>'
        )
        return _page(lang, t["title"], body)

    async def form_submit(self, request: web.Request) -> web.Response:
        lang = self.language(request)
        try:
            self._rate(request)
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
            ref = await self._create(form, photo, kind, external_id=nonce)
        except Refused as exc:
            self._log_refusal(request, exc)
            t = _texts(lang)
            body = (f'<p role="alert">{_e(str(exc))}</p>'
                    + "".join(f"<p>{_e(d['loc'])}: {_e(d['msg'])}</p>"
                              for d in exc.details or [])
                    + f'<p><a href="{FORM_PATH}?lang={_e(lang)}">{_e(t["back"])}</a></p>')
            return _page(lang, t["error"], body, status=exc.status)
        t = _texts(lang)
        url = _status_url(ref, lang)
        body = (f'<p>{_e(t["ref"])}: <strong class="ref">{_e(ref)}</strong></p>'
                f'<p><a href="{_e(url)}">{_e(t["status"])}</a></p>')
        return _page(lang, t["thanks"], body)

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
            self._rate(request)
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
            form = self._validate(data)
            ref = await self._create(form, None, None)
        except Refused as exc:
            self._log_refusal(request, exc)
            return json_error(exc.status, exc.code, str(exc), details=exc.details)
        return web.json_response({"ref": ref, "status_url": _status_url(ref)}, status=201)

    # --- shared -------------------------------------------------------------------------

    def _rate(self, request: web.Request) -> None:
        # request.remote is the peer; behind a proxy, aiohttp must be told to trust its
        # X-Forwarded-For (or every resident shares the proxy's limit)
        ip = request.remote or "?"
        if not self.limiter.allow(ip):
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

    async def _create(self, form: WebformRequest, photo: bytes | None, kind: str | None,
                      *, external_id: str = "") -> str:
        meta: dict[str, str | float] = {"contact": form.contact}
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
            external_id=external_id or None, meta=meta)
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
        return res.ref

    def _log_refusal(self, request: web.Request, exc: Refused) -> None:
        logger.warning("webform: %s %s from %s refused: %s %s (%s)", request.method,
                       request.path, request.remote, exc.status, exc.code, exc)

    # --- status -------------------------------------------------------------------------

    async def status_page(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        ix: dict[str, str] | None = None
        if REF.match(ref):
            try:
                ix = await self.service.store.by_ref(ref)
            except (store_errors.NotFoundError, CitylineError):
                ix = None
        if not ix or ix.get("channel") != Channel.webform:
            lang = self.language(request)
            t = _texts(lang)
            return _page(lang, t["not_found"], f"<p>{_e(ref)}</p>", status=404)
        lang = self.language(request, ix.get("language", ""))
        t = _texts(lang)
        created = datetime.fromtimestamp(int(ix.get("created_ms") or 0) / 1000,
                                         self.cfg.city.tzinfo())
        state = t[STATE_TEXT.get(ix.get("state", ""), "st_closed")]
        rows = [(t["ref"], ref), (t["state"], state),
                (t["created"], created.strftime("%Y-%m-%d %H:%M")),
                (t["category"], self.label(ix.get("topic", ""), lang))]
        body = "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows) + "</dl>"
        return _page(lang, t["status"], body)


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


def _status_url(ref: str, lang: str = "") -> str:
    return f"/status/{ref}" + (f"?lang={lang}" if lang else "")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(lang: str, title: str, body: str, *, status: int = 200) -> web.Response:
    """A whole page; `body` is markup already escaped by the caller."""
    text = (
        f'<!doctype html><html lang="{_e(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40rem;margin:1rem auto;padding:0 1rem}"
        "label{display:block;margin:.8rem 0}input,select,textarea{display:block;width:100%}"
        "</style></head>"
        f"<body><h1>{_e(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": "default-src 'self'; "
                                 "style-src 'unsafe-inline'; frame-ancestors 'none'",
                                 "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer"})
