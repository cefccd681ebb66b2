"""Request and response bodies of the case endpoints (/api/v1/cases..., /units/.../cases).

Staff views (`CaseView`) carry everything the unit needs except the residents' contacts, which
stay with the interactions (an agent reads them there, under the interaction's own rules).
The public view (`PublicCase`) carries nothing personal at all: no description (residents write
names and phone numbers into it), no contacts, no internal notes, coordinates rounded to ~100 m.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from router.cases import NUMBER_PATTERN
from router.hash_fields import as_float, as_int

CaseStatus = Literal["open", "assigned", "in_progress", "completed", "rejected", "duplicate"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)




# --- requests -------------------------------------------------------------------------------


class CaseCreateRequest(_Request):
    category: str = Field(
        "", max_length=64,
        description="intervention skill id; empty: the interaction's topic (a web form's "
        "category)",
    )
    description: str = Field("", max_length=5000, description="empty: the interaction's text")
    address: str = Field("", max_length=300, description="empty: the address of a web form")
    lat: float | None = Field(None, ge=-85.05, le=85.05, description="WGS84 latitude")
    lon: float | None = Field(None, ge=-180, le=180, description="WGS84 longitude")
    contact: str = Field(
        "", max_length=320,
        description="e-mail or phone the resident gave for the outcome; overrides the channel "
        "(a web-chat resident is otherwise told in the chat while it lasts)",
    )
    notify: bool = Field(
        True,
        description="the resident agrees to be told of the outcome (on their channel, or at "
        "`contact`); false: no way to reach them is kept with the case, they have the number "
        "and the public status page",
    )
    note: str = Field("", max_length=2000, description="internal note for the unit")
    photos: bool = Field(
        True,
        description="take the interaction's photos (the web form's photo, the e-mail's "
        "attachments that are images); false: the case gets none",
    )


class CaseLinkRequest(_Request):
    case_number: str = Field(pattern=NUMBER_PATTERN, description="the open case it duplicates")
    contact: str = Field("", max_length=320, description="as for creating a case")
    notify: bool = Field(True, description="as for creating a case")


class CaseStatusRequest(_Request):
    status: CaseStatus
    note: str = Field("", max_length=2000, description="internal note (staff only)")
    public_note: str = Field(
        "", max_length=1000,
        description="note for the resident: in the notice and on the public status page",
    )
    duplicate_of: str = Field(
        "", max_length=32, description="with status duplicate: the number of the open case "
        "it repeats (its residents are told of that case's outcome)",
    )


class CaseUnitRequest(_Request):
    unit: str = Field(min_length=1, max_length=48)
    note: str = Field("", max_length=2000)
    public_note: str = Field("", max_length=1000)


class DuplicateQuery(_Request):
    """The query string of GET /cases/duplicates."""

    category: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-85.05, le=85.05)
    lon: float = Field(ge=-180, le=180)


# --- staff views ----------------------------------------------------------------------------


class CaseHistoryEntry(BaseModel):
    status: str
    time_ms: int
    by: str
    unit: str
    note: str
    public_note: str
    duplicate_of: str = ""
    action: str = Field("", description="photo: a photo was added (the status is unchanged)")


# The API path of a case's photo (router.http.api.routes): what the desktop's <img> loads.
PHOTO_PATH = "/api/v1/cases/{number}/photos/{index}"


class CaseMedia(BaseModel):
    """One of the case's photos: a file the API serves, or an external link (an Open311
    media_url, never fetched by the server: staff open it in their own browser)."""

    index: int
    kind: Literal["photo", "link"]
    url: str = Field(description="photo: GET it with the session (same origin); link: the "
                     "external URL as the client gave it")


def _media(number: str, refs: list[str]) -> list[CaseMedia]:
    out = []
    for i, ref in enumerate(refs):
        if ref.startswith(("http://", "https://")):
            out.append(CaseMedia(index=i, kind="link", url=ref))
        else:
            out.append(CaseMedia(index=i, kind="photo",
                                 url=PHOTO_PATH.format(number=number, index=i)))
    return out


class CaseResident(BaseModel):
    """A resident who is to hear of the case's outcome: how, never their address."""

    ix: str = Field(description="the interaction they reported it by (empty: Open311, staff)")
    channel: str = Field(description="the channel they used")
    told_by: str = Field(description="email, sms, telegram, chat, or empty (no way to reach "
                         "them: the public status page only)")
    declined: bool = Field(description="they did not want to be told")


