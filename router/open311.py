"""Open311 GeoReport v2 over cases: the mapping, the validation and the two formats.

Existing 311 apps and FixMyStreet-style clients report into cityline through
`router.http.open311_routes` (/open311/v2/...). A *service* is an intervention category (the
skill id is its `service_code`); a *service request* is a case (its number is the
`service_request_id`). What a GET answers is what the public case page shows and nothing more:
case numbers are sequential, so anyone can read any request. Never the description (residents
write names, phone numbers and door codes into it), never the reporter's name or contact; the
place rounded to ~100 m (`router.cases.PUBLIC_DECIMALS`).

Both formats come from the same dicts: JSON as is, XML through `xml.etree.ElementTree` (which
escapes text), a list of dicts becoming `<root><item>...</item>...</root>`.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from queues.cases import FINAL_STATUSES
from router.cases import PUBLIC_DECIMALS
from router.config import CitylineConfig
from router.hash_fields import as_float
from router.identity import contact_of

FORMATS = ("json", "xml")
MAX_DESCRIPTION = 4000  # GeoReport v2: description is "up to 4,000 characters"
MAX_ADDRESS = 300  # what a case keeps (router.cases)
MAX_MEDIA_URL = 500
MAX_LIST = 1000
DEFAULT_DAYS = 90
CLOSED = FINAL_STATUSES  # completed, rejected, duplicate -> closed; the rest -> open
_URL = re.compile(r"^https?://[^\s/]+[^\s]*$")


class Open311Error(Exception):
    """An answer in the GeoReport error format, with its HTTP status."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


# --- formats ------------------------------------------------------------------------------

def _xml_value(parent: ET.Element, key: str, value: Any) -> None:
    el = ET.SubElement(parent, key)
    if value is None:
        return
    if isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, list):
        for item in value:
            child = ET.SubElement(el, "item")
            child.text = str(item)
    else:
        el.text = str(value)


def render(data: list[dict[str, Any]], fmt: str, root: str, item: str) -> tuple[str, str]:
    """(body, content type) of `data` in `fmt` ("json": the list; "xml": <root><item>)."""
    if fmt == "xml":
        top = ET.Element(root)
        for row in data:
            el = ET.SubElement(top, item)
            for key, value in row.items():
                _xml_value(el, key, value)
        body = ET.tostring(top, encoding="unicode")
        return '<?xml version="1.0" encoding="utf-8"?>\n' + body, "text/xml"
    return json.dumps(data, ensure_ascii=False), "application/json"


def render_error(status: int, description: str, fmt: str) -> tuple[str, str]:
    return render([{"code": status, "description": description}], fmt, "errors", "error")


def render_definition(code: str, fmt: str) -> tuple[str, str]:
    """The service definition: cityline asks no extra questions (attributes: [])."""
    if fmt == "xml":
        top = ET.Element("service_definition")
        ET.SubElement(top, "service_code").text = code
        ET.SubElement(top, "attributes")
        body = ET.tostring(top, encoding="unicode")
        return '<?xml version="1.0" encoding="utf-8"?>\n' + body, "text/xml"
    return json.dumps({"service_code": code, "attributes": []}), "application/json"


# --- discovery ----------------------------------------------------------------------------

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
FORMAT_TYPES = ("text/xml", "application/json")


def discovery(cfg: CitylineConfig, base_url: str, changeset: str) -> dict[str, Any]:
    """What a client reads first (Open311 Service Discovery): one production GeoReport v2
    endpoint, its formats, and where to ask for an api_key. `changeset`: when the service
    list last changed (the process's start; the catalogue changes with a restart or an
    admin's change)."""
    contact = next(iter(cfg.channels.email.addresses), "") if cfg.channels.email.enabled else ""
    return {
        "changeset": changeset,
        "contact": f"{cfg.city.name}" + (f" <{contact}>" if contact else ""),
        "key_service": "api_key: an API token of an intake user, made by the city's "
                       "administrator (cityline token create USER)",
        "endpoints": [{"specification": SPECIFICATION, "url": base_url.rstrip("/") + "/v2",
                       "changeset": changeset, "type": "production",
                       "formats": list(FORMAT_TYPES)}],
    }


