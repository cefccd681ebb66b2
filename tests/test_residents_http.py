"""Residents recognised across channels over the API: the agent's history view and withdrawing
consent, on the real app, Redis and dispatcher."""

from __future__ import annotations

from typing import Any

from router.dispatcher import Dispatcher
from tests.api_helpers import API, ApiHarness, Bearer, Session, error_of

PHONE = "+48600100200"


async def _create(intake: Bearer, **body: Any) -> str:
    resp = await intake.post("/interactions", {"channel": "voice", "queue": "voice", **body})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def _delete(who: Bearer | Session, path: str) -> Any:
    if isinstance(who, Bearer):
        headers = {"Authorization": f"Bearer {who.token}"}
    else:
        headers = {"X-CSRF-Token": who.csrf}
    return await who.client.delete(API + path, headers=headers)


async def _held_by_anna(api: ApiHarness, dispatcher: Dispatcher, intake: Bearer) -> dict[str, Any]:
    """A web form last week with consent (resident left since), then a call from that phone
    (no consent flag) which Anna (a1) takes."""
    earlier = await _create(intake, channel="chat", queue="chat", subject="Wniosek o dowód",
                            contacts=["600 100 200", "Jan@Example.pl"], consent=True)
    resp = await intake.post(f"/interactions/{earlier}/resident-left", {})
    assert resp.status == 200, await resp.text()
    call = await _create(intake, resident="600100200")
    anna = await api.session("anna", "agent", "a1")
    resp = await anna.post("/agents/a1/login", {"ready": True})
    assert resp.status == 200, await resp.text()
    assert await dispatcher.match_round() == 1
    resp = await anna.post(f"/agents/a1/interactions/{call}/accept")
    assert resp.status == 200, await resp.text()
    return {"earlier": earlier, "call": call, "anna": anna}


async def test_agent_holding_the_interaction_sees_the_history(
    api: ApiHarness, dispatcher: Dispatcher
) -> None:
    intake = await api.bearer("gateway", "intake")
    got = await _held_by_anna(api, dispatcher, intake)
    anna: Session = got["anna"]

    resp = await anna.get(f"/interactions/{got['call']}/history")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["recognised"] is True and body["resident_id"]
    (entry,) = body["interactions"]
    assert set(entry) == {"id", "ref", "channel", "queue", "topic", "state", "created_ms",
                          "subject"}  # fmt: skip
    assert entry["id"] == got["earlier"] and entry["channel"] == "chat"
    assert entry["state"] == "abandoned" and entry["subject"] == "Wniosek o dowód"
    assert entry["created_ms"] > 0 and entry["ref"]

    # another agent does not hold it; no credentials at all
    bartek = await api.session("bartek", "agent", "a2")
    resp = await bartek.get(f"/interactions/{got['call']}/history")
    assert resp.status == 403 and (await error_of(resp))["code"] == "forbidden"
    anonymous = await api.client()
    resp = await anonymous.get(f"{API}/interactions/{got['call']}/history")
    assert resp.status == 401 and (await error_of(resp))["code"] == "unauthorized"
    # intake systems do not read residents' histories
    resp = await intake.get(f"/interactions/{got['call']}/history")
    assert resp.status == 403

    # a supervisor reads any, including the earlier contact's own view of the call
    boss = await api.bearer("boss", "supervisor")
    resp = await boss.get(f"/interactions/{got['earlier']}/history")
    body = await resp.json()
    assert [e["id"] for e in body["interactions"]] == [got["call"]]
    resp = await boss.get("/interactions/nope/history")
    assert resp.status == 404


async def test_unrecognised_resident_has_an_empty_history(api: ApiHarness) -> None:
    intake = await api.bearer("gateway", "intake")
    call = await _create(intake, resident="anonymous", consent=True)
    boss = await api.bearer("boss", "supervisor")
    resp = await boss.get(f"/interactions/{call}/history")
    assert resp.status == 200
    assert await resp.json() == {"recognised": False, "resident_id": None, "interactions": []}


async def test_withdrawing_consent(api: ApiHarness, dispatcher: Dispatcher) -> None:
    intake = await api.bearer("gateway", "intake")
    got = await _held_by_anna(api, dispatcher, intake)
    anna: Session = got["anna"]
    rid = (await (await anna.get(f"/interactions/{got['call']}/history")).json())["resident_id"]

    # agents may not; a session without its CSRF token may not
    resp = await _delete(anna, f"/residents/{rid}/consent")
    assert resp.status == 403
    chief = await api.session("chief", "supervisor")
    resp = await chief.client.delete(f"{API}/residents/{rid}/consent")
    assert resp.status == 403 and (await error_of(resp))["code"] == "csrf_failed"

    resp = await _delete(chief, f"/residents/{rid}/consent")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["resident_id"] == rid
    assert (body["identities"], body["interactions"]) == (2, 2) and body["withdrawn_ms"] > 0

    resp = await anna.get(f"/interactions/{got['call']}/history")
    assert await resp.json() == {"recognised": False, "resident_id": None, "interactions": []}
    again = await _delete(chief, f"/residents/{rid}/consent")
    assert again.status == 200 and (await again.json())["withdrawn_ms"] == body["withdrawn_ms"]
    resp = await _delete(chief, "/residents/0123456789abcdef/consent")
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_resident"

    # the next call from that number is not recognised
    later = await _create(intake, resident=PHONE)
    boss = await api.bearer("boss", "supervisor")
    resp = await boss.get(f"/interactions/{later}/history")
    assert (await resp.json())["recognised"] is False


async def test_withdrawing_consent_by_contact(api: ApiHarness) -> None:
    intake = await api.bearer("gateway", "intake")
    await _create(intake, resident=PHONE, consent=True, contacts=["jan@example.pl"])
    boss = await api.bearer("boss", "supervisor")
    resp = await boss.post("/residents/withdraw-consent", {"contact": "JAN@example.pl"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["identities"] == 2
    resp = await boss.post("/residents/withdraw-consent", {"contact": "600 100 200"})
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_resident"
    resp = await boss.post("/residents/withdraw-consent", {"contact": "hello"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "invalid_contact"
    resp = await boss.post("/residents/withdraw-consent", {"contact": "x", "resident": "y"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "validation_error"
    agent = await api.bearer("anna", "agent", "a1")
    resp = await agent.post("/residents/withdraw-consent", {"contact": PHONE})
    assert resp.status == 403
