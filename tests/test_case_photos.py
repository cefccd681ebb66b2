"""Photos of cases through the real API: an e-mail's image attachments become the case's photos
(sniffed, a PDF is not one), the web form's photo is served, who may see them, references that
try to leave the data directory, and a unit member's upload (kept atomically, refusals keep
nothing). The packaged city: roads unit = grzegorz.krawczyk, sanitation = ewa.kozlowska.
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from channels.email.adapter import EmailAdapter
from queues import errors as store_errors
from queues.keys import Keys
from queues.store import RoutingStore
from router import case_photos
from router.config import CitylineConfig, load_config
from router.config_email import EmailConfig
from router.dispatcher import Dispatcher
from router.models import Channel, IntakeRequest
from router.service import RoutingService
from tests.api_helpers import API, ApiHarness, Session, api_harness, error_of
from tests.channels.test_email import Sink, serve_sink

CITY = "kontakt@nowygrod.example.pl"
MAIL = "ola.nowak@example.org"
FIRST_LINE = "anna.nowak"
MEMBER = "grzegorz.krawczyk"  # roads
OUTSIDER = "ewa.kozlowska"  # sanitation: not the roads unit
MAX_PHOTO = 4096
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n% not a photo\n" + b"0" * 200
K = Keys()


def png(width: int = 8, height: int = 6) -> bytes:
    """A real (decodable) PNG, red, made without an imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclass
class City:
    service: RoutingService
    api: ApiHarness
    email: EmailAdapter
    dispatcher: Dispatcher
    data_dir: Path

    async def mail(self, subject: str, body: str,
                   attachments: list[tuple[str, str, bytes]]) -> str:  # fmt: skip
        msg = EmailMessage()
        msg["From"] = f"Ola Nowak <{MAIL}>"
        msg["To"] = CITY
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg.set_content(body)
        for name, ctype, data in attachments:
            main, sub = ctype.split("/")
            msg.add_attachment(data, maintype=main, subtype=sub, filename=name)

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", self.email.port, timeout=10) as client:
                client.sendmail(MAIL, [CITY], msg.as_bytes(policy=policy.SMTP))

        await asyncio.to_thread(send)
        ix_id = await self.service.find_external(Channel.email, msg["Message-ID"])
        assert ix_id is not None
        return ix_id

    async def connect(self, agent_id: str, ix_id: str) -> None:
        await self.service.agent_login(agent_id, ready=True)
        await self.dispatcher.match_round()
        ix = await self.service.store.interaction(ix_id)
        assert ix["state"] == "offered" and ix["agent"] == agent_id, ix
        await self.service.accept(agent_id, ix_id)


@pytest.fixture
def cfg(tmp_path: Path) -> CitylineConfig:
    return load_config(None, env={"CITYLINE_DATA_DIR": str(tmp_path),
                                  "CITYLINE_CHANNELS__WEBFORM__MAX_PHOTO_BYTES": str(MAX_PHOTO)})


@pytest.fixture
async def city(redis: aioredis.Redis, cfg: CitylineConfig,
               tmp_path: Path) -> AsyncIterator[City]:
    assert cfg.data_dir == tmp_path and cfg.channels.webform.max_photo_bytes == MAX_PHOTO
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    sink = Sink()
    smarthost = await serve_sink(sink)
    email_cfg = EmailConfig.model_validate({
        **cfg.channels.email.model_dump(), "port": 0,
        "smarthost": {"host": "127.0.0.1", "port": sink.port, "timeout_s": 5},
        "retry": {"attempts": 20, "backoff_s": 0.05, "backoff_max_s": 0.2}})
    try:
        async with EmailAdapter(service, email_cfg, tmp_path, env={},
                                outbox_tick_s=0.05) as email, \
                api_harness(redis, cfg, service) as api:
            yield City(service, api, email, Dispatcher(store, cfg), tmp_path)
    finally:
        smarthost.close()
        await smarthost.wait_closed()


async def ok(resp: Any, status: int = 200) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def case_hash(city: City, number: str) -> dict[str, str]:
    case_id = await city.api.redis.hget(K.case_numbers, number)
    return await city.api.redis.hgetall(K.case(case_id))


def upload(data: bytes, name: str = "after.jpg", ctype: str = "image/jpeg",
           note: str = "") -> aiohttp.FormData:  # fmt: skip
    form = aiohttp.FormData()
    form.add_field("photo", data, filename=name, content_type=ctype)
    if note:
        form.add_field("note", note)
    return form


