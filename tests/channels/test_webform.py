"""The web form channel end to end: the real aiohttp app with the form routes on a loopback
server, the real Redis, and the interactions it queues read back from the store."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp import FormData, test_utils

from channels.webform.adapter import WebformAdapter
from queues.keys import Keys
from queues.store import RoutingStore
from router.config import CitylineConfig, load_config
from router.config_webform import WebformConfig
from router.http.app import AppContext, create_app
from router.service import RoutingService

ENV = {"CITYLINE_WEBFORM_CSRF_SECRET": "form-s3cret"}
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
REF = re.compile(r'class="ref">([0-9]{4}-[0-9]{6})<')
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
SCRIPT = b"#!/bin/sh\nrm -rf /\n" + b"x" * 100
EVIL = '<script>alert("x")</script> dziura na Długiej'


@pytest.fixture
def cfg() -> CitylineConfig:
    return load_config(None, env={})  # the packaged city: a `webform` queue, pl/en/uk


@dataclass
class Form:
    client: test_utils.TestClient
    adapter: WebformAdapter
    service: RoutingService
    redis: aioredis.Redis
    data_dir: Path

    async def token(self) -> str:
        resp = await self.client.get("/form?lang=pl")
        assert resp.status == 200
        match = TOKEN.search(await resp.text())
        assert match
        return match.group(1)

    async def post(self, token: str | None, photo: tuple[bytes, str] | None = None,
                   **fields: str) -> Any:
        data = FormData()
        if token is not None:
            data.add_field("csrf_token", token)
        values = {"category": "road_damage", "description": "Dziura w jezdni",
                  "address": "ul. Długa 5", "lat": "52.23", "lon": "21.01",
                  "contact": "Jan.Kowalski@Example.PL"} | fields
        for name, value in values.items():
            data.add_field(name, value)
        if photo is not None:
            data.add_field("photo", photo[0], filename="zdjecie.png", content_type=photo[1])
        return await self.client.post("/form", data=data)

    async def stored(self) -> int:
        return int(await self.redis.hlen(Keys().ref_index))


FormFactory = Callable[..., Any]


@pytest.fixture
async def make_form(redis: aioredis.Redis, cfg: CitylineConfig,
                    tmp_path: Path) -> AsyncIterator[FormFactory]:
    clients: list[test_utils.TestClient] = []

    async def make(**overrides: Any) -> Form:
        store = RoutingStore(redis)
        await store.load_scripts()
        service = RoutingService(store, cfg)
        adapter = WebformAdapter(service, cfg, WebformConfig(**overrides), tmp_path, env=ENV)
        app = create_app(AppContext(config=cfg, redis=redis, keys=Keys(), store=store),
                         extra_setup=[adapter.setup_routes])
        client = test_utils.TestClient(test_utils.TestServer(app, host="127.0.0.1", port=0))
        await client.start_server()
        clients.append(client)
        return Form(client, adapter, service, redis, tmp_path)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def form(make_form: FormFactory) -> Form:
    return await make_form()


async def test_form_lists_categories_in_the_residents_language(form: Form) -> None:
    pl = await (await form.client.get("/form?lang=pl")).text()
    uk = await (await form.client.get("/form?lang=uk")).text()
    assert 'value="road_damage">Dziury i uszkodzenia jezdni<' in pl
    assert 'value="driving_licences">Prawa jazdy<' in pl
    assert 'value="road_damage">Ями та пошкодження дороги<' in uk
    assert '<html lang="uk">' in uk
    # only information and intervention topics: no languages, no first/second line
    assert "lang_en" not in pl and 'value="general"' not in pl
    for name in ("description", "address", "lat", "lon", "photo", "contact"):
        assert f'name="{name}"' in pl
    assert TOKEN.search(pl)


async def test_valid_form_queues_an_interaction(form: Form) -> None:
    resp = await form.post(await form.token(), photo=(PNG, "image/png"), description=EVIL)
    assert resp.status == 200, await resp.text()
    page = await resp.text()
    ref = REF.search(page).group(1)  # type: ignore[union-attr]
    assert f'href="/status/{ref}?lang=pl"' in page
    ix = await form.service.store.by_ref(ref)
    assert ix["channel"] == "webform" and ix["queue"] == "webform" and ix["state"] == "queued"
    assert ix["topic"] == "road_damage"
    assert ix["body"] == EVIL  # stored as the text it is
    assert ix["resident"] == "jan.kowalski@example.pl"
    meta = json.loads(ix["meta"])
    assert meta["address"] == "ul. Długa 5"
    assert (meta["lat"], meta["lon"]) == (52.23, 21.01)
    assert meta["contact"] == "jan.kowalski@example.pl"
    assert re.fullmatch(r"photo-[0-9a-f]{24}\.png", meta["photo"])
    saved = form.data_dir / "uploads" / ix["id"] / meta["photo"]
    assert saved.read_bytes() == PNG
    assert not list((form.data_dir / "uploads" / ".incoming").iterdir())


async def test_the_same_form_sent_twice_is_one_request(form: Form) -> None:
    token = await form.token()
    first = REF.search(await (await form.post(token)).text())
    second = REF.search(await (await form.post(token)).text())
    assert first and second and first.group(1) == second.group(1)
    assert await form.stored() == 1


@pytest.mark.parametrize("kind", ["missing", "forged", "expired"])
async def test_bad_csrf_token_is_refused(form: Form, kind: str) -> None:
    good = await form.token()
    token = {
        "missing": None,
        "forged": good[:-4] + ("0000" if not good.endswith("0000") else "1111"),
        "expired": form.adapter.csrf.issue(now=time.time() - 3 * 3600),
    }[kind]
    resp = await form.post(token)
    assert resp.status == 403
    assert "text/html" in resp.content_type
    assert await form.stored() == 0


async def test_json_request(form: Form) -> None:
    resp = await form.client.post("/api/v1/requests", json={
        "category": "local_taxes", "description": "Jak zapłacić podatek?",
        "contact": "601 234 567", "language": "en"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == {"ref", "status_url"}
    assert re.fullmatch(r"[0-9]{4}-[0-9]{6}", body["ref"])
    assert body["status_url"] == f"/status/{body['ref']}"
    ix = await form.service.store.by_ref(body["ref"])
    assert ix["queue"] == "webform" and ix["topic"] == "local_taxes"
    assert ix["language"] == "en" and ix["resident"] == "+48601234567"


@pytest.mark.parametrize(("extra", "code"), [
    ({"admin": True}, "invalid_request"),
    ({"lat": 91, "lon": 21}, "invalid_request"),
    ({"lat": 52, "lon": -181}, "invalid_request"),
    ({"category": "lang_en"}, "invalid_request"),
    ({"contact": "not a contact"}, "invalid_request"),
])
async def test_json_bad_input_is_422(form: Form, extra: dict[str, Any], code: str) -> None:
    payload = {"category": "road_damage", "description": "x", "contact": "a@b.pl"} | extra
    resp = await form.client.post("/api/v1/requests", json=payload)
    assert resp.status == 422
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert await form.stored() == 0


async def test_out_of_range_coordinates_in_the_form(form: Form) -> None:
    resp = await form.post(await form.token(), lat="95", lon="21")
    assert resp.status == 422
    assert await form.stored() == 0


async def test_script_posing_as_png_is_refused(form: Form) -> None:
    resp = await form.post(await form.token(), photo=(SCRIPT, "image/png"))
    assert resp.status == 422
    assert await form.stored() == 0
    assert not (form.data_dir / "uploads").exists()


async def test_oversized_photo_is_413(make_form: FormFactory) -> None:
    form = await make_form(max_photo_bytes=2048)
    resp = await form.post(await form.token(), photo=(PNG + b"\x00" * 4096, "image/png"))
    assert resp.status == 413
    assert await form.stored() == 0


async def test_rate_limit_per_ip(make_form: FormFactory) -> None:
    form = await make_form(rate_limit_per_ip=2)
    payload = {"category": "road_damage", "description": "x", "contact": "a@b.pl"}
    for _ in range(2):
        assert (await form.client.post("/api/v1/requests", json=payload)).status == 201
    resp = await form.client.post("/api/v1/requests", json=payload)
    assert resp.status == 429
    assert (await resp.json())["error"]["code"] == "too_many_requests"
    assert (await form.post(await form.token())).status == 429
    assert await form.stored() == 2


async def test_status_page_shows_no_personal_data(form: Form) -> None:
    resp = await form.post(await form.token(), description=EVIL, contact="+48 601 234 567")
    ref = REF.search(await resp.text()).group(1)  # type: ignore[union-attr]
    page = await (await form.client.get(f"/status/{ref}")).text()
    assert ref in page
    assert "Dziury i uszkodzenia jezdni" in page
    assert "przyjęte, czeka na obsługę" in page
    for private in ("<script>", "&lt;script&gt;", "alert", "Długiej", "601", "ul. Długa"):
        assert private not in page
    en = await (await form.client.get(f"/status/{ref}?lang=en")).text()
    assert "Potholes and road damage" in en


async def test_status_of_unknown_ref_is_404(form: Form) -> None:
    assert (await form.client.get("/status/2026-999999")).status == 404
    resp = await form.client.get("/status/%3Cscript%3E")
    assert resp.status == 404
    assert "<script>" not in await resp.text()
