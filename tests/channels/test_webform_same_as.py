"""A web-form resident joins one of the likely duplicates shown to them ("this is the same
problem: tell me when it is dealt with"): the thank-you page's button (CSRF, the private key)
and its JSON twin POST /api/v1/requests/{ref}/same-as. Only a case the request's own category
and place list as a likely duplicate may be joined; refusals change nothing. End to end: the
resident who joined gets the completion notice by e-mail (the SMTP sink of the `city` fixture).
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import openapi_spec_validator
import pytest
import redis.asyncio as aioredis
from aiohttp import test_utils

from channels.webform.adapter import WebformAdapter
from queues.keys import Keys
from queues.store import RoutingStore
from router.auth import Auth, Role
from router.cases import Actor, CaseInput
from router.config import CitylineConfig
from router.config_webform import WebformConfig
from router.http.api import setup_api
from router.http.app import AppContext, create_app
from router.service import RoutingService
from tests import test_cases_loop as loop
from tests.api_helpers import cheap_hasher
from tests.channels import test_webform as webform
from tests.channels.test_webform import ENV, LINK, REF, Form, FormFactory
from tests.routing_fixtures import eventually

# the fixtures of tests/channels/test_webform.py (the packaged city, the form on its own app)
cfg, make_form, form = webform.cfg, webform.make_form, webform.form
city = loop.city  # SMS adapter + fake gateway, e-mail adapter + SMTP sink, the API

BUTTON = re.compile(
    r'<form class="same-as" method="post" action="([^"]+)">'
    r'<input type="hidden" name="csrf_token" value="([^"]+)">'
    r'<input type="hidden" name="key" value="([^"]+)">'
    r'<input type="hidden" name="case_number" value="([^"]+)">'
    r'<button type="submit">([^<]+)</button></form>')
LAT, LON = 52.2297, 21.0122
NEAR = {"lat": "52.22985", "lon": "21.0122"}  # ~17 m away (duplicate_radius_m is 50)
BOSS = Actor("maria", Role.supervisor)


async def open_case(service: RoutingService, category: str = "road_damage",
                    lat: float = LAT, lon: float = LON) -> str:
    made = await service.cases.create_standalone(
        CaseInput(category=category, description="Dziura", address="ul. Długa 5",
                  lat=lat, lon=lon), language="pl", actor=BOSS)
    return made.number


def buttons(page: str) -> list[dict[str, str]]:
    return [{"action": html.unescape(m[0]), "csrf_token": html.unescape(m[1]),
             "key": html.unescape(m[2]), "case_number": html.unescape(m[3]),
             "label": html.unescape(m[4])} for m in BUTTON.findall(page)]


async def thank_you(form: Form, lang: str = "pl", **fields: str) -> tuple[str, str, str]:
    """Send the form near the open cases: (reference, status key, the thank-you page)."""
    token = await form.token()
    values = {"category": "road_damage", "description": "Dziura", "contact": "jan@example.pl",
              **NEAR, "csrf_token": token} | fields
    resp = await form.client.post(f"/form?lang={lang}", data=values)
    assert resp.status == 200, await resp.text()
    page = await resp.text()
    ref, link = REF.search(page), LINK.search(page)
    assert ref and link
    key = html.unescape(link.group(1)).split("key=", 1)[1].split("&", 1)[0]
    return ref.group(1), key, page


async def press(form: Form, button: dict[str, str], **change: str | None) -> Any:
    """Post the button's form, with fields changed (None: left out)."""
    data = {k: button[k] for k in ("csrf_token", "key", "case_number")} | change
    return await form.client.post(button["action"],
                                  data={k: v for k, v in data.items() if v is not None})


async def linked_to(form: Form, ref: str) -> str:
    return (await form.service.interaction_by_ref(ref)).get("case", "")


async def subscribers(service: RoutingService, number: str) -> list[str]:
    case = await service.cases.get(number)
    return sorted(s.ix for s in await service.cases.subscribers(case))


