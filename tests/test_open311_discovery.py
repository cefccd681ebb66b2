"""Open311 Service Discovery (GET /open311/discovery.json|xml): a client finds the GeoReport v2
endpoint, its formats and how to get an api_key; the URL it gives answers services.json."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from urllib.parse import urlsplit

from tests import test_open311 as geo
from tests.api_helpers import ApiHarness

cfg = geo.cfg  # the packaged city


async def test_discovery_json_leads_to_the_endpoint(api: ApiHarness) -> None:
    client = await api.client()
    resp = await client.get("/open311/discovery.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    data = await resp.json()
    assert set(data) == {"changeset", "contact", "key_service", "endpoints"}
    assert datetime.fromisoformat(data["changeset"]).tzinfo is not None
    assert "token create" in data["key_service"]
    [endpoint] = data["endpoints"]
    assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert endpoint["type"] == "production"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    url = endpoint["url"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/open311/v2")
    services = await client.get(urlsplit(url).path + "/services.json")
    assert services.status == 200
    assert any(s["service_code"] == "road_damage" for s in await services.json())


async def test_discovery_xml_and_the_configured_public_address(api: ApiHarness) -> None:
    api.service.cfg.cases.public_url = "https://kontakt.nowygrod.example.pl"
    client = await api.client()
    resp = await client.get("/open311/discovery.xml")
    assert resp.status == 200 and resp.content_type == "text/xml"
    root = ET.fromstring(await resp.text())
    assert root.tag == "discovery"
    endpoint = root.find("endpoints/endpoint")
    assert endpoint is not None
    assert endpoint.findtext("url") == "https://kontakt.nowygrod.example.pl/open311/v2"
    assert [f.text for f in endpoint.findall("formats/format")] == ["text/xml",
                                                                   "application/json"]
    assert (await client.get("/open311/discovery.csv")).status == 404
