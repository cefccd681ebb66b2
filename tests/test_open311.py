"""Open311 GeoReport v2 over cases (router.open311, router.http.open311_routes), on the real
app and Redis: services, posting a request with an API token, reading requests back with the
public fields only, the error format in JSON and XML. The packaged city: road_damage -> roads
(grzegorz.krawczyk)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from typing import Any

import pytest

from router.auth import Role
from router.cases import Actor
from router.config import CitylineConfig, load_config
from tests.api_helpers import ApiHarness

P = "/open311/v2"
BOSS = Actor("kierownik", Role.supervisor)
LAT, LON = 51.7592, 19.4560
EMAIL = "ola.nowak@example.org"
PHONE = "+48 600 100 200"
SECRET_TEXT = "Dziura przed klatką, kod do domofonu 1234"
# GeoReport v2 "GET Service Requests" response fields
REQUEST_FIELDS = {"service_request_id", "status", "status_notes", "service_name",
                  "service_code", "description", "agency_responsible", "service_notice",
                  "requested_datetime", "updated_datetime", "expected_datetime", "address",
                  "address_id", "zipcode", "lat", "long", "media_url"}


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})


async def _client(api: ApiHarness) -> Any:
    return await api.client()


async def token(api: ApiHarness, name: str = "fixmystreet", role: str = "intake",
                agent: str | None = None) -> str:
    return (await api.bearer(name, role, agent)).token


def form(key: str, **kw: Any) -> dict[str, str]:
    base = {"api_key": key, "service_code": "road_damage", "lat": str(LAT),
            "long": str(LON), "address_string": "ul. Piotrkowska 100",
            "description": SECRET_TEXT, "email": EMAIL, "first_name": "Ola",
            "last_name": "Nowak", "phone": PHONE, "attribute[size]": "big"}
    base.update({k: str(v) for k, v in kw.items()})
    return {k: v for k, v in base.items() if v != "<drop>"}


async def json_error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert isinstance(body, list) and len(body) == 1 and set(body[0]) == {"code", "description"}
    assert body[0]["code"] == status
    return body[0]["description"]


async def xml_error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "text/xml"
    root = ET.fromstring(await resp.text())
    assert root.tag == "errors"
    (err,) = list(root)
    assert err.tag == "error" and err.findtext("code") == str(status)
    return err.findtext("description") or ""


async def post(api: ApiHarness, data: dict[str, str], fmt: str = "json") -> Any:
    client = await _client(api)
    return await client.post(f"{P}/requests.{fmt}", data=data)


async def create(api: ApiHarness, key: str, **kw: Any) -> str:
    resp = await post(api, form(key, **kw))
    assert resp.status == 201, await resp.text()
    return (await resp.json())[0]["service_request_id"]


# --- services -------------------------------------------------------------------------------

async def test_services_json_and_xml(api: ApiHarness):
    client = await _client(api)
    resp = await client.get(f"{P}/services.json?lang=en")
    assert resp.status == 200 and resp.content_type == "application/json"
    body = await resp.json()
    by_code = {s["service_code"]: s for s in body}
    assert "road_damage" in by_code and "street_lighting" in by_code
    road = by_code["road_damage"]
    assert road["service_name"] == "Potholes and road damage"
    assert road["metadata"] is False and road["type"] == "realtime"
    assert road["group"] and road["description"] and "road_damage" in road["keywords"]
    assert {s["service_code"] for s in body} == {
        n for n, s in api.cfg.skills.items() if s is not None and s.kind == "intervention"}
    # the city's default language without ?lang
    pl = {s["service_code"]: s for s in await (await client.get(f"{P}/services.json")).json()}
    assert pl["road_damage"]["service_name"] == "Dziury i uszkodzenia jezdni"

    resp = await client.get(f"{P}/services.xml?lang=uk")
    assert resp.status == 200 and resp.content_type == "text/xml"
    root = ET.fromstring(await resp.text())
    assert root.tag == "services"
    names = {s.findtext("service_code"): s for s in root.findall("service")}
    assert names["road_damage"].findtext("service_name") == "Ями та пошкодження дороги"
    assert names["road_damage"].findtext("metadata") == "false"


async def test_service_definition(api: ApiHarness):
    client = await _client(api)
    resp = await client.get(f"{P}/services/road_damage.json")
    assert resp.status == 200
    assert await resp.json() == {"service_code": "road_damage", "attributes": []}
    resp = await client.get(f"{P}/services/road_damage.xml")
    root = ET.fromstring(await resp.text())
    assert root.tag == "service_definition" and root.findtext("service_code") == "road_damage"
    await json_error(await client.get(f"{P}/services/nope.json"), 404)
    await xml_error(await client.get(f"{P}/services/nope.xml"), 404)
    # an information topic is no service
    info = next(n for n, s in api.cfg.skills.items() if s is not None and s.kind == "information")
    await json_error(await client.get(f"{P}/services/{info}.json"), 404)


# --- posting --------------------------------------------------------------------------------

async def test_post_creates_a_case(api: ApiHarness):
    key = await token(api)
    resp = await post(api, form(key, media_url="https://img.example.org/p.jpg"))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert len(body) == 1 and set(body[0]) == {"service_request_id", "service_notice",
                                                "account_id"}
    assert body[0]["account_id"] is None
    number = body[0]["service_request_id"]
    assert number in body[0]["service_notice"]
    case = await api.service.cases.get(number)
    assert case["category"] == "road_damage" and case["unit"] == "roads"
    assert case["status"] == "open" and case["channel"] == "open311"
    assert case["description"] == SECRET_TEXT and case["ix"] == ""
    assert abs(float(case["lat"]) - LAT) < 1e-9
    subs = await api.service.cases.subscribers(case)
    assert [(s.via, s.to) for s in subs] == [("email", EMAIL)]


async def test_post_xml_and_phone_only_and_admin_key(api: ApiHarness):
    key = await token(api, "admin1", "admin")
    resp = await post(api, form(key, email="<drop>", lat="<drop>", long="<drop>"), "xml")
    assert resp.status == 201, await resp.text()
    root = ET.fromstring(await resp.text())
    assert root.tag == "service_requests"
    number = root.find("request").findtext("service_request_id")  # type: ignore[union-attr]
    case = await api.service.cases.get(number)
    assert case["lat"] == "" and case["address"] == "ul. Piotrkowska 100"
    subs = await api.service.cases.subscribers(case)
    assert [(s.via, s.to) for s in subs] == [("sms", "+48600100200")]


async def test_duplicates_are_mentioned(api: ApiHarness):
    key = await token(api)
    first = await create(api, key)
    resp = await post(api, form(key, lat=LAT + 0.0001))
    body = await resp.json()
    assert resp.status == 201
    assert first in body[0]["service_notice"]
    assert body[0]["service_request_id"] != first


@pytest.mark.parametrize("fmt", ["json", "xml"])
async def test_post_refusals(api: ApiHarness, fmt: str):
    key = await token(api)
    agent_key = await token(api, "anna.nowak", "agent", "anna.nowak")
    check = json_error if fmt == "json" else xml_error
    cases: list[tuple[dict[str, str], int]] = [
        (form("<drop>"), 403),
        (form("not-a-token"), 403),
        (form(agent_key), 403),  # a valid token of the wrong role
        (form(key, service_code="nope"), 400),
        (form(key, service_code="<drop>"), 400),
        (form(key, lat="<drop>", long="<drop>", address_string="<drop>"), 400),
        (form(key, lat="91"), 400),
        (form(key, long="abc"), 400),
        (form(key, long="nan"), 400),
        (form(key, lat="<drop>"), 400),
        (form(key, description="x" * 4001), 400),
        (form(key, email="not-an-address"), 400),
        (form(key, phone="12ab"), 400),
        (form(key, media_url="javascript:alert(1)"), 400),
    ]
    before = await api.redis.hlen(api.keys.case_numbers)
    for data, status in cases:
        text = await check(await post(api, data, fmt), status)
        assert text and key not in text
    assert await api.redis.hlen(api.keys.case_numbers) == before == 0


async def test_description_of_4000_is_accepted(api: ApiHarness):
    key = await token(api)
    number = await create(api, key, description="y" * 4000)
    assert len((await api.service.cases.get(number))["description"]) == 4000


# --- reading --------------------------------------------------------------------------------

def check_fields(req: dict[str, Any]) -> None:
    assert set(req) == REQUEST_FIELDS, set(req) ^ REQUEST_FIELDS
    assert req["status"] in {"open", "closed"}
    for key in ("requested_datetime", "updated_datetime", "expected_datetime"):
        when = datetime.fromisoformat(req[key])
        assert when.utcoffset() is not None, req[key]
    assert req["description"] == ""


async def test_get_request_fields_and_no_personal_data(api: ApiHarness):
    key = await token(api)
    number = await create(api, key, media_url="https://img.example.org/p.jpg")
    client = await _client(api)
    resp = await client.get(f"{P}/requests/{number}.json?lang=en")
    assert resp.status == 200
    text = await resp.text()
    (req,) = json.loads(text)
    check_fields(req)
    assert req["service_request_id"] == number and req["status"] == "open"
    assert req["service_code"] == "road_damage"
    assert req["service_name"] == "Potholes and road damage"
    assert req["agency_responsible"] == "Municipal Roads Authority"
    assert req["lat"] == round(LAT, 3) and req["long"] == round(LON, 3)
    assert req["media_url"] == "https://img.example.org/p.jpg"
    assert req["address"] == "ul. Piotrkowska 100"
    tz = api.cfg.city.tzinfo()
    offset = datetime.fromisoformat(req["requested_datetime"]).utcoffset()
    assert offset == datetime.now(tz).utcoffset()
    expected = datetime.fromisoformat(req["expected_datetime"])
    requested = datetime.fromisoformat(req["requested_datetime"])
    assert timedelta(hours=71) < expected - requested <= timedelta(hours=73)
    xml = await (await client.get(f"{P}/requests/{number}.xml")).text()
    root = ET.fromstring(xml)
    assert root.tag == "service_requests"
    assert {e.tag for e in root.find("request")} == REQUEST_FIELDS  # type: ignore[union-attr]
    lists = [await (await client.get(f"{P}/requests.json")).text(),
             await (await client.get(f"{P}/requests.xml")).text()]
    for body in [text, xml, *lists]:
        for secret in (SECRET_TEXT, "kod do domofonu", EMAIL, "600100200", "600 100 200",
                       "Ola", "Nowak", key):
            assert secret not in body, secret
    await json_error(await client.get(f"{P}/requests/Z-2026-999999.json"), 404)
    await xml_error(await client.get(f"{P}/requests/nonsense.xml"), 404)


async def test_completing_closes_with_the_public_note(api: ApiHarness):
    key = await token(api)
    number = await create(api, key)
    cases = api.service.cases
    await cases.set_status(number, "in_progress", BOSS, note="ekipa 3")
    await cases.set_status(number, "completed", BOSS, note="internal: asfalt na zimno",
                           public_note="Ubytek uzupełniono.")
    client = await _client(api)
    (req,) = await (await client.get(f"{P}/requests/{number}.json")).json()
    check_fields(req)
    assert req["status"] == "closed"
    assert req["status_notes"] == "Ubytek uzupełniono."
    root = ET.fromstring(await (await client.get(f"{P}/requests/{number}.xml")).text())
    assert root.find("request").findtext("status") == "closed"  # type: ignore[union-attr]
    assert "internal" not in await (await client.get(f"{P}/requests.json")).text()


async def test_list_filters(api: ApiHarness):
    key = await token(api)
    road = await create(api, key)
    lamp = await create(api, key, service_code="street_lighting", lat=LAT + 0.01)
    done = await create(api, key, lat=LAT + 0.02)
    await api.service.cases.set_status(done, "rejected", BOSS, public_note="To nie nasze.")
    client = await _client(api)

    async def ids(query: str) -> list[str]:
        resp = await client.get(f"{P}/requests.json{query}")
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        for req in body:
            check_fields(req)
        return [r["service_request_id"] for r in body]

    assert await ids("") == [done, lamp, road]  # newest first
    assert await ids("?status=open") == [lamp, road]
    assert await ids("?status=closed") == [done]
    assert await ids("?service_code=street_lighting") == [lamp]
    assert await ids("?service_code=road_damage&status=open") == [road]
    assert sorted(await ids(f"?service_request_id={road},{lamp},Z-2026-999999")) == sorted(
        [road, lamp])
    tz = api.cfg.city.tzinfo()
    past = (datetime.now(tz) - timedelta(days=200)).isoformat(timespec="seconds")
    older = (datetime.now(tz) - timedelta(days=100)).isoformat(timespec="seconds")
    assert await ids(f"?start_date={past}&end_date={older}".replace("+", "%2B")) == []
    later = (datetime.now(tz) + timedelta(hours=1)).isoformat(timespec="seconds")
    hour_ago = (datetime.now(tz) - timedelta(hours=1)).isoformat(timespec="seconds")
    q = f"?start_date={hour_ago}&end_date={later}".replace("+", "%2B")
    assert await ids(q) == [done, lamp, road]
    assert await ids(f"?start_date={later}".replace("+", "%2B")) == []
    await json_error(await client.get(f"{P}/requests.json?status=pending"), 400)
    await xml_error(await client.get(f"{P}/requests.xml?start_date=yesterday"), 400)
    await json_error(await client.get(
        f"{P}/requests.json?start_date={later}&end_date={hour_ago}".replace("+", "%2B")), 400)


async def test_created_between(api: ApiHarness):
    key = await token(api)
    first = await create(api, key)
    second = await create(api, key, lat=LAT + 0.01)
    cases = api.service.cases
    now = await api.service.store.now_ms()
    assert [c["number"] for c in await cases.created_between(now - 60_000, now)] == [second,
                                                                                      first]
    assert await cases.created_between(now + 120_000, now + 240_000) == []
    assert await cases.created_between(now - 10 * 86_400_000, now - 86_400_000) == []
    assert len(await cases.created_between(now - 60_000, now, limit=1)) == 1