# --- the thank-you page -----------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "label"), [
    ("pl", "To ten sam problem – powiadom mnie o jego załatwieniu"),
    ("en", "This is the same problem: tell me when it is dealt with"),
    ("uk", "Це та сама проблема – повідомте мене, коли її вирішать"),
])
async def test_the_thank_you_page_has_a_button_per_likely_duplicate(
        form: Form, lang: str, label: str) -> None:
    first = await open_case(form.service)
    second = await open_case(form.service, lat=LAT + 0.0001)
    await open_case(form.service, category="street_lighting")  # not listed: no button
    ref, key, page = await thank_you(form, lang)
    found = buttons(page)
    assert sorted(b["case_number"] for b in found) == sorted([first, second])
    for b in found:
        assert b["action"] == f"/status/{ref}/same-as?lang={lang}"
        assert b["key"] == key and b["label"] == label
        assert form.adapter.csrf.check(b["csrf_token"]) is None
    assert "<script" not in page.lower() and " on" + "click" not in page.lower()


async def test_no_button_without_a_likely_duplicate(form: Form) -> None:
    await open_case(form.service, lat=52.2400)  # 1 km away
    _ref, _key, page = await thank_you(form)
    assert buttons(page) == [] and "same-as" not in page


# --- the HTML path ----------------------------------------------------------------------------


async def test_the_resident_joins_the_case_from_the_thank_you_page(form: Form) -> None:
    number = await open_case(form.service)
    ref, _key, page = await thank_you(form)
    [button] = buttons(page)
    ix = await form.service.interaction_by_ref(ref)
    resp = await press(form, button)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    done = await resp.text()
    assert f"Twoje zgłoszenie {ref} jest teraz częścią sprawy {number}." in done
    assert f'href="/cases/{number}?lang=pl"' in done
    assert await linked_to(form, ref) == number
    assert await subscribers(form.service, number) == [ix["id"]]
    after = await form.service.interaction_by_ref(ref)
    # the request stays where it was, for an agent, who sees it has a case
    assert (after["state"], after["queue"]) == (ix["state"], ix["queue"]) == ("queued",
                                                                             "webform")
    reports = (await form.service.cases.get(number))["reports"]
    # pressing it again is harmless: said so, nothing added
    again = await press(form, button)
    assert again.status == 200
    assert f"Twoje zgłoszenie {ref} już jest częścią sprawy {number}." in await again.text()
    assert await subscribers(form.service, number) == [ix["id"]]
    assert (await form.service.cases.get(number))["reports"] == reports
    # ... even once the case is closed (no longer a likely duplicate): it is still theirs
    await form.service.cases.set_status(number, "rejected", BOSS, public_note="Droga prywatna")
    closed = await press(form, button)
    assert closed.status == 200 and "już jest częścią" in await closed.text()


async def test_refusals_change_nothing(make_form: FormFactory,
                                       caplog: pytest.LogCaptureFixture) -> None:
    form = await make_form(rate_limit_per_ip=100)
    number = await open_case(form.service)
    far = await open_case(form.service, lat=52.2400)
    other = await open_case(form.service, category="street_lighting")
    ref, key, page = await thank_you(form)
    [button] = buttons(page)
    stranger_ref, _stranger_key, _ = await thank_you(form, description="Inna dziura")
    wrong_key = key[:-1] + ("A" if key[-1] != "A" else "B")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"key": wrong_key}, 403, "wrong_key"),
        ({"key": None}, 403, "wrong_key"),
        ({"key": ""}, 403, "wrong_key"),
        ({"csrf_token": None}, 403, "csrf_failed"),
        ({"csrf_token": button["csrf_token"][:-2] + "00"}, 403, "csrf_failed"),
        ({"case_number": far}, 409, "not_a_likely_duplicate"),
        ({"case_number": other}, 409, "not_a_likely_duplicate"),
        ({"case_number": "Z-2026-999999"}, 409, "not_a_likely_duplicate"),
        ({"case_number": "<b>x</b>"}, 422, "invalid_case_number"),
        ({"action": f"/status/{stranger_ref}/same-as?lang=pl"}, 403, "wrong_key"),
        ({"action": "/status/2026-999999/same-as?lang=pl"}, 404, "not_found"),
        ({"action": "/status/x%3Cb%3E/same-as?lang=pl"}, 404, "not_found"),
    ]
    for change, status, code in cases:
        target = {**button, "action": change.pop("action", button["action"])}
        with caplog.at_level("WARNING", logger="channels.webform.adapter"):
            caplog.clear()
            resp = await press(form, target, **change)
        assert resp.status == status, (change, await resp.text())
        assert "<b>" not in await resp.text()
        assert any(f"{status} {code}" in r.getMessage() for r in caplog.records), change
    for r in (ref, stranger_ref):
        assert await linked_to(form, r) == ""
    for n in (number, far, other):
        assert await subscribers(form.service, n) == []