async def email_case(city: City) -> tuple[str, str, Session]:
    """An e-mail with a JPEG and a PDF; the agent holding it makes a case: (ix, number,
    the agent's session)."""
    agent = await city.api.session(FIRST_LINE, "agent", FIRST_LINE)
    ix_id = await city.mail("Dziura na Długiej", "Zdjęcie w załączniku", [
        ("dziura.jpg", "image/jpeg", JPEG), ("pismo.pdf", "application/pdf", PDF)])
    await city.connect(FIRST_LINE, ix_id)
    made = await ok(await agent.post(f"/interactions/{ix_id}/case", {
        "category": "road_damage", "address": "ul. Długa 5"}), 201)
    return ix_id, made["case"]["number"], agent


async def test_email_jpeg_becomes_the_case_photo_served_to_the_unit(city: City) -> None:
    ix_id, number, agent = await email_case(city)
    member = await city.api.session(MEMBER, "agent", MEMBER)
    case = await ok(await member.get(f"/cases/{number}"))
    # the JPEG is the photo, the PDF is not (sniffed by its bytes)
    assert case["photos"] == [f"attachments/{ix_id}/dziura.jpg"]
    assert case["media"] == [{"index": 0, "kind": "photo",
                              "url": f"{API}/cases/{number}/photos/0"}]
    assert (city.data_dir / "attachments" / ix_id / "pismo.pdf").read_bytes() == PDF
    for who in (member, agent):  # the unit's member; the agent holding the interaction
        resp = await who.get(f"/cases/{number}/photos/0")
        assert resp.status == 200
        assert await resp.read() == JPEG
        assert resp.headers["Content-Type"] == "image/jpeg"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Disposition"] == "inline"
        assert resp.headers["Cache-Control"].startswith("private")
        assert resp.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    resp = await member.get(f"/cases/{number}/photos/1")  # the PDF never became one
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_photo"


async def test_agent_may_pick_no_photos(city: City) -> None:
    agent = await city.api.session(FIRST_LINE, "agent", FIRST_LINE)
    ix_id = await city.mail("Dziura", "zdjęcie", [("d.jpg", "image/jpeg", JPEG)])
    await city.connect(FIRST_LINE, ix_id)
    made = await ok(await agent.post(f"/interactions/{ix_id}/case", {
        "category": "road_damage", "photos": False}), 201)
    assert made["case"]["photos"] == [] and made["case"]["media"] == []


async def test_who_may_see_a_photo(city: City) -> None:
    _ix, number, _agent = await email_case(city)
    outsider = await city.api.session(OUTSIDER, "agent", OUTSIDER)
    boss = await city.api.session("kierownik", "supervisor")
    resp = await outsider.get(f"/cases/{number}/photos/0")
    assert resp.status == 403 and (await error_of(resp))["code"] == "forbidden"
    assert (await boss.get(f"/cases/{number}/photos/0")).status == 200
    anonymous = await city.api.client()
    assert (await anonymous.get(f"{API}/cases/{number}/photos/0")).status == 401
    # the public page and Open311 show no photo at all
    public = await ok(await anonymous.get(f"{API}/public/cases/{number}"))
    assert "photo" not in json.dumps(public) and "attachments" not in json.dumps(public)
    html = await (await anonymous.get(f"/cases/{number}")).text()
    assert "/photos/" not in html and "dziura.jpg" not in html
    req = await ok(await anonymous.get(f"/open311/v2/requests/{number}.json"))
    assert req[0]["media_url"] == ""


async def test_references_leaving_the_data_directory_are_refused(city: City,
                                                                 tmp_path: Path) -> None:
    _ix, number, _agent = await email_case(city)
    boss = await city.api.session("kierownik", "supervisor")
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(JPEG)
    outside = tmp_path.parent / f"{tmp_path.name}-outside.jpg"
    outside.write_bytes(JPEG)
    (tmp_path / "uploads" / "evil").mkdir(parents=True)
    os.symlink(secret, tmp_path / "uploads" / "evil" / "link.jpg")  # a symlinked file
    os.symlink(tmp_path, tmp_path / "uploads" / "up")  # a symlinked directory
    refs = ["../secret.jpg", "uploads/../secret.jpg", str(secret), "/etc/passwd",
            "attachments/../../secret.jpg", f"../{outside.name}", "evil/link.jpg",
            "up/secret.jpg", "evil/..", "./secret.jpg", "evil/.hidden.jpg", "a/b/c.jpg",
            "attachments/x/../../secret.jpg", "https://img.example.org/p.jpg", ""]
    case_id = await city.api.redis.hget(K.case_numbers, number)
    await city.api.redis.hset(K.case(case_id), "photos", json.dumps(refs))
    for i, ref in enumerate(refs):
        resp = await boss.get(f"/cases/{number}/photos/{i}")
        assert resp.status == 404, (ref, resp.status)
        assert (await error_of(resp))["code"] in ("photo_missing", "unknown_photo"), ref
        with pytest.raises(case_photos.PhotoMissing):
            case_photos.read_photo(tmp_path, ref)
    for bad in ("-1", "99", "1e3", "0x0", "%2e%2e"):
        assert (await boss.get(f"/cases/{number}/photos/{bad}")).status == 404, bad
    outside.unlink()