def render_discovery(data: dict[str, Any], fmt: str) -> tuple[str, str]:
    if fmt != "xml":
        return json.dumps(data, ensure_ascii=False), "application/json"
    top = ET.Element("discovery")
    for key in ("changeset", "contact", "key_service"):
        ET.SubElement(top, key).text = str(data[key])
    endpoints = ET.SubElement(top, "endpoints")
    for ep in data["endpoints"]:
        el = ET.SubElement(endpoints, "endpoint")
        for key in ("specification", "url", "changeset", "type"):
            ET.SubElement(el, key).text = str(ep[key])
        formats = ET.SubElement(el, "formats")
        for f in ep["formats"]:
            ET.SubElement(formats, "format").text = f
    body = ET.tostring(top, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body, "text/xml"


# --- services -----------------------------------------------------------------------------

def _label(labels: dict[str, str], lang: str, default_lang: str, fallback: str) -> str:
    return labels.get(lang) or labels.get(default_lang) or fallback


def service_codes(cfg: CitylineConfig) -> list[str]:
    """Intervention categories a case can be made of (none while cases are off)."""
    if not cfg.cases.enabled:
        return []
    return [name for name, skill in cfg.skills.items()
            if skill is not None and skill.kind == "intervention"
            and cfg.cases.rule(name) is not None]


def services(cfg: CitylineConfig, lang: str) -> list[dict[str, Any]]:
    out = []
    dl = cfg.city.default_language
    for code in service_codes(cfg):
        skill = cfg.skills[code]
        rule = cfg.cases.rule(code)
        assert rule is not None and skill is not None
        unit = cfg.cases.units.get(rule.unit)
        unit_label = _label(unit.labels, lang, dl, rule.unit) if unit else rule.unit
        name = _label(skill.labels, lang, dl, code)
        others = [v for k, v in sorted(skill.labels.items()) if v and v != name]
        out.append({
            "service_code": code,
            "service_name": name,
            "description": f"{name} ({unit_label})",
            "metadata": False,
            "type": "realtime",
            "keywords": ", ".join([code, *others]),
            "group": unit_label,
        })
    return out


# --- a new request ------------------------------------------------------------------------

@dataclass(frozen=True)
class NewRequest:
    service_code: str
    lat: float | None
    lon: float | None
    address: str
    description: str
    contact: str  # normalised e-mail address or E.164 number; "" none
    media_url: str
    language: str


def _coordinate(form: dict[str, str], key: str, limit: float) -> float:
    raw = form.get(key, "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise Open311Error(400, f"{key} must be a number") from None
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise Open311Error(400, f"{key} out of range (-{limit:g} to {limit:g})")
    return value


def parse_request(cfg: CitylineConfig, form: dict[str, str]) -> NewRequest:
    """Check a POSTed service request (its api_key is the caller's business). Names
    (first_name, last_name), attribute[...], device_id and account_id are accepted and not
    kept: a case needs none of them, and what is not kept cannot leak."""
    code = form.get("service_code", "").strip()
    if not code:
        raise Open311Error(400, "service_code is required")
    if code not in service_codes(cfg):
        raise Open311Error(400, f"unknown service_code {code!r}")
    lat = lon = None
    if form.get("lat", "").strip() or form.get("long", "").strip():
        if not (form.get("lat", "").strip() and form.get("long", "").strip()):
            raise Open311Error(400, "give both lat and long")
        lat = _coordinate(form, "lat", 90)
        lon = _coordinate(form, "long", 180)
    address = form.get("address_string", "").strip()
    if lat is None and not address:
        raise Open311Error(400, "a location is required: lat and long, or address_string")
    if len(address) > MAX_ADDRESS:
        raise Open311Error(400, f"address_string is longer than {MAX_ADDRESS} characters")
    description = form.get("description", "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise Open311Error(400, f"description is longer than {MAX_DESCRIPTION} characters")
    region = cfg.city.country
    contacts = []
    for key in ("email", "phone"):
        raw = form.get(key, "").strip()
        if not raw:
            continue
        if key == "email" and "@" not in raw:
            raise Open311Error(400, "email: not a valid e-mail address")
        if key == "phone" and "@" in raw:
            raise Open311Error(400, "phone: not a valid phone number")
        try:
            contacts.append(contact_of(raw, region))
        except ValueError as exc:
            raise Open311Error(400, f"{key}: {exc}") from None
    media = form.get("media_url", "").strip()
    if media and (len(media) > MAX_MEDIA_URL or not _URL.match(media)):
        raise Open311Error(400, "media_url must be an http(s) URL")
    return NewRequest(service_code=code, lat=lat, lon=lon, address=address,
                      description=description, contact=contacts[0] if contacts else "",
                      media_url=media, language=cfg.city.language(form.get("lang")))


def created_response(number: str, notice: str) -> list[dict[str, Any]]:
    return [{"service_request_id": number, "service_notice": notice, "account_id": None}]


# --- reading requests ---------------------------------------------------------------------

def iso(ms: int | str | None, tz: ZoneInfo) -> str | None:
    """W3C datetime with the city's offset (2026-11-28T02:05:00+01:00); None for none."""
    value = int(ms or 0)
    if not value:
        return None
    return datetime.fromtimestamp(value / 1000, tz).isoformat(timespec="seconds")


def parse_datetime(raw: str, key: str, tz: ZoneInfo) -> int:
    """ms of a W3C datetime (a date or a time without offset: the city's time)."""
    try:
        when = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{key} must be a W3C datetime "
                                "(e.g. 2026-11-28T02:05:00+01:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return int(when.timestamp() * 1000)


def status_of(case_status: str) -> str:
    return "closed" if case_status in CLOSED else "open"


def request_view(case: dict[str, str], history: list[dict[str, Any]], cfg: CitylineConfig,
                 lang: str) -> dict[str, Any]:
    """One service request as anyone may see it: the public page's fields, in GeoReport's
    names. `description` is always "" (see the module's docstring)."""
    tz = cfg.city.tzinfo()
    dl = cfg.city.default_language
    code = case.get("category", "")
    skill = cfg.skills.get(code)
    unit = cfg.cases.units.get(case.get("unit", ""))
    notes = [str(h.get("public_note") or "") for h in history if h.get("public_note")]
    lat, lon = as_float(case.get("lat")), as_float(case.get("lon"))
    media = ""
    try:
        photos = json.loads(case.get("photos") or "[]")
    except ValueError:
        photos = []
    for photo in photos:  # only what a client gave as a URL; uploads are not served
        if isinstance(photo, str) and _URL.match(photo):
            media = photo
            break
    notice = ""
    if case.get("duplicate_of"):
        notice = f"duplicate of {case['duplicate_of']}"
    return {
        "service_request_id": case.get("number", ""),
        "status": status_of(case.get("status", "")),
        "status_notes": notes[-1] if notes else "",
        "service_name": _label(skill.labels, lang, dl, code) if skill else code,
        "service_code": code,
        "description": "",
        "agency_responsible": (_label(unit.labels, lang, dl, case.get("unit", "")) if unit
                               else case.get("unit", "")),
        "service_notice": notice,
        "requested_datetime": iso(case.get("created_ms"), tz),
        "updated_datetime": iso(case.get("updated_ms") or case.get("created_ms"), tz),
        "expected_datetime": iso(case.get("due_ms"), tz),
        "address": case.get("address", ""),
        "address_id": None,
        "zipcode": None,
        "lat": None if lat is None else round(lat, PUBLIC_DECIMALS),
        "long": None if lon is None else round(lon, PUBLIC_DECIMALS),
        "media_url": media,
    }
