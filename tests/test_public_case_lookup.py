"""The public look-up (GET /cases?number=...): a resident finds their case by its number typed
loosely, or by the reference number of the contact it was made of; what is not a case gets the
form again with a clear 404, and nothing typed is echoed unescaped."""

from __future__ import annotations

from tests import test_cases_loop as loop
from tests.test_cases_loop import PHONE, City, ok, staff

cfg, city = loop.cfg, loop.city  # the packaged city with SMS and e-mail, and its API


async def _case_of_a_text(c: City) -> tuple[str, str, str]:
    """(case number, its interaction's ref, the ref of a second text that has no case)."""
    _agent, _member, boss = await staff(c)
    ix_id = await c.text("look-1", PHONE, "Dziura na ul. Polnej")
    bare = await c.text("look-2", "+48600100999", "Kiedy wywóz gabarytów?")
    made = await ok(await boss.post(f"/interactions/{ix_id}/case", {
        "category": "road_damage", "address": "ul. Polna 3"}), 201)
    ref = (await c.service.interaction(ix_id))["ref"]
    bare_ref = (await c.service.interaction(bare))["ref"]
    return made["case"]["number"], ref, bare_ref


async def test_lookup_by_number_or_contact_reference(city: City) -> None:
    number, ref, bare_ref = await _case_of_a_text(city)
    client = await city.api.client()

    form = await client.get("/cases?lang=en")
    assert form.status == 200
    assert 'name="number"' in await form.text()

    loose = " ".join(number.lower())  # "z - 2 0 2 6 ..." as someone might type it
    for typed in (number, loose, ref):
        resp = await client.get("/cases", params={"number": typed, "lang": "en"},
                                allow_redirects=False)
        assert resp.status == 303, (typed, await resp.text())
        assert resp.headers["Location"] == f"/cases/{number}?lang=en"

    page = await client.get(f"/cases/{number}?lang=en")
    assert page.status == 200 and number in await page.text()

    no_case = await client.get("/cases", params={"number": bare_ref, "lang": "en"})
    assert no_case.status == 404
    assert f"Contact {bare_ref} has no report (yet)" in await no_case.text()


async def test_lookup_of_nothing_is_a_clear_404(city: City) -> None:
    client = await city.api.client()
    for typed in ("Z-2026-999999", "2026-999999", "<script>alert(1)</script>", "x" * 500):
        resp = await client.get("/cases", params={"number": typed, "lang": "en"},
                                allow_redirects=False)
        assert resp.status == 404, typed
        text = await resp.text()
        assert "There is no report with this number" in text
        assert "<script>" not in text
        assert 'name="number"' in text  # the form again, to try once more
