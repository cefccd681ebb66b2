"""Cases: what an intervention report becomes, worked by the responsible unit, told to the
resident when it is done.

A case is made from an interaction (any channel; the agent holding it, or a supervisor) or on
its own with a contact. Its category is an intervention skill; `cases.categories` gives the
unit responsible and the resolution target (due date). Members of the unit (second-line agents,
`cases.units.<unit>.members`) move it on: open -> assigned -> in_progress -> completed, or
rejected / duplicate (the transitions are in queues/lua/case_status.lua); supervisors and admins
may too, and may move it to another unit. When it reaches a status of `cases.notify_on`
(open, completed, rejected), every subscriber (the reporter and the reporters of linked
duplicates) is sent a notice on the channel they used (`router.case_notices`), with the public
note only.

Duplicates: a new report of the same category within `duplicate_radius_m` of an open case
reported at most `duplicate_window_hours` ago is a likely duplicate. `find_duplicates` lists
them (for the agent, and for the web form); `link` makes the new report part of the existing
case instead of a new one.

The notice is queued right after the script that made the status change, by the process that
made it, so the API can answer who was told. Should that process die in between, the
`cases:notices` worker (`router.case_worker`), reading the same change from the event stream,
queues it; both end in the outbox's one claim per resident and status, so nobody is told twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from queues import errors as store_errors
from queues.cases import FINAL_STATUSES, CaseStore, Created, Subscriber
from router import case_notices, case_photos
from router.auth import Principal, Role
from router.config import CitylineConfig
from router.config_cases import CasesConfig, CategoryRule
from router.errors import CitylineError, Forbidden, NotFound, Unprocessable, from_store
from router.hash_fields import as_float, meta_of

logger = logging.getLogger(__name__)

STATUSES = ("open", "assigned", "in_progress", "completed", "rejected", "duplicate")
# What a case number looks like (`cases.number_prefix`-YEAR-SEQUENCE, queues/lua/case_create.lua):
# checked before a number anyone typed or sent reaches Redis.
NUMBER_PATTERN = r"^[A-Z]{1,3}-[0-9]{4}-[0-9]{1,12}$"
NUMBER = re.compile(NUMBER_PATTERN)
# Public coordinates are rounded to this many decimals: 3 decimals of latitude are ~110 m, so
# the status page shows the neighbourhood, never the resident's doorstep.
PUBLIC_DECIMALS = 3


@dataclass(frozen=True)
class Actor:
    """Who acts: a user name for the record, its role, and the agent it works as (if any)."""

    name: str
    role: Role
    agent_id: str = ""

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.username, principal.role, principal.agent_id or "")

    @property
    def staff(self) -> bool:
        return self.role in (Role.supervisor, Role.admin)


@dataclass(frozen=True)
class CaseInput:
    """What the agent (or a form) says about the problem; blanks are taken from the
    interaction where it knows them (a web form's category, address and location)."""

    category: str = ""
    description: str = ""
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    photos: tuple[str, ...] = ()
    contact: str = ""
    note: str = ""
    notify: bool = True  # the resident agrees to be told of the outcome (and how: contact)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine, metres): what GEOSEARCH measures too."""
    r = 6_372_797.560856  # Redis' earth radius in its geo commands
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


class CaseService:
    def __init__(self, service: Any) -> None:
        self.service = service  # the RoutingService: configuration, interactions, channels
        store = service.store
        self.store = CaseStore(store.redis, store.keys, store.scripts,
                               events_maxlen=store.events_maxlen,
                               tz_offset_ms=lambda: store.tz_offset_ms())

    @property
    def cfg(self) -> CitylineConfig:
        return self.service.cfg  # read each time: admins' changes swap agents in place

    @property
    def conf(self) -> CasesConfig:
        conf = self.cfg.cases
        if not conf.enabled:
            raise Unprocessable("cases are not configured (cases.units is empty)",
                                code="cases_disabled")
        return conf

    async def _do(self, coro: Any) -> Any:
        try:
            return await coro
        except store_errors.StoreError as exc:
            raise from_store(exc) from None

    # --- catalogue ----------------------------------------------------------------------

    def rule(self, category: str) -> CategoryRule:
        skill = self.cfg.skills.get(category)
        if skill is None or skill.kind != "intervention":
            raise Unprocessable(f"{category!r} is not an intervention category",
                                code="unknown_category")
        found = self.conf.rule(category)
        if found is None:  # the configuration check makes this impossible; be clear anyway
            raise Unprocessable(f"no unit handles {category!r}", code="unknown_category")
        return found

    def label(self, category: str, lang: str) -> str:
        skill = self.cfg.skills.get(category)
        if skill is None:
            return category
        return skill.labels.get(lang) or skill.labels.get(self.cfg.city.default_language) or ""

    def unit_label(self, unit: str, lang: str) -> str:
        u = self.cfg.cases.units.get(unit)
        if u is None:
            return unit
        return u.labels.get(lang) or u.labels.get(self.cfg.city.default_language) or unit

    def _unit(self, unit: str) -> None:
        if unit not in self.conf.units:
            raise NotFound(f"unknown unit {unit!r}", code="unknown_unit")

    def may_work(self, actor: Actor, unit: str) -> bool:
        """Supervisors and admins work every unit's cases; an agent only its units'."""
        if actor.staff:
            return True
        u = self.cfg.cases.units.get(unit)
        return bool(actor.agent_id and u is not None and actor.agent_id in u.members)

    def units_of(self, agent_id: str) -> list[str]:
        return [uid for uid, u in self.cfg.cases.units.items() if agent_id in u.members]

    def _check_member(self, actor: Actor, unit: str) -> None:
        if not self.may_work(actor, unit):
            raise Forbidden(f"only members of unit {unit} (or supervisors) may do this")

    # --- making cases -------------------------------------------------------------------

    async def create_from_interaction(
        self, ix: dict[str, str], data: CaseInput, actor: Actor, *, with_photos: bool = True
    ) -> Created:
        """A case for the problem reported in interaction `ix` (already read and checked by
        the caller: the agent holds it, or a supervisor). 409 `exists` if it has one.
        Its photos: `data.photos`, else (unless `with_photos` is False: the agent picked none)
        the web form's photo, or the e-mail's attachments that are images (router.case_photos).
        """
        meta = meta_of(ix)
        category = data.category or ix.get("topic", "")
        lat, lon = data.lat, data.lon
        if lat is None and lon is None and meta.get("lat") is not None:
            lat, lon = as_float(meta.get("lat")), as_float(meta.get("lon"))
        photos = list(data.photos)
        if not photos and with_photos:
            photo = meta.get("photo")
            if photo:
                photos = [f"{ix.get('id', '')}/{photo}"]
            elif ix.get("channel") == "email":
                photos = await asyncio.to_thread(case_photos.image_attachments,
                                                 self.cfg.data_dir, ix.get("id", ""))
        fields = self._fields(
            category, description=data.description or ix.get("body", ""),
            address=data.address or str(meta.get("address") or ""), lat=lat, lon=lon,
            photos=photos, language=ix.get("language") or self.cfg.city.default_language,
            channel=ix.get("channel", ""))
        sub = case_notices.subscriber_for(self.cfg, ix, data.contact, agreed=data.notify)
        return await self._create(fields, ix_id=ix.get("id", ""), subscriber=sub, actor=actor,
                                  note=data.note)

    async def create_standalone(self, data: CaseInput, *, language: str, actor: Actor,
                                channel: str = "") -> Created:
        """A case reported without an interaction (an integration, a unit's own finding);
        `data.contact` (e-mail or phone) is told of its outcome."""
        fields = self._fields(data.category, description=data.description,
                              address=data.address, lat=data.lat, lon=data.lon,
                              photos=list(data.photos), language=language, channel=channel)
        sub = None
        if data.contact:
            via, to = case_notices.contact_route(data.contact, self.cfg.city.country)
            if not via:
                raise Unprocessable("contact: give an e-mail address or a phone number",
                                    code="invalid_contact")
            sub = Subscriber(ix="", via=via, to=to, language=language)
        return await self._create(fields, ix_id="", subscriber=sub, actor=actor, note=data.note)

    def _fields(self, category: str, *, description: str, address: str, lat: float | None,
                lon: float | None, photos: list[str], language: str,
                channel: str) -> dict[str, str]:
        rule = self.rule(category)
        if (lat is None) != (lon is None):
            raise Unprocessable("give both lat and lon, or neither", code="invalid_location")
        if lat is not None and lon is not None and not (
                -85.05 <= lat <= 85.05 and -180 <= lon <= 180):
            raise Unprocessable("lat/lon out of range", code="invalid_location")
        return {
            "category": category, "unit": rule.unit, "description": description[:5000],
            "address": address[:300], "lat": "" if lat is None else repr(float(lat)),
            "lon": "" if lon is None else repr(float(lon)), "photos": json.dumps(photos[:10]),
            "language": language, "channel": channel,
        }

    async def _create(self, fields: dict[str, str], *, ix_id: str,
                      subscriber: Subscriber | None, actor: Actor, note: str) -> Created:
        rule = self.rule(fields["category"])
        done: Created = await self._do(self.store.create(
            fields, prefix=self.conf.number_prefix,
            target_ms=int(rule.resolution_target_hours * 3_600_000), ix_id=ix_id,
            subscriber=subscriber, by=actor.name, by_agent=actor.agent_id, note=note))
        logger.info("cases: %s (%s) created for unit %s from %s by %s", done.number,
                    fields["category"], fields["unit"], ix_id or "no interaction", actor.name)
        if subscriber is not None:
            # the reporter learns the number: in their live web chat always (its status link
            # is how they follow the case), on their channel when `open` is in notify_on
            case = await self._do(self.store.get(done.id))
            await case_notices.chat_link(self.service, case, subscriber)
            if "open" in self.cfg.cases.notify_on:
                await case_notices.notify(self.service, case, "open", "", [subscriber])
        return done

    # --- reading ------------------------------------------------------------------------

    async def get(self, number: str) -> dict[str, str]:
        case_id = await self._do(self.store.id_of(number))
        return await self._do(self.store.get(case_id))

    async def history(self, case: dict[str, str]) -> list[dict[str, Any]]:
        return await self.store.history(case["id"])

    async def histories(self, cases: list[dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
        """Case id -> its status history, for many cases in one round trip."""
        return await self.store.histories([c["id"] for c in cases])

    async def subscribers(self, case: dict[str, str]) -> list[Subscriber]:
        return await self.store.subscribers(case["id"])

    async def for_unit(self, unit: str, actor: Actor) -> list[dict[str, str]]:
        """The unit's open cases, most urgent first (members of the unit, supervisors)."""
        self._unit(unit)
        self._check_member(actor, unit)
        return await self.store.many(await self.store.unit_open(unit))

    async def created_between(self, since_ms: int, until_ms: int,
                              limit: int = 5000) -> list[dict[str, str]]:
        """Cases made in [since_ms, until_ms], newest first, at most `limit` (Open311's list):
        a range of the creation-time index (`Keys.case_by_created`), never a scan."""
        ids = await self.store.created_ids(since_ms, until_ms, limit=limit, newest_first=True)
        return await self.store.many(ids)

    async def all_cases(self) -> list[dict[str, str]]:
        """Every case, oldest first (the creation-time index): for the city's reports."""
        return await self.store.many(await self.store.created_ids())

    async def find_duplicates(self, category: str, lat: float | None, lon: float | None,
                              *, exclude: str = "") -> list[dict[str, Any]]:
        """Open cases of `category` within the configured radius of (lat, lon), reported within
        the configured window: nearest first, each with its `distance_m`. [] without a
        location. Safe to show anyone: callers choose which fields to pass on."""
        conf = self.conf
        self.rule(category)
        if lat is None or lon is None:
            return []
        near = await self.store.near(category, lat, lon, conf.duplicate_radius_m)
        if not near:
            return []
        since = await self.service.store.now_ms() - int(conf.duplicate_window_hours * 3_600_000)
        dist = dict(near)
        out = []
        for case in await self.store.many([cid for cid, _ in near if cid != exclude]):
            if case.get("status") in FINAL_STATUSES or int(case.get("created_ms") or 0) < since:
                continue
            out.append({**case, "distance_m": round(dist[case["id"]], 1)})
        return out

    # --- working cases ------------------------------------------------------------------

    async def set_status(self, number: str, status: str, actor: Actor, *, note: str = "",
                         public_note: str = "", duplicate_of: str = "") -> dict[str, Any]:
        """Move the case on (members of its unit, supervisors); the notices of a status in
        `cases.notify_on` are queued. Returns the case after the change and the notices.

        Queued here so the answer says what became of them (queued, no_channel...); the case
        notices worker (router/case_worker.py) queues them again from the CASESTATUS event,
        which finds them `already` queued, or queues them if this process died before."""
        if status not in STATUSES:
            raise Unprocessable(f"unknown status {status!r}", code="unknown_status")
        case = await self.get(number)
        self._check_member(actor, case["unit"])
        target = ""
        if duplicate_of:
            target = await self._do(self.store.id_of(duplicate_of))
        await self._do(self.store.set_status(
            case["id"], status, unit=case["unit"], category=case["category"], by=actor.name,
            by_agent=actor.agent_id, note=note, public_note=public_note, duplicate_of=target))
        logger.info("cases: %s %s -> %s by %s", number, case["status"], status, actor.name)
        after = await self._do(self.store.get(case["id"]))
        notices: list[dict[str, str]] = []
        if status in self.cfg.cases.notify_on and status != case["status"]:
            # the resident reads the public note only; the internal note stays with the staff
            notices = await self.resend_notices(after, status, public_note)
        return {"case": after, "notices": notices}

    async def resend_notices(self, case: dict[str, str], status: str,
                             note: str) -> list[dict[str, str]]:
        """Queue the notice of `status` for every subscriber who has not had it (idempotent):
        also what the case notices worker calls for a CASESTATUS event."""
        return await case_notices.notify(self.service, case, status, note,
                                         await self.store.subscribers(case["id"]))

    async def set_unit(self, number: str, unit: str, actor: Actor, *, note: str = "",
                       public_note: str = "") -> dict[str, str]:
        """Hand the case to another unit (supervisors, or a member of its current unit who
        finds it is not theirs); it is open there, nobody assigned."""
        self._unit(unit)
        case = await self.get(number)
        self._check_member(actor, case["unit"])
        await self._do(self.store.set_unit(case["id"], from_unit=case["unit"], unit=unit,
                                           by=actor.name, by_agent=actor.agent_id, note=note,
                                           public_note=public_note))
        logger.info("cases: %s moved from unit %s to %s by %s", number, case["unit"], unit,
                    actor.name)
        return await self._do(self.store.get(case["id"]))

    async def link(self, ix: dict[str, str], number: str, actor: Actor,
                   contact: str = "", *, notify: bool = True) -> tuple[dict[str, str], bool]:
        """Interaction `ix` reports what case `number` already is: its resident is told of the
        case's outcome too (unless `notify` is False: they did not want to be). Returns (case,
        linked now)."""
        case = await self.get(number)
        sub = case_notices.subscriber_for(self.cfg, ix, contact, agreed=notify)
        linked = await self._do(self.store.link(case["id"], ix["id"], sub, by=actor.name,
                                                by_agent=actor.agent_id))
        after = await self._do(self.store.get(case["id"]))
        if linked:
            logger.info("cases: %s linked to %s by %s", ix["id"], number, actor.name)
            await case_notices.chat_link(self.service, after, sub)  # whatever notify_on says
            if "open" in self.cfg.cases.notify_on:
                await case_notices.notify(self.service, after, "open", "", [sub])
        return after, linked

    # --- the public view ----------------------------------------------------------------

    async def public_view(self, number: str, lang: str) -> dict[str, Any]:
        """What anyone with the number may see: never who reported it nor how to reach them,
        never internal notes, the place only to the street and ~100 m."""
        case = await self.get(number)
        history = await self.history(case)
        lat, lon = as_float(case.get("lat")), as_float(case.get("lon"))
        return {
            "number": case["number"],
            "category": case["category"],
            "category_label": self.label(case["category"], lang),
            "unit_label": self.unit_label(case["unit"], lang),
            "status": case["status"],
            "address": case.get("address", ""),
            "lat": None if lat is None else round(lat, PUBLIC_DECIMALS),
            "lon": None if lon is None else round(lon, PUBLIC_DECIMALS),
            "created_ms": int(case.get("created_ms") or 0),
            "due_ms": int(case.get("due_ms") or 0),
            "closed_ms": int(case.get("closed_ms") or 0) or None,
            "duplicate_of": case.get("duplicate_of") or None,
            "history": [{"status": str(h.get("status", "")), "time_ms": int(h.get("t") or 0),
                         "note": str(h.get("public_note") or "")} for h in history
                        if h.get("action") != "photo"],  # staff's photos are not public
        }

    # --- photos (router.case_photos; never on the public page nor in Open311) ------------

    MAX_PHOTOS = 20  # a case's photos: the resident's (10 at most) and the unit's

    @property
    def max_photo_bytes(self) -> int:
        """The largest photo a member may add: the web form's limit, one rule for residents
        and staff."""
        return int(self.cfg.channels.webform.max_photo_bytes)

    async def photo(self, case: dict[str, str], index: int) -> case_photos.Photo:
        """The bytes and sniffed type of the case's photo number `index` (the caller checked
        who may see the case). NotFound for an index out of range, a link (Open311
        media_url: never fetched), a missing or unsafe file, or a file that is not an image."""
        refs = _photo_refs(case)
        if not 0 <= index < len(refs):
            raise NotFound(f"case {case.get('number')} has no photo {index}",
                           code="unknown_photo")
        try:
            return await asyncio.to_thread(case_photos.read_photo, self.cfg.data_dir,
                                           refs[index])
        except case_photos.PhotoMissing as exc:
            logger.warning("cases: photo %d of %s not served: %s", index, case.get("number"),
                           exc)
            raise NotFound(f"photo {index} of case {case.get('number')} is not available",
                           code="photo_missing") from None

    async def add_photo(self, number: str, data: bytes, actor: Actor,
                        note: str = "") -> tuple[dict[str, str], int]:
        """A member of the case's unit (or a supervisor) adds a photo: the bytes must be a
        JPEG, PNG, WebP or GIF image (422 not_a_photo) of at most `max_photo_bytes` (413
        photo_too_large). The file is written first and recorded by `case_photo`; a refusal
        removes it again. Returns (the case after, the new photo's index)."""
        case = await self.get(number)
        self._check_member(actor, case["unit"])
        if len(data) > self.max_photo_bytes:
            logger.warning("cases: photo for %s by %s refused: %d bytes (limit %d)", number,
                           actor.name, len(data), self.max_photo_bytes)
            raise PhotoTooLarge(f"the photo is larger than {self.max_photo_bytes} bytes")
        kind = case_photos.sniff(data[:case_photos.HEAD_BYTES])
        if kind is None:
            logger.warning("cases: photo for %s by %s refused: not an image (%d bytes)",
                           number, actor.name, len(data))
            raise Unprocessable("the file is not a JPEG, PNG, WebP or GIF image",
                                code="not_a_photo")
        if len(_photo_refs(case)) >= self.MAX_PHOTOS:  # the script re-checks it
            raise Unprocessable(f"the case has {self.MAX_PHOTOS} photos, the most it keeps",
                                code="too_many_photos")
        ref = await asyncio.to_thread(case_photos.save_upload, self.cfg.data_dir, case["id"],
                                      data, kind)
        try:
            index = await self._do(self.store.add_photo(
                case["id"], ref, unit=case["unit"], max_photos=self.MAX_PHOTOS, by=actor.name,
                by_agent=actor.agent_id, note=note or "photo added"))
        except BaseException:
            await asyncio.to_thread(case_photos.remove_upload, self.cfg.data_dir, ref)
            raise
        logger.info("cases: photo %d (%s, %d bytes) added to %s by %s", index, kind, len(data),
                    number, actor.name)
        return await self._do(self.store.get(case["id"])), index


class PhotoTooLarge(CitylineError):
    code = "photo_too_large"
    status = 413


def _photo_refs(case: dict[str, str]) -> list[str]:
    try:
        refs = json.loads(case.get("photos") or "[]")
    except ValueError:
        return []
    return [str(r) for r in refs] if isinstance(refs, list) else []