async def test_member_adds_a_photo_refusals_change_nothing(city: City) -> None:
    _ix, number, agent = await email_case(city)
    member = await city.api.session(MEMBER, "agent", MEMBER)
    outsider = await city.api.session(OUTSIDER, "agent", OUTSIDER)
    before = await case_hash(city, number)
    stream = await city.api.stream_len()
    files = sorted(str(p) for p in city.data_dir.rglob("*"))
    refusals = [
        (member, upload(PDF, "a.jpg"), 422, "not_a_photo"),  # a PDF named .jpg
        (member, upload(b"<svg onload=alert(1)>", "a.svg", "image/svg+xml"), 422, "not_a_photo"),
        (member, upload(JPEG + b"x" * MAX_PHOTO), 413, "photo_too_large"),
        (member, aiohttp.FormData({"note": "no file"}, default_to_multipart=True), 422,
         "validation_error"),
        (outsider, upload(JPEG), 403, "forbidden"),
        (agent, upload(JPEG), 403, "forbidden"),  # holding the interaction: may only look
    ]
    for who, form, status, code in refusals:
        resp = await who.post(f"/cases/{number}/photos", data=form)
        assert resp.status == status, await resp.text()
        assert (await error_of(resp))["code"] == code
    resp = await member.post(f"/cases/{number}/photos", data=b"\xff\xd8\xff",
                             headers={"Content-Type": "image/jpeg"})
    assert resp.status == 415
    resp = await member.post(f"/cases/{number}/photos", data=upload(JPEG), csrf=False)
    assert resp.status == 403 and (await error_of(resp))["code"] == "csrf_failed"
    assert await case_hash(city, number) == before
    assert await city.api.stream_len() == stream
    assert sorted(str(p) for p in city.data_dir.rglob("*")) == files
    # the crew's "after" photo (a PNG) is kept, recorded, and served
    after = png()
    added = await ok(await member.post(f"/cases/{number}/photos",
                                       data=upload(after, "po.png", "image/png", "po naprawie")),
                     201)
    assert added["index"] == 1
    case = added["case"]
    assert case["photos"][0].startswith("attachments/")
    assert case["photos"][1].startswith(f"case-{case['id']}/photo-")
    assert case["photos"][1].endswith(".png")
    assert [m["kind"] for m in case["media"]] == ["photo", "photo"]
    assert case["history"][-1]["action"] == "photo"
    assert case["history"][-1]["note"] == "po naprawie"
    assert case["history"][-1]["status"] == "open"
    assert await city.api.stream_len() == stream + 1
    resp = await member.get(f"/cases/{number}/photos/1")
    assert resp.status == 200 and await resp.read() == after
    assert resp.headers["Content-Type"] == "image/png"
    stored = city.data_dir / "uploads" / case["photos"][1]
    assert stored.read_bytes() == after
    # a supervisor may too; the event says what happened
    boss = await city.api.session("kierownik", "supervisor")
    await ok(await boss.post(f"/cases/{number}/photos", data=upload(JPEG)), 201)
    [(_id, ev)] = await city.api.redis.xrevrange(K.events, count=1)
    assert ev["ev"] == "CASESTATUS" and ev["action"] == "photo" and ev["case"] == number
    # the public history does not show the staff's photos being added
    anonymous = await city.api.client()
    public = await ok(await anonymous.get(f"{API}/public/cases/{number}"))
    assert [h["status"] for h in public["history"]] == ["open"]
    assert "po naprawie" not in json.dumps(public, ensure_ascii=False)