class CaseView(BaseModel):
    id: str
    number: str
    category: str
    unit: str
    status: CaseStatus
    assignee: str = Field(description="agent who took it, or empty")
    description: str
    address: str
    lat: float | None
    lon: float | None
    photos: list[str] = Field(
        description="photo references: files under data_dir/uploads or data_dir/attachments, "
        "or external links (see media)")
    media: list[CaseMedia] = Field(
        default_factory=list, description="the photos, each with the URL to show it by")
    created_ms: int
    due_ms: int
    updated_ms: int
    closed_ms: int
    overdue: bool = Field(description="open past its due date (at the time of reading)")
    ix: str = Field(description="the interaction it was made from")
    channel: str
    language: str
    reports: int = Field(description="reports of it: 1 + linked duplicates")
    duplicate_of: str
    history: list[CaseHistoryEntry] = Field(default_factory=list)
    residents: list[CaseResident] = Field(
        default_factory=list, description="who is told of the outcome, and how (no contacts)")

    @classmethod
    def build(cls, case: Mapping[str, str], history: list[dict[str, Any]] | None = None,
              now_ms: int = 0) -> CaseView:
        try:
            photos = [str(p) for p in json.loads(case.get("photos") or "[]")]
        except (TypeError, ValueError):
            photos = []
        status = case.get("status", "open")
        return cls(
            id=case.get("id", ""), number=case.get("number", ""),
            category=case.get("category", ""), unit=case.get("unit", ""),
            status=status,  # type: ignore[arg-type]
            assignee=case.get("assignee", ""), description=case.get("description", ""),
            address=case.get("address", ""), lat=as_float(case.get("lat")),
            lon=as_float(case.get("lon")), photos=photos,
            media=_media(case.get("number", ""), photos), created_ms=as_int(case.get("created_ms")),
            due_ms=as_int(case.get("due_ms")), updated_ms=as_int(case.get("updated_ms")),
            closed_ms=as_int(case.get("closed_ms")),
            overdue=bool(now_ms and status not in ("completed", "rejected", "duplicate")
                         and as_int(case.get("due_ms")) < now_ms),
            ix=case.get("ix", ""), channel=case.get("channel", ""),
            language=case.get("language", ""), reports=as_int(case.get("reports")),
            duplicate_of=case.get("duplicate_of", ""),
            history=[CaseHistoryEntry(
                status=str(h.get("status", "")), time_ms=as_int(h.get("t")),
                by=str(h.get("by", "")), unit=str(h.get("unit", "")),
                note=str(h.get("note", "")), public_note=str(h.get("public_note", "")),
                duplicate_of=str(h.get("duplicate_of", "")),
                action=str(h.get("action", ""))) for h in history or []],
        )  # fmt: skip


class PhotoAdded(BaseModel):
    case: CaseView
    index: int = Field(description="the new photo's index (GET /cases/{number}/photos/{index})")


class DuplicateCandidate(BaseModel):
    number: str
    category: str
    status: CaseStatus
    address: str
    distance_m: float
    created_ms: int
    reports: int

    @classmethod
    def build(cls, case: Mapping[str, Any]) -> DuplicateCandidate:
        return cls(number=str(case.get("number", "")), category=str(case.get("category", "")),
                   status=case.get("status", "open"), address=str(case.get("address", "")),
                   distance_m=float(case.get("distance_m") or 0),
                   created_ms=as_int(case.get("created_ms")), reports=as_int(case.get("reports")))


class CaseCreated(BaseModel):
    case: CaseView
    duplicates: list[DuplicateCandidate] = Field(
        description="other open cases of the category near it, reported within the window: "
        "likely the same problem (link the interaction to one instead, if so)")


class CaseLinked(BaseModel):
    case: CaseView
    linked: bool = Field(description="false: it was linked before")


class NoticeResult(BaseModel):
    ix: str
    via: str = Field(description="email, sms, telegram, chat (posted into the live web chat), "
                     "or empty (no way to reach them)")
    result: Literal["queued", "already", "no_channel", "channel_off", "declined"]


class CaseStatusChanged(BaseModel):
    case: CaseView
    notices: list[NoticeResult] = Field(
        description="the notices queued for the residents (completed, rejected by default); "
        "their delivery shows in each interaction's messages (item case:<number>:<status>)")


class CaseList(BaseModel):
    unit: str
    cases: list[CaseView]


class DuplicateList(BaseModel):
    duplicates: list[DuplicateCandidate]


# --- the public view ------------------------------------------------------------------------


class PublicHistoryEntry(BaseModel):
    status: CaseStatus
    time_ms: int
    note: str = Field(description="the note meant for residents, if any")


class PublicCase(BaseModel):
    """What anyone who knows the number sees: nothing about who reported it."""

    number: str
    category: str
    category_label: str
    unit_label: str
    status: CaseStatus
    address: str
    lat: float | None = Field(description="rounded to 3 decimals (~100 m)")
    lon: float | None = Field(description="rounded to 3 decimals (~100 m)")
    created_ms: int
    due_ms: int
    closed_ms: int | None
    duplicate_of: str | None
    history: list[PublicHistoryEntry]
