"""Cases over the API: made from an interaction, worked by the unit, looked up by number.

| who                               | may                                                     |
|-----------------------------------|---------------------------------------------------------|
| agent holding the interaction     | make a case of it; link it to an open case (duplicate)  |
| any agent                         | look for likely duplicates (category and place)         |
| members of the case's unit        | read it, list the unit's open cases, change its status, |
|                                   | hand it to another unit, add a photo                    |
| agent holding its interaction     | read it, see its photos                                 |
| supervisor, admin                 | all of it, for every unit                               |
| anyone                            | the public view by number (no personal data)            |
"""

from __future__ import annotations

import logging

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from router.cases import Actor, CaseInput
from router.errors import Forbidden, NotFound
from router.http.api.intake import readable_interaction
from router.http.api.schemas_cases import (
    CaseCreated,
    CaseCreateRequest,
    CaseLinked,
    CaseLinkRequest,
    CaseList,
    CaseResident,
    CaseStatusChanged,
    CaseStatusRequest,
    CaseUnitRequest,
    CaseView,
    DuplicateCandidate,
    DuplicateList,
    DuplicateQuery,
    NoticeResult,
    PhotoAdded,
    PublicCase,
)
from router.http.api.table import Call
from router.http.api.validation import ApiError, validation_details

logger = logging.getLogger(__name__)

# A photo is served as an image and nothing else: never sniffed into HTML by a browser, no
# script, no plugin, no loads of its own even when opened directly (an SVG or a polyglot file
# could carry script; we serve only sniffed JPEG/PNG/WebP/GIF, and this is the second fence).
# `private`: it may show a resident, a plate, a home: a browser may keep it, a shared cache not.
PHOTO_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Disposition": "inline",
    "Cache-Control": "private, max-age=300",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PHOTO_FIELD = "photo"  # the multipart field of an upload
_NOTE_MAX = 2000


async def _view(call: Call, case: dict[str, str]) -> CaseView:
    cases = call.service.cases
    view = CaseView.build(case, await cases.history(case), await call.service.store.now_ms())
    view.residents = [CaseResident(ix=s.ix, channel=s.channel, told_by=s.via,
                                   declined=bool(s.declined))
                      for s in await cases.subscribers(case)]
    return view


async def create_case(call: Call) -> CaseCreated:
    body: CaseCreateRequest = call.body
    ix = await readable_interaction(call.service, call.user, call.param("ix_id"))
    cases = call.service.cases
    data = CaseInput(category=body.category, description=body.description,
                     address=body.address, lat=body.lat, lon=body.lon, contact=body.contact,
                     note=body.note, notify=body.notify)
    # the likely duplicates are looked up before the new case exists, so it is not its own
    category = body.category or ix.get("topic", "")
    done = await cases.create_from_interaction(ix, data, Actor.of(call.user),
                                               with_photos=body.photos)
    case = await cases.get(done.number)
    located = CaseView.build(case)
    found = await cases.find_duplicates(category, located.lat, located.lon, exclude=done.id)
    return CaseCreated(case=await _view(call, case),
                       duplicates=[DuplicateCandidate.build(c) for c in found])


async def link_case(call: Call) -> CaseLinked:
    body: CaseLinkRequest = call.body
    ix = await readable_interaction(call.service, call.user, call.param("ix_id"))
    case, linked = await call.service.cases.link(ix, body.case_number, Actor.of(call.user),
                                                 contact=body.contact, notify=body.notify)
    return CaseLinked(case=await _view(call, case), linked=linked)


async def find_duplicates(call: Call) -> DuplicateList:
    try:
        q = DuplicateQuery.model_validate(dict(call.request.query))
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "give category, lat and lon",
                       details=validation_details(exc)) from None
    found = await call.service.cases.find_duplicates(q.category, q.lat, q.lon)
    return DuplicateList(duplicates=[DuplicateCandidate.build(c) for c in found])


