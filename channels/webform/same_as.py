""""That's mine": a web-form resident joins one of the likely duplicates shown to them.

The thank-you page lists open cases of the same category near the reported place (and the JSON
answer's `likely_duplicates`); next to each, a button posts the request's reference, its private
status key and the case number back here:

    POST /status/<ref>/same-as?lang=..          form fields csrf_token, key, case_number (HTML)
    POST /api/v1/requests/<ref>/same-as         JSON {"key", "case_number"} (API clients that
                                                used POST /api/v1/requests and hold the key)

Checked in this order (the adapter's `same_as`): the per-IP rate (a link counts like a
submission), the CSRF token (HTML only), the request exists (404), the key opens it (403,
compared in constant time like the status page), the case is one the request's own category and
place list as a likely duplicate right now (`CaseService.find_duplicates` with the interaction's
topic and lat/lon; 409 `not_a_likely_duplicate` otherwise: a resident must not attach themselves
to arbitrary cases), then `CaseService.link` acting as `resident:<ref>` (role intake). A request
already part of that very case is answered as such (linking twice changes nothing). The
interaction stays in its queue for an agent, who then sees it has a case.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SAME_AS_PATH = "/status/{ref}/same-as"
API_SAME_AS_PATH = "/api/v1/requests/{ref}/same-as"


class SameAsRequest(BaseModel):
    """The JSON body of POST /api/v1/requests/{ref}/same-as."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    key: str = Field(min_length=1, max_length=64,
                     description="the request's private status key (from its status_url)")
    case_number: str = Field(min_length=1, max_length=32,
                             description="one of the request's likely_duplicates, e.g. "
                             "Z-2026-000123")


TEXTS: dict[str, dict[str, str]] = {
    "pl": {
        "same_as": "To ten sam problem – powiadom mnie o jego załatwieniu",
        "same_as_done": "Zgłoszenie dołączono do sprawy",
        "same_as_linked": "Twoje zgłoszenie {ref} jest teraz częścią sprawy {number}. "
                          "Powiadomimy Cię, gdy zostanie załatwiona.",
        "same_as_already": "Twoje zgłoszenie {ref} już jest częścią sprawy {number}.",
        "same_as_case": "Stan sprawy",
        "same_as_error": "Nie udało się dołączyć zgłoszenia do sprawy",
    },
    "en": {
        "same_as": "This is the same problem: tell me when it is dealt with",
        "same_as_done": "Your request was added to the case",
        "same_as_linked": "Your request {ref} is now part of case {number}. We will tell you "
                          "when it is dealt with.",
        "same_as_already": "Your request {ref} is already part of case {number}.",
        "same_as_case": "Status of the case",
        "same_as_error": "The request could not be added to the case",
    },
    "uk": {
        "same_as": "Це та сама проблема – повідомте мене, коли її вирішать",
        "same_as_done": "Звернення додано до справи",
        "same_as_linked": "Ваше звернення {ref} тепер є частиною справи {number}. Ми "
                          "повідомимо вас, коли її вирішать.",
        "same_as_already": "Ваше звернення {ref} вже є частиною справи {number}.",
        "same_as_case": "Стан справи",
        "same_as_error": "Не вдалося додати звернення до справи",
    },
}
