"""The agent desktop's and the supervisors' API, end to end on the real app, Redis and dispatcher.

Offers are made by the real `Dispatcher.match_round()`, exactly as the running dispatcher does
when woken; refusals are checked to leave the interaction, the agent and the event stream as
they were (compared before and after, not assumed).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from router.dispatcher import Dispatcher
from tests.api_helpers import ApiHarness, Bearer, Session, error_of
from tests.routing_fixtures import events


async def _intake(api: ApiHarness) -> Bearer:
    return await api.bearer("webchat", "intake")


async def _create(intake: Bearer, channel: str = "chat", queue: str = "chat", **kw: object) -> str:
    resp = await intake.post("/interactions", {"channel": channel, "queue": queue, **kw})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def _ready(session: Session, agent_id: str) -> None:
    resp = await session.post(f"/agents/{agent_id}/login", {"ready": True})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "ready"


async def test_end_to_end_chat(api: ApiHarness, dispatcher: Dispatcher, redis: aioredis.Redis):
    intake = await _intake(api)
    ix = await _create(intake, resident="+48600100200", body="Kiedy jest odbiór śmieci?")
    anna = await api.session("anna", "agent", "a1")
    await _ready(anna, "a1")

    assert await dispatcher.match_round() == 1
    resp = await anna.get("/agents/a1/offers")
    assert resp.status == 200
    offers = (await resp.json())["interactions"]
    assert [o["id"] for o in offers] == [ix]
    assert offers[0]["state"] == "offered" and offers[0]["agent"] == "a1"

    resp = await anna.post(f"/agents/a1/interactions/{ix}/accept")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "connected"

    resp = await anna.post(f"/agents/a1/interactions/{ix}/messages", {"text": "Dzień dobry!"})
    assert resp.status == 200 and (await resp.json())["index"] == 1
    resp = await intake.post(f"/interactions/{ix}/resident-messages", {"text": "Dziękuję"})
    assert resp.status == 200 and (await resp.json())["index"] == 2

    resp = await anna.get(f"/interactions/{ix}/messages")
    messages = (await resp.json())["messages"]
    assert [(m["sender"], m["text"]) for m in messages] == [
        ("agent", "Dzień dobry!"),
        ("resident", "Dziękuję"),
    ]
    resp = await anna.get(f"/interactions/{ix}")
    assert (await resp.json())["state"] == "connected"

    resp = await anna.post(f"/agents/a1/interactions/{ix}/complete")
    assert (await resp.json())["state"] == "wrapup"  # the chat queue has 30 s of wrap-up
    resp = await anna.post(
        f"/agents/a1/interactions/{ix}/wrapup-end", {"disposition": "answered", "note": "ok"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "closed"

    mine = [e for e in await events(redis) if e.ix == ix]
    assert [e.type for e in mine] == [
        "ENTERQUEUE", "OFFER", "CONNECT", "MESSAGE", "MESSAGE", "COMPLETEAGENT", "WRAPUPEND",
    ]  # fmt: skip
    assert [e.agent for e in mine] == ["", "a1", "a1", "a1", "", "a1", "a1"]
    assert [e.type for e in await events(redis, "ADDMEMBER")] == ["ADDMEMBER"]
    ixh = await api.ix(ix)
    assert ixh["state"] == "closed" and ixh["disposition"] == "answered"
    agent = await (await anna.get("/agents/a1")).json()
    assert agent["state"] == "ready" and agent["load"]["chat"] == 0


async def test_reject_puts_the_offer_back(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    ix = await _create(intake)
    anna = await api.session("anna", "agent", "a1")
    await _ready(anna, "a1")
    await dispatcher.match_round()
    # an action without parameters takes nothing or {}, not a body it would silently ignore
    resp = await anna.post(f"/agents/a1/interactions/{ix}/reject", {"reason": "busy"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "validation_error"
    assert (await api.ix(ix))["state"] == "offered"
    resp = await anna.post(f"/agents/a1/interactions/{ix}/reject")
    assert resp.status == 200 and (await resp.json())["state"] == "queued"
    assert (await api.ix(ix))["state"] == "queued"


async def test_agent_cannot_touch_another_agents_offer(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    ix = await _create(intake)
    anna = await api.session("anna", "agent", "a1")
    bartek = await api.session("bartek", "agent", "a2")
    await _ready(anna, "a1")
    assert await dispatcher.match_round() == 1  # a1 is the only ready agent
    await _ready(bartek, "a2")
    before = (await api.ix(ix), await api.agent_hash("a1"), await api.stream_len())

    # with its own id in the path: the interaction is not its
    for action in ("accept", "reject", "complete"):
        resp = await bartek.post(f"/agents/a2/interactions/{ix}/{action}")
        assert resp.status == 403, action
        assert (await error_of(resp))["code"] == "forbidden"
    resp = await bartek.post(f"/agents/a2/interactions/{ix}/messages", {"text": "hi"})
    assert resp.status == 403
    resp = await bartek.post(f"/agents/a2/interactions/{ix}/transfer", {"queue": "chat"})
    assert resp.status == 403
    resp = await bartek.get(f"/interactions/{ix}")
    assert resp.status == 403
    # with the other agent's id in the path
    for action in ("accept", "reject"):
        resp = await bartek.post(f"/agents/a1/interactions/{ix}/{action}")
        assert resp.status == 403
        assert (await error_of(resp))["code"] == "forbidden"
    resp = await bartek.put("/agents/a1/state", {"state": "not_ready", "reason": "break"})
    assert resp.status == 403
    resp = await bartek.get("/agents/a1/offers")
    assert resp.status == 403

    after = (await api.ix(ix), await api.agent_hash("a1"), await api.stream_len())
    assert after == before
    assert after[0]["state"] == "offered" and after[0]["agent"] == "a1"


async def test_agent_cannot_act_as_another_agent(api: ApiHarness):
    anna = await api.session("anna", "agent", "a1")
    before = (await api.agent_hash("a2"), await api.stream_len())
    resp = await anna.post("/agents/a2/login", {"ready": True})
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "forbidden"
    resp = await anna.get("/agents/a2")
    assert resp.status == 403
    assert (await api.agent_hash("a2"), await api.stream_len()) == before
    assert before[0] == {}


async def test_agent_state_changes_and_reason_codes(api: ApiHarness):
    anna = await api.session("anna", "agent", "a1")
    await _ready(anna, "a1")
    resp = await anna.put("/agents/a1/state", {"state": "not_ready", "reason": "break"})
    body = await resp.json()
    assert resp.status == 200 and body["state"] == "not_ready" and body["reason"] == "break"
    resp = await anna.put("/agents/a1/state", {"state": "not_ready", "reason": "lunch"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "unknown_reason"
    resp = await anna.put("/agents/a1/state", {"state": "asleep"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "validation_error"
    resp = await anna.put("/agents/a1/state", {"state": "offline"})
    assert resp.status == 200 and (await resp.json())["state"] == "offline"


async def test_agent_transfer_to_queue_and_unknown_agent(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    ix = await _create(intake)
    anna = await api.session("anna", "agent", "a1")
    await _ready(anna, "a1")
    await dispatcher.match_round()
    await anna.post(f"/agents/a1/interactions/{ix}/accept")
    before = (await api.ix(ix), await api.stream_len())

    path = f"/agents/a1/interactions/{ix}/transfer"
    resp = await anna.post(path, {"agent": "nobody"})
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_agent"
    resp = await anna.post(path, {"queue": "voice"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "channel_mismatch"
    resp = await anna.post(path, {"queue": "nowhere"})
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_queue"
    resp = await anna.post(path, {"queue": "chat", "agent": "x1"})
    assert resp.status == 422 and (await error_of(resp))["code"] == "transfer_target"
    resp = await anna.post(path, {"queue": "chat", "priority": 3})
    assert resp.status == 422 and (await error_of(resp))["code"] == "validation_error"
    assert (await api.ix(ix), await api.stream_len()) == before

    resp = await anna.post(path, {"agent": "x1", "note": "needs the roads department"})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["position"] == 1
    ixh = await api.ix(ix)
    assert ixh["state"] == "queued" and ixh["target_agent"] == "x1"
    transfer = (await events(api.redis, "TRANSFER"))[-1]
    assert transfer.agent == "a1" and transfer.model_extra["by"] == "anna"


async def test_supervisor_sees_agents_and_queues(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    first = await _create(intake, "voice", "voice")
    await _create(intake, "voice", "voice")
    await _create(intake)
    boss = await api.session("boss", "supervisor")
    resp = await boss.post("/agents/a2/login", {"ready": False, "reason": "break"})
    assert resp.status == 200 and (await resp.json())["state"] == "not_ready"

    agents = (await (await boss.get("/agents")).json())["agents"]
    assert [a["id"] for a in agents] == ["a1", "a2", "a3", "x1"]
    by_id = {a["id"]: a for a in agents}
    assert by_id["a1"]["state"] == "offline" and by_id["a2"]["reason"] == "break"

    resp = await boss.get("/queues")
    queues = {q["name"]: q for q in (await resp.json())["queues"]}
    assert queues["voice"]["waiting"] == 2 and queues["chat"]["waiting"] == 1
    assert queues["voice-vip"]["waiting"] == 0 and queues["voice-vip"]["oldest_position_ms"] is None
    assert queues["voice"]["oldest_position_ms"] == int((await api.ix(first))["enqueued_ms"])
    resp = await boss.get("/queues/voice")
    body = await resp.json()
    assert body["channel"] == "voice" and body["service_level"]["threshold_s"] == 15
    assert body["strategy"] == "longest_idle" and body["waiting"] == 2
    resp = await boss.get("/queues/nowhere")
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_queue"

    # the supervisor moves a waiting call; a connected one is not theirs to move
    resp = await boss.post(f"/interactions/{first}/transfer", {"queue": "voice-vip"})
    assert resp.status == 200, await resp.text()
    assert (await api.ix(first))["queue"] == "voice-vip"
    resp = await boss.post(f"/interactions/{first}/transfer", {"agent": "ghost"})
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_agent"
    resp = await boss.put("/agents/a2/state", {"state": "ready"})
    assert resp.status == 200
    await dispatcher.match_round()
    assert (await api.ix(first))["state"] == "offered"
    resp = await boss.post(f"/interactions/{first}/transfer", {"queue": "voice"})
    assert resp.status == 409 and (await error_of(resp))["code"] == "invalid_state"

    # agents may not use the supervision endpoints
    anna = await api.session("anna", "agent", "a1")
    for path in ("/agents", "/queues", "/queues/voice", "/stats/live", "/references/x"):
        resp = await anna.get(path)
        assert resp.status == 403, path


async def test_live_stats(api: ApiHarness):
    intake = await _intake(api)
    await _create(intake, "voice", "voice")
    boss = await api.session("boss", "supervisor")
    resp = await boss.get("/stats/live")
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    voice = next(q for q in body["queues"] if q["name"] == "voice")
    assert voice["waiting"] == 1


async def test_admin_may_act_for_an_agent(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    ix = await _create(intake)
    root = await api.bearer("root", "admin")
    resp = await root.post("/agents/a3/login", {"ready": True})
    assert resp.status == 200
    await dispatcher.match_round()
    resp = await root.post(f"/agents/a3/interactions/{ix}/accept")
    assert resp.status == 200 and (await resp.json())["state"] == "connected"


async def test_supervisor_cannot_accept_for_an_agent(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    ix = await _create(intake)
    boss = await api.bearer("boss", "supervisor")
    await boss.post("/agents/a1/login", {"ready": True})
    await dispatcher.match_round()
    before = await api.ix(ix)
    resp = await boss.post(f"/agents/a1/interactions/{ix}/accept")
    assert resp.status == 403
    assert await api.ix(ix) == before


async def test_unknown_agent_and_interaction(api: ApiHarness):
    boss = await api.bearer("boss", "supervisor")
    resp = await boss.get("/agents/nobody")
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_agent"
    resp = await boss.get("/interactions/0000")
    assert resp.status == 404 and (await error_of(resp))["code"] == "not_found"
    resp = await boss.get("/interactions/..%2F..%2Fetc")
    assert resp.status == 404


async def test_supervisor_raises_a_waiting_interactions_priority(api: ApiHarness):
    intake = await _intake(api)
    first = await _create(intake, "voice", "voice")
    second = await _create(intake, "voice", "voice")
    boss = await api.session("boss", "supervisor")
    resp = await boss.put(f"/interactions/{second}/priority", {"priority": 4})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"state": "queued", "priority": 4, "position": 1}
    assert await api.service.store.position(second) == 1
    assert await api.service.store.position(first) == 2
    for bad in ({"priority": 11}, {"priority": -1}, {"priority": "high"}, {}):
        resp = await boss.put(f"/interactions/{second}/priority", bad)
        assert resp.status == 422, bad
    resp = await boss.put("/interactions/nope/priority", {"priority": 1})
    assert resp.status == 404
    anna = await api.session("anna", "agent", "a1")
    resp = await anna.put(f"/interactions/{first}/priority", {"priority": 9})
    assert resp.status == 403


async def test_the_outcome_given_on_ending_is_kept(api: ApiHarness, dispatcher: Dispatcher):
    """Without wrap-up time the disposition comes with the ending; with it, it is a draft the
    wrap-up keeps unless the agent replaces it."""
    intake = await _intake(api)
    anna = await api.session("anna", "agent", "a1")
    await _ready(anna, "a1")
    call = await _create(intake, "voice", "voice")  # the voice queue has no wrap-up time
    await dispatcher.match_round()
    assert (await anna.post(f"/agents/a1/interactions/{call}/accept")).status == 200
    resp = await anna.post(f"/agents/a1/interactions/{call}/complete",
                           {"disposition": "information_given", "note": "opening hours"})
    assert (await resp.json())["state"] == "closed"
    ix = await api.ix(call)
    assert (ix["disposition"], ix["note"]) == ("information_given", "opening hours")
    resp = await anna.post(f"/agents/a1/interactions/{call}/complete", {"disposition": "x" * 65})
    assert resp.status == 422


async def test_a_drafted_outcome_survives_wrap_up(api: ApiHarness, dispatcher: Dispatcher):
    intake = await _intake(api)
    anna = await api.session("anna", "agent", "a1")
    await _ready(anna, "a1")
    chat = await _create(intake)
    await dispatcher.match_round()
    await anna.post(f"/agents/a1/interactions/{chat}/accept")
    resp = await anna.post(f"/agents/a1/interactions/{chat}/complete", {"disposition": "referred"})
    assert (await resp.json())["state"] == "wrapup"
    assert (await anna.post(f"/agents/a1/interactions/{chat}/wrapup-end", {"note": "n"})).ok
    ix = await api.ix(chat)
    assert (ix["state"], ix["disposition"], ix["note"]) == ("closed", "referred", "n")