async def _readable_case(call: Call) -> dict[str, str]:
    """The case of the path, if the caller may read it: members of its unit, supervisors,
    admins, and the agent holding the interaction it was made from (403 for others)."""
    cases = call.service.cases
    case = await cases.get(call.param("number"))
    actor = Actor.of(call.user)
    if not cases.may_work(actor, case["unit"]):
        holder = ""
        if case.get("ix"):
            holder = (await call.service.store.interaction(case["ix"])).get("agent", "")
        if not (holder and holder == actor.agent_id):
            raise Forbidden("only the case's unit, the agent holding its interaction and "
                            "supervisors may read it")
    return case


async def get_case(call: Call) -> CaseView:
    return await _view(call, await _readable_case(call))


async def case_photo(call: Call) -> web.StreamResponse:
    raw = call.param("index")
    if not raw.isdigit() or len(raw) > 4:
        raise NotFound(f"no photo {raw}", code="unknown_photo")
    case = await _readable_case(call)
    photo = await call.service.cases.photo(case, int(raw))
    return web.Response(body=photo.data, content_type=photo.content_type,
                        headers=PHOTO_HEADERS)


async def _read_upload(request: web.Request, limit: int) -> tuple[bytes, str]:
    """The file of field `photo` (at most limit + 1 bytes are read: one more tells it is too
    large) and the optional `note` of a multipart/form-data body."""
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       f"send the photo as multipart/form-data, field {PHOTO_FIELD!r} "
                       f"(got {request.content_type or 'no content type'})")
    data: bytes | None = None
    note = ""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue  # a nested multipart: not ours
            if part.name == PHOTO_FIELD and data is None:
                buf = bytearray()
                while chunk := await part.read_chunk(64 * 1024):
                    buf += chunk
                    if len(buf) > limit:
                        break  # enough to refuse it; the rest is never read into memory
                data = bytes(buf[: limit + 1])
                if len(buf) > limit:
                    break
            elif part.name == "note":
                note = (await part.text())[:_NOTE_MAX].strip()
    except (ValueError, AssertionError) as exc:  # aiohttp's answers to a broken multipart
        logger.warning("cases: photo upload to %s refused: malformed multipart (%s)",
                       request.path, exc)
        raise ApiError(400, "bad_request", f"the multipart body is malformed: {exc}") from None
    if not data:
        raise ApiError(422, "validation_error", f"give the photo in field {PHOTO_FIELD!r}")
    return data, note


async def add_case_photo(call: Call) -> PhotoAdded:
    cases = call.service.cases
    case = await cases.get(call.param("number"))
    actor = Actor.of(call.user)
    if not cases.may_work(actor, case["unit"]):  # before reading megabytes of body
        raise Forbidden(f"only members of unit {case['unit']} (or supervisors) may add photos")
    data, note = await _read_upload(call.request, cases.max_photo_bytes)
    after, index = await cases.add_photo(case["number"], data, actor, note=note)
    return PhotoAdded(case=await _view(call, after), index=index)


async def unit_cases(call: Call) -> CaseList:
    unit = call.param("unit")
    found = await call.service.cases.for_unit(unit, Actor.of(call.user))
    now = await call.service.store.now_ms()
    return CaseList(unit=unit, cases=[CaseView.build(c, None, now) for c in found])


async def set_case_status(call: Call) -> CaseStatusChanged:
    body: CaseStatusRequest = call.body
    out = await call.service.cases.set_status(
        call.param("number"), body.status, Actor.of(call.user), note=body.note,
        public_note=body.public_note, duplicate_of=body.duplicate_of)
    return CaseStatusChanged(case=await _view(call, out["case"]),
                             notices=[NoticeResult(**n) for n in out["notices"]])


async def set_case_unit(call: Call) -> CaseView:
    body: CaseUnitRequest = call.body
    case = await call.service.cases.set_unit(call.param("number"), body.unit,
                                             Actor.of(call.user), note=body.note,
                                             public_note=body.public_note)
    return await _view(call, case)


async def public_case(call: Call) -> PublicCase:
    lang = call.service.cfg.city.language(call.request.query.get("lang"))
    return PublicCase.model_validate(await call.service.cases.public_view(call.param("number"),
                                                                          lang))