async def test_case_photo_script_refusals_change_nothing(city: City) -> None:
    _ix, number, _agent = await email_case(city)
    store = city.service.cases.store
    case_id = await city.api.redis.hget(K.case_numbers, number)
    before = await case_hash(city, number)
    stream = await city.api.stream_len()
    history = await store.history(case_id)
    for kw, error in (({"unit": "sanitation", "max_photos": 20}, store_errors.StaleError),
                      ({"unit": "roads", "max_photos": 1}, store_errors.StateError)):
        with pytest.raises(error):
            await store.add_photo(case_id, "case-x/photo-1.jpg", **kw)
    with pytest.raises(store_errors.NotFoundError):
        await store.add_photo("nope", "case-x/photo-1.jpg", unit="roads", max_photos=20)
    assert await case_hash(city, number) == before
    assert await store.history(case_id) == history
    assert await city.api.stream_len() == stream


async def test_a_case_moved_meanwhile_keeps_no_file(city: City,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the script closes: the case goes to another unit between the member's check
    and the write. The script refuses (409 stale) and the file written for it is removed."""
    _ix, number, _agent = await email_case(city)
    member = await city.api.session(MEMBER, "agent", MEMBER)
    cases = city.service.cases
    real = cases.store.add_photo

    async def moved_first(case_id: str, ref: str, **kw: Any) -> int:
        await cases.store.set_unit(case_id, from_unit="roads", unit="sanitation", by="boss")
        return await real(case_id, ref, **kw)

    monkeypatch.setattr(cases.store, "add_photo", moved_first)
    resp = await member.post(f"/cases/{number}/photos", data=upload(JPEG))
    assert resp.status == 409 and (await error_of(resp))["code"] == "stale"
    assert not list((city.data_dir / "uploads").rglob("photo-*"))
    assert len(json.loads((await case_hash(city, number))["photos"])) == 1


async def test_webform_photo_is_served(city: City) -> None:
    boss = await city.api.session("kierownik", "supervisor")
    member = await city.api.session(MEMBER, "agent", MEMBER)
    name = "photo-0123456789abcdef01234567.png"
    res = await city.service.create_interaction(IntakeRequest(
        channel=Channel.webform, queue="webform", topic="road_damage", language="pl",
        resident="ola.nowak@example.org", subject="Uszkodzenie drogi", body="Dziura",
        meta={"photo": name, "address": "ul. Długa 5"}))
    photo = png(4, 4)
    (city.data_dir / "uploads" / res.id).mkdir(parents=True)
    (city.data_dir / "uploads" / res.id / name).write_bytes(photo)
    made = await ok(await boss.post(f"/interactions/{res.id}/case", {}), 201)
    number = made["case"]["number"]
    assert made["case"]["photos"] == [f"{res.id}/{name}"]
    resp = await member.get(f"/cases/{number}/photos/0")
    assert resp.status == 200 and await resp.read() == photo
    assert resp.headers["Content-Type"] == "image/png"
    # the file replaced by something that is not an image: not served as one
    (city.data_dir / "uploads" / res.id / name).write_bytes(b"<html><script>x</script>")
    resp = await member.get(f"/cases/{number}/photos/0")
    assert resp.status == 404 and (await error_of(resp))["code"] == "photo_missing"


async def test_open311_media_url_is_a_link_never_fetched(city: City) -> None:
    token = (await city.api.bearer("app", "intake")).token
    client = await city.api.client()
    resp = await client.post("/open311/v2/requests.json", data={
        "api_key": token, "service_code": "road_damage", "lat": "51.7592", "long": "19.4560",
        "description": "Dziura", "media_url": "https://img.example.org/p.jpg"})
    assert resp.status == 201, await resp.text()
    number = (await resp.json())[0]["service_request_id"]
    member = await city.api.session(MEMBER, "agent", MEMBER)
    case = await ok(await member.get(f"/cases/{number}"))
    assert case["media"] == [{"index": 0, "kind": "link",
                              "url": "https://img.example.org/p.jpg"}]
    resp = await member.get(f"/cases/{number}/photos/0")
    assert resp.status == 404 and (await error_of(resp))["code"] == "photo_missing"


def test_sniffing() -> None:
    assert case_photos.sniff(JPEG) == "image/jpeg"
    assert case_photos.sniff(png()) == "image/png"
    assert case_photos.sniff(b"GIF89a" + b"\0" * 10) == "image/gif"
    assert case_photos.sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "image/webp"
    for other in (PDF, b"", b"<svg/>", b"RIFF\0\0\0\0WAVE", b"\xff\xd8"):
        assert case_photos.sniff(other) is None
