"""What a resident may send through the web form, checked before anything is stored.

Everything the resident writes is kept as plain text and only ever rendered escaped (see the
adapter's pages): a `<script>` in a description stays the eight characters it is. The photo is
recognised by its first bytes, never by the type or name the browser declares.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from router.case_photos import EXTENSIONS, HEAD_BYTES, sniff
from router.identity import contact_of

MAX_DESCRIPTION = 5000
MAX_ADDRESS = 300
MAX_CONTACT = 320

# C0 controls other than tab/newline/carriage return, DEL, and the C1 block: never in a form
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def sniff_photo(data: bytes, allowed: list[str]) -> str | None:
    """The kind (jpeg/png/webp) of `data` by its magic bytes (the cases' own sniffing, so a
    form photo is a case photo), if it is one of `allowed`."""
    content_type = sniff(data[:HEAD_BYTES])
    kind = content_type.split("/", 1)[1] if content_type else None
    return kind if kind in allowed else None


def photo_extension(kind: str) -> str:
    return EXTENSIONS[f"image/{kind}"]


class WebformRequest(BaseModel):
    """One request of a resident, from the HTML form or as JSON at /api/v1/requests.

    Validation context: `categories` (the skill ids a resident may choose), `languages` (the
    city's) and `region` (the default country of phone numbers).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    category: str = Field(min_length=1, max_length=64, description="a skill id of the catalogue")
    description: str = Field(min_length=1, max_length=MAX_DESCRIPTION)
    address: str | None = Field(None, max_length=MAX_ADDRESS)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    contact: str = Field(min_length=3, max_length=MAX_CONTACT,
                         description="e-mail or phone: where the agent's answer is sent")
    phone: str | None = Field(None, max_length=MAX_CONTACT,
                              description="optional further phone number (for SMS)")
    language: str | None = Field(None, max_length=8)
    consent: bool = Field(False, description="remember the resident so agents can see their "
                          "earlier contacts with the city")

    @field_validator("address", "lat", "lon", "language", "phone", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # an HTML form sends every input, empty ones as ""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("consent", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return False if value is None or value == "" else value

    @field_validator("description", "address", "contact", "phone", "category")
    @classmethod
    def _no_controls(cls, value: str | None) -> str | None:
        if value is not None and CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value

    @field_validator("lat", "lon")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and value != value:  # NaN passes ge/le
            raise ValueError("must be a number")
        return value

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str, info: ValidationInfo) -> str:
        categories = (info.context or {}).get("categories")
        if categories is not None and value not in categories:
            raise ValueError("unknown category")
        return value

    @field_validator("language")
    @classmethod
    def _served_language(cls, value: str | None, info: ValidationInfo) -> str | None:
        languages = (info.context or {}).get("languages")
        if value is not None and languages is not None and value not in languages:
            raise ValueError("language not served")
        return value

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: str, info: ValidationInfo) -> str:
        return contact_of(value, (info.context or {}).get("region", "PL"))

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "@" in value:
            raise ValueError("give a phone number here")
        return contact_of(value, (info.context or {}).get("region", "PL"))

    @property
    def contacts(self) -> list[str]:
        """Further ways to reach the resident than `contact` (the optional phone)."""
        return [self.phone] if self.phone and self.phone != self.contact else []

    @model_validator(mode="after")
    def _both_coordinates(self) -> WebformRequest:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class CsrfTokens:
    """Tokens `<timestamp>.<nonce>.<hex HMAC-SHA256 of "timestamp.nonce">`, valid `max_age_s`.

    Stateless: any process holding the same secret verifies them. A token may be submitted more
    than once within its age (a resident pressing Back and sending again); what stops a forged
    cross-site post is that another site cannot read a token from our page.
    """

    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self.secret = secret
        self.max_age_s = max_age_s

    def _mac(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        stamp = int(time.time() if now is None else now)
        payload = f"{stamp}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._mac(payload)}"

    def check(self, token: str | None, now: float | None = None) -> str | None:
        """None if the token is good, else why not (missing, forged, expired)."""
        if not token:
            return "missing"
        parts = token.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return "forged"
        payload = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(payload), parts[2]):
            return "forged"
        age = (time.time() if now is None else now) - int(parts[0])
        if age > self.max_age_s or age < -60:
            return "expired"
        return None
