"""Cases over the API: made from an interaction, worked by the unit, looked up by number.

| who                               | may                                                     |
|-----------------------------------|---------------------------------------------------------|
| agent holding the interaction     | make a case of it; link it to an open case (duplicate)  |
| any agent                         | look for likely duplicates (category and place)         |
| members of the case's unit        | read it, list the unit's open cases, change its status, |
|                                   | hand it to another unit                                 |
| agent holding its interaction     | read it                                                 |
| supervisor, admin                 | all of it, for every unit                               |
| anyone                            | the public view by number (no personal data)            |
"""

from __future__ import annotations

from pydantic import ValidationError

from router.cases import Actor, CaseInput
from router.errors import Forbidden
from router.http.api.intake import readable_interaction
from router.http.api.schemas_cases import (
    CaseCreated,
    CaseCreateRequest,
    CaseLinked,
    CaseLinkRequest,
    CaseList,
    CaseStatusChanged,
    CaseStatusRequest,
    CaseUnitRequest,
    CaseView,
    DuplicateCandidate,
    DuplicateList,
    DuplicateQuery,
    NoticeResult,
    PublicCase,
)
from router.http.api.table import Call
from router.http.api.validation import ApiError, validation_details


async def _view(call: Call, case: dict[str, str]) -> CaseView:
    history = await call.service.cases.history(case)
    return CaseView.build(case, history, await call.service.store.now_ms())


async def create_case(call: Call) -> CaseCreated:
    body: CaseCreateRequest = call.body
    ix = await readable_interaction(call.service, call.user, call.param("ix_id"))
    cases = call.service.cases
    data = CaseInput(category=body.category, description=body.description,
                     address=body.address, lat=body.lat, lon=body.lon, contact=body.contact,
                     note=body.note)
    # the likely duplicates are looked up before the new case exists, so it is not its own
    category = body.category or ix.get("topic", "")
    done = await cases.create_from_interaction(ix, data, Actor.of(call.user))
    case = await cases.get(done.number)
    located = CaseView.build(case)
    found = await cases.find_duplicates(category, located.lat, located.lon, exclude=done.id)
    return CaseCreated(case=await _view(call, case),
                       duplicates=[DuplicateCandidate.build(c) for c in found])


async def link_case(call: Call) -> CaseLinked:
    body: CaseLinkRequest = call.body
    ix = await readable_interaction(call.service, call.user, call.param("ix_id"))
    case, linked = await call.service.cases.link(ix, body.case_number, Actor.of(call.user),
                                                 contact=body.contact)
    return CaseLinked(case=await _view(call, case), linked=linked)


async def find_duplicates(call: Call) -> DuplicateList:
    try:
        q = DuplicateQuery.model_validate(dict(call.request.query))
    except ValidationError as exc:
        raise ApiError(422, "validation_error", "give category, lat and lon",
                       details=validation_details(exc)) from None
    found = await call.service.cases.find_duplicates(q.category, q.lat, q.lon)
    return DuplicateList(duplicates=[DuplicateCandidate.build(c) for c in found])


async def get_case(call: Call) -> CaseView:
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
    return await _view(call, case)


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
    lang = call.request.query.get("lang", "")
    cfg = call.service.cfg
    if lang not in cfg.city.languages:
        lang = cfg.city.default_language
    return PublicCase.model_validate(await call.service.cases.public_view(call.param("number"),
                                                                          lang))