async def test_a_case_closed_since_is_refused(form: Form) -> None:
    number = await open_case(form.service)
    ref, _key, page = await thank_you(form)
    [button] = buttons(page)
    await form.service.cases.set_status(number, "rejected", BOSS, public_note="Droga prywatna")
    resp = await press(form, button)
    assert resp.status == 409
    assert await linked_to(form, ref) == ""
    assert await subscribers(form.service, number) == []


async def test_a_request_that_has_its_own_case_is_not_moved(form: Form) -> None:
    number = await open_case(form.service)
    ref, _key, page = await thank_you(form)
    [button] = buttons(page)
    ix = await form.service.interaction_by_ref(ref)
    own = await form.service.cases.create_from_interaction(ix, CaseInput(), BOSS)
    resp = await press(form, button)
    assert resp.status == 409 and own.number in await resp.text()
    assert await linked_to(form, ref) == own.number
    assert await subscribers(form.service, number) == []


async def test_joining_counts_in_the_rate_limit(make_form: FormFactory) -> None:
    form = await make_form(rate_limit_per_ip=2, clock=lambda: 6000.0)
    number = await open_case(form.service)
    _ref, _key, page = await thank_you(form)  # 1
    [button] = buttons(page)
    assert (await press(form, button, key="x" * 20)).status == 403  # 2: refused, but counted
    resp = await press(form, button)  # 3
    assert resp.status == 429
    assert await subscribers(form.service, number) == []


# --- the JSON path ----------------------------------------------------------------------------


async def api_request(form: Form, **fields: Any) -> dict[str, Any]:
    body = {"category": "road_damage", "description": "Dziura", "contact": "jan@example.pl",
            "lat": float(NEAR["lat"]), "lon": float(NEAR["lon"]), "language": "en"} | fields
    resp = await form.client.post("/api/v1/requests", json=body)
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    answer["key"] = answer["status_url"].split("key=", 1)[1]
    return answer


async def test_json_same_as(form: Form) -> None:
    number = await open_case(form.service)
    far = await open_case(form.service, lat=52.2400)
    made = await api_request(form)
    assert [d["number"] for d in made["likely_duplicates"]] == [number]
    url = f"/api/v1/requests/{made['ref']}/same-as"
    refusals: list[tuple[str, Any, int, str]] = [
        (url, {"key": made["key"][:-1] + "_", "case_number": number}, 403, "wrong_key"),
        (url, {"case_number": number}, 422, "invalid_request"),
        (url, {"key": made["key"], "case_number": far}, 409, "not_a_likely_duplicate"),
        (url, {"key": made["key"], "case_number": number, "x": 1}, 422, "invalid_request"),
        (url, [made["key"], number], 422, "invalid_body"),
        ("/api/v1/requests/2026-999999/same-as", {"key": made["key"], "case_number": number},
         404, "not_found"),
    ]
    for path, body, status, code in refusals:
        resp = await form.client.post(path, json=body)
        assert resp.status == status, (body, await resp.text())
        assert (await resp.json())["error"]["code"] == code
    form_body = await form.client.post(url, data={"key": made["key"], "case_number": number})
    assert form_body.status == 415  # a cross-site form cannot post this (see api_submit)
    assert await linked_to(form, made["ref"]) == ""
    assert await subscribers(form.service, number) == []

    ok = await form.client.post(url, json={"key": made["key"], "case_number": number})
    assert ok.status == 200, await ok.text()
    assert ok.headers["Cache-Control"] == "no-store"
    assert await ok.json() == {"ref": made["ref"], "case_number": number, "linked": True,
                               "case_url": f"/cases/{number}?lang=en"}  # the request's lang
    ix = await form.service.interaction_by_ref(made["ref"])
    assert ix["case"] == number and ix["state"] == "queued"
    assert await subscribers(form.service, number) == [ix["id"]]
    again = await form.client.post(url, json={"key": made["key"], "case_number": number})
    assert (await again.json())["linked"] is False
    assert await subscribers(form.service, number) == [ix["id"]]


