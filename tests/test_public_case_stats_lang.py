"""The public case statistics speak the residents' languages: /stats/cases in the city's
default language, ?lang= for the others (page words, category and unit labels, the map's
legend), with links between them and to the case look-up; the staff report stays English."""

from __future__ import annotations

import asyncio

from tests import test_case_reports as reports
from tests.api_helpers import ApiHarness
from tests.test_case_reports import LAT, LON, make, move

cfg = reports.cfg  # the packaged city


async def test_public_statistics_in_each_language(api: ApiHarness) -> None:
    cases = api.service.cases
    done = await make(cases)
    await make(cases, "street_lighting", lat=LAT + 0.004, lon=LON - 0.003)
    await move(cases, done, "in_progress", "completed")
    anon = await api.client()

    page = await (await anon.get("/stats/cases")).text()  # the packaged city: Polish first
    assert '<html lang="pl">' in page
    assert "Statystyka zgłoszeń" in page and "Według kategorii" in page
    assert "Niedziałające latarnie uliczne" in page  # the category's Polish label
    assert 'href="/cases?lang=pl"' in page
    assert ">po terminie</text>" in page  # the map's legend too
    for code in ("pl", "en", "uk"):
        assert f'hreflang="{code}"' in page

    en = await (await anon.get("/stats/cases?lang=en")).text()
    assert '<html lang="en">' in en and "Case statistics" in en and "Median hours" in en
    assert "Broken street lamps" in en
    assert "Statystyka" not in en

    uk = await (await anon.get("/stats/cases?lang=uk")).text()
    assert '<html lang="uk">' in uk and "Статистика повідомлень" in uk
    assert "Несправні вуличні ліхтарі" in uk
    assert 'name="lang" value="uk"' in uk  # the date form keeps the language

    odd = await (await anon.get("/stats/cases?lang=xx")).text()
    assert '<html lang="pl">' in odd


async def test_the_staff_report_stays_english(api: ApiHarness) -> None:
    await make(api.service.cases)
    sup = await api.session("maria", "supervisor")
    text = await (await sup.client.get("/wall/cases")).text()
    assert '<html lang="en">' in text and "Cases report" in text and "Open now" in text


async def test_a_burst_of_visitors_costs_one_report(api: ApiHarness) -> None:
    """The public figures are computed once per minute and range, however many ask at once;
    another range or language is computed on its own."""
    from router.http.public_case_stats import CACHE_KEY

    await make(api.service.cases)
    anon = await api.client()
    cache = anon.server.app[CACHE_KEY]
    pages = await asyncio.gather(*(anon.get("/stats/cases.json") for _ in range(20)))
    assert {p.status for p in pages} == {200}
    assert cache.computed == 1
    assert (await (await anon.get("/stats/cases?lang=en")).text()).count("case-point") >= 1
    assert cache.computed == 2
    await make(api.service.cases, "street_lighting", lat=LAT + 0.004, lon=LON - 0.003)
    data = await (await anon.get("/stats/cases.json")).json()
    assert data["total"]["opened"] == 1  # still the cached minute
    cache.clear()  # what a minute passing does
    data = await (await anon.get("/stats/cases.json")).json()
    assert data["total"]["opened"] == 2