async def test_json_same_as_is_in_the_api_document(redis: aioredis.Redis, cfg: CitylineConfig,
                                                   tmp_path: Path) -> None:
    store = RoutingStore(redis)
    await store.load_scripts()
    service = RoutingService(store, cfg)
    adapter = WebformAdapter(service, cfg, WebformConfig(), tmp_path, env=ENV)
    auth = Auth(redis, store.keys, cfg, hasher=cheap_hasher())
    app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                     extra_setup=[lambda app: setup_api(app, service, auth),
                                  adapter.setup_routes])
    async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1",
                                                           port=0)) as client:
        document = await (await client.get("/api/v1/openapi.json")).json()
    op = document["paths"]["/api/v1/requests/{ref}/same-as"]["post"]
    assert [p["name"] for p in op["parameters"]] == ["ref"]
    assert {"200", "403", "404", "409", "422", "429"} <= set(op["responses"])
    openapi_spec_validator.validate(document)


# --- end to end: told by e-mail when the case is done ------------------------------------------


async def test_the_resident_who_joined_is_told_by_email(city: loop.City,
                                                        tmp_path: Path) -> None:
    service = city.service
    number = await open_case(service)
    adapter = WebformAdapter(service, service.cfg, WebformConfig(), tmp_path, env=ENV)
    app = create_app(AppContext(config=service.cfg, redis=service.store.redis, keys=Keys(),
                                store=service.store), extra_setup=[adapter.setup_routes])
    async with test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1",
                                                           port=0)) as client:
        page = await (await client.get("/form?lang=pl")).text()
        token = html.unescape(re.search(r'name="csrf_token" value="([^"]+)"', page)[1])
        resp = await client.post("/form?lang=pl", data={
            "csrf_token": token, "category": "road_damage", "description": "Ta sama dziura",
            "contact": "Jan.Kowalski@Example.PL", **NEAR})
        thanks = await resp.text()
        assert resp.status == 200, thanks
        ref = REF.search(thanks)[1]  # type: ignore[index]
        [button] = buttons(thanks)
        assert button["case_number"] == number
        data = {k: button[k] for k in ("csrf_token", "key", "case_number")}
        joined = await client.post(button["action"], data=data)
        assert joined.status == 200 and number in await joined.text()
    ix = await service.interaction_by_ref(ref)
    _agent, member, boss = await loop.staff(city)
    view = await loop.ok(await boss.get(f"/cases/{number}"))
    assert {"ix": ix["id"], "channel": "webform", "told_by": "email"}.items() <= next(
        r for r in view["residents"] if r["ix"] == ix["id"]).items()
    assert (await city.api.ix(ix["id"]))["case"] == number  # the agent sees it has a case
    await loop.ok(await member.put(f"/cases/{number}/status", {"status": "in_progress"}))
    await loop.ok(await member.put(f"/cases/{number}/status", {
        "status": "completed", "note": "wewnętrzna uwaga", "public_note": "Ubytek załatano."}))
    mails = await eventually(lambda: [m for m in city.mails_to("jan.kowalski@example.pl")
                                      if number in str(m["Subject"])
                                      and "załatwione" in str(m["Subject"])])
    body = mails[0].get_content()
    assert "Ubytek załatano." in body and "wewnętrzna" not in body
