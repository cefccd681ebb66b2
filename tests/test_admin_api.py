"""The admin API (/api/v1/admin/...): agents, queues and users managed at run time, through the
real aiohttp app on the real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from router.config import CitylineConfig
from router.dispatcher import Dispatcher
from router.service import RoutingService
from tests.api_helpers import API, PASSWORD, ApiHarness, Session, error_of
from tests.routing_fixtures import call, eventually, offered_to, ready
from tests.test_directory import VIP_STEP, unchanged, with_flows


async def delete(s: Session, path: str, csrf: bool = True) -> Any:
    headers = {"X-CSRF-Token": s.csrf} if csrf else {}
    return await s.client.delete(API + path, headers=headers)


async def test_admin_changes_skills_and_the_dispatcher_routes_by_them(
    h: ApiHarness, service: RoutingService, dispatcher: Dispatcher
) -> None:
    admin = await h.session("root", "admin")
    resp = await admin.get("/admin/agents/a1")
    assert resp.status == 200
    a1 = await resp.json()
    assert a1["origin"] == "file" and a1["state"] == "offline"
    assert a1["config"]["skills"] == {"general": 5, "taxes": 3}
    await ready(service, "a1")
    ix = await call(service, "voice", topic="roads")
    assert await dispatcher.match_round() == 0
    body = {**a1["config"], "skills": {"general": 5, "roads": 7}, "capacity": {"chat": 2}}
    resp = await admin.put("/admin/agents/a1", body)
    assert resp.status == 200, await resp.text()
    changed = await resp.json()
    assert changed["origin"] == "changed" and changed["state"] == "ready"
    assert changed["config"]["skills"] == {"general": 5, "roads": 7}
    capacity = changed["config"]["capacity"]
    assert capacity["chat"] == 2 and capacity["voice"] == 1
    assert await dispatcher.match_round() == 1
    assert await offered_to(service, "a1") == [ix]
    # the supervisors' agent list shows the new skills too
    listing = await (await admin.get("/agents")).json()
    [row] = [a for a in listing["agents"] if a["id"] == "a1"]
    assert row["skills"] == {"general": 5, "roads": 7}


async def test_invalid_agent_is_refused_with_field_errors(
    h: ApiHarness, redis: aioredis.Redis
) -> None:
    admin = await h.session("root", "admin")
    resp = await admin.put("/admin/agents/a1", {"name": "Anna", "skills": {"cooking": 3}})
    assert resp.status == 422
    err = await error_of(resp)
    assert err["code"] == "validation_error"
    assert err["details"] == [
        {"loc": ["skills", "cooking"],
         "msg": "unknown skill 'cooking' (not in the skills catalogue)"}
    ]
    resp = await admin.put("/admin/agents/a1", {"name": "Anna", "skills": {"general": 11},
                                                "colour": "red"})
    assert resp.status == 422
    locs = [d["loc"] for d in (await error_of(resp))["details"]]
    assert ["skills", "general"] in locs and ["colour"] in locs
    resp = await admin.put("/admin/agents/bad%20id", {"name": "X"})
    assert resp.status == 404  # not an id at all
    resp = await admin.put("/admin/agents/Bad:id", {"name": "X"})
    assert resp.status == 422 and (await error_of(resp))["details"][0]["loc"] == ["id"]
    assert not await redis.exists("cl:dir:agents", "cl:dir:version")
    assert await redis.xlen("cl:events") == 0


async def test_queue_sl_target_change_shows_on_the_wall(h: ApiHarness, cfg: CitylineConfig) -> None:
    admin = await h.session("root", "admin")
    queue = (await (await admin.get("/admin/queues/chat")).json())["config"]
    assert queue["service_level"] == {"target_pct": 80.0, "threshold_s": 60.0}
    queue["service_level"] = {"target_pct": 92, "threshold_s": 45}
    resp = await admin.put("/admin/queues/chat", queue)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["config"]["service_level"]["target_pct"] == 92

    async def tile() -> str:
        data = await (await admin.client.get("/wall/data.json")).json()
        [chat] = [q for q in data["queues"] if q["name"] == "chat"]
        return chat["fields"]["sl_target"]

    await eventually(lambda: _equals(tile(), "92% in 45 s"))
    # invalid: an overflow into another channel's queue, and a step that never runs
    queue["overflow"], queue["max_wait_s"] = "voice", 60
    queue["escalation"] = [{"after_s": 90, "raise_priority": 5}]
    resp = await admin.put("/admin/queues/chat", queue)
    assert resp.status == 422
    details = (await error_of(resp))["details"]
    assert [d["loc"] for d in details] == [["escalation", 0, "after_s"]]
    del queue["escalation"]
    resp = await admin.put("/admin/queues/chat", queue)
    assert resp.status == 422
    assert [d["loc"] for d in (await error_of(resp))["details"]] == [["overflow"]]
    assert cfg.queues["chat"].overflow is None


async def _equals(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def test_add_and_remove_a_queue_and_an_agent(h: ApiHarness, cfg: CitylineConfig) -> None:
    admin = await h.session("root", "admin")
    new_queue = {"channel": "chat", "skills": {"taxes": 2},
                 "service_level": {"target_pct": 80, "threshold_s": 120}}
    resp = await admin.put("/admin/queues/chat-taxes", new_queue)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["origin"] == "added"
    names = [q["name"] for q in (await (await admin.get("/admin/queues")).json())["queues"]]
    assert names[-1] == "chat-taxes"
    supervised = (await (await admin.get("/queues")).json())["queues"]
    assert "chat-taxes" in [q["name"] for q in supervised]
    resp = await delete(admin, "/admin/queues/chat-taxes")
    assert resp.status == 200 and (await resp.json())["removed"] == "chat-taxes"
    assert (await admin.get("/admin/queues/chat-taxes")).status == 404
    resp = await delete(admin, "/admin/queues/voice")  # voice-short overflows to it
    assert resp.status == 409 and (await error_of(resp))["code"] == "in_use"

    resp = await admin.put("/admin/agents/z9", {"name": "Zofia", "skills": {"general": 4}})
    assert resp.status == 200
    await admin.post("/agents/z9/login", {"ready": True})
    resp = await delete(admin, "/admin/agents/z9")
    assert resp.status == 409 and (await error_of(resp))["code"] == "busy"
    await admin.put("/agents/z9/state", {"state": "offline"})
    resp = await delete(admin, "/admin/agents/z9")
    assert resp.status == 200
    assert "z9" not in cfg.agents
    assert (await admin.get("/agents/z9")).status == 404


async def test_who_may(h: ApiHarness) -> None:
    sup = await h.session("maria", "supervisor")
    agent = await h.session("anna", "agent", "a1")
    admin = await h.session("root", "admin")
    assert (await sup.get("/admin/agents")).status == 200
    assert (await sup.get("/admin/queues")).status == 200
    assert (await sup.get("/admin/users")).status == 403
    assert (await sup.put("/admin/agents/a1", {"name": "A"})).status == 403
    assert (await delete(sup, "/admin/queues/chat")).status == 403
    for path in ("/admin/agents", "/admin/queues", "/admin/agents/a1"):
        assert (await agent.get(path)).status == 403
    resp = await admin.put("/admin/agents/a1", {"name": "A"}, csrf=False)
    assert resp.status == 403 and (await error_of(resp))["code"] == "csrf_failed"
    token = await h.bearer("ops", "admin")
    resp = await token.put("/admin/agents/a1", {"name": "Anna N.", "skills": {"general": 5}})
    assert resp.status == 200


async def test_users(h: ApiHarness, redis: aioredis.Redis) -> None:
    admin = await h.session("root", "admin")
    resp = await admin.post("/admin/users", {"username": "nina", "role": "agent",
                                             "agent_id": "a2", "password": "short"})
    assert resp.status == 422
    assert (await error_of(resp))["details"][0]["loc"] == ["password"]
    resp = await admin.post("/admin/users", {"username": "nina", "role": "agent",
                                             "agent_id": "nobody", "password": PASSWORD})
    assert resp.status == 422 and (await error_of(resp))["details"][0]["loc"] == ["agent_id"]
    resp = await admin.post("/admin/users", {"username": "nina", "role": "agent",
                                             "agent_id": "a2", "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    nina = await resp.json()
    assert nina == {"username": "nina", "role": "agent", "agent_id": "a2", "has_password": True,
                    "created_ms": nina["created_ms"], "configured": False, "locked_out": False}
    resp = await admin.post("/admin/users", {"username": "nina", "role": "supervisor"})
    assert resp.status == 409 and (await error_of(resp))["code"] == "user_exists"
    listing = await (await admin.get("/admin/users")).json()
    assert [u["username"] for u in listing["users"]] == ["nina", "root"]
    assert "password" not in str(listing).replace("has_password", "")
    # nina logs in; a new password ends her session; she is locked out and unlocked
    s = await h.session("nina", "agent", "a2")
    assert (await s.get("/agents/a2")).status == 200
    resp = await admin.put("/admin/users/nina", {"password": "another good one"})
    assert resp.status == 200
    assert (await s.get("/agents/a2")).status == 401
    client = await h.client()
    for _ in range(h.cfg.http.login_max_failures):
        await client.post(f"{API}/auth/login", json={"username": "nina", "password": "wrong!!"})
    assert (await (await admin.get("/admin/users")).json())["users"][0]["locked_out"] is True
    resp = await admin.post("/admin/users/nina/unlock")
    assert resp.status == 200 and (await resp.json())["unlocked"] is True
    await h.session("nina", "agent", "a2", password="another good one")
    # role: supervisor (the agent link goes with role agent)
    resp = await admin.put("/admin/users/nina", {"role": "supervisor"})
    assert resp.status == 200 and (await resp.json())["agent_id"] is None
    assert await redis.hget("cl:user:nina", "role") == "supervisor"
    resp = await admin.put("/admin/users/root", {"role": "agent", "agent_id": "a3"})
    assert resp.status == 409 and (await error_of(resp))["code"] == "self"
    assert (await delete(admin, "/admin/users/root")).status == 409
    resp = await delete(admin, "/admin/users/nina")
    assert resp.status == 200
    assert (await delete(admin, "/admin/users/nina")).status == 404


async def test_a_queue_still_named_is_refused_and_nothing_changes(
    h: ApiHarness, cfg: CitylineConfig, redis: aioredis.Redis, tmp_path: Path
) -> None:
    with_flows(cfg, tmp_path / "flows")  # before the first request: the flows are read once
    admin = await h.session("root", "admin")
    before = await unchanged(redis)
    resp = await delete(admin, "/admin/queues/voice-vip")
    assert resp.status == 409
    err = await error_of(resp)
    assert err["code"] == "in_use" and "IVR flow 'hall', step 'vip'" in err["message"]
    assert [d["loc"] for d in err["details"]] == [list(VIP_STEP)]
    queue = (await (await admin.get("/admin/queues/voice-vip")).json())["config"]
    resp = await admin.put("/admin/queues/voice-vip", {**queue, "channel": "chat"})
    assert resp.status == 422
    [detail] = (await error_of(resp))["details"]
    assert detail["loc"] == list(VIP_STEP) and "serves chat, not voice" in detail["msg"]
    resp = await delete(admin, "/admin/queues/chat")  # the web chat hands its chats to it
    assert resp.status == 409
    assert (await error_of(resp))["details"] == [
        {"loc": ["channels", "chat", "queue"],
         "msg": "the chat channel hands its contacts to queue 'chat'"}
    ]
    assert await unchanged(redis) == before
    assert {"voice-vip", "chat"} <= set(cfg.queues) and cfg.queues["voice-vip"].channel == "voice"


async def test_reset_to_the_file(h: ApiHarness, cfg: CitylineConfig, redis: aioredis.Redis) -> None:
    admin = await h.session("root", "admin")
    sup = await h.session("maria", "supervisor")
    a1 = (await (await admin.get("/admin/agents/a1")).json())["config"]
    resp = await admin.put("/admin/agents/a1", {**a1, "skills": {"general": 2}})
    assert (await resp.json())["origin"] == "changed"
    assert (await delete(admin, "/admin/queues/voice-esc")).status == 200
    listing = await (await admin.get("/admin/queues")).json()
    assert listing["removed"] == ["voice-esc"]
    assert (await sup.post("/admin/agents/a1/reset")).status == 403

    resp = await admin.post("/admin/agents/a1/reset")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"reset": "a1", "result": "restored", "version": 3}
    view = await (await admin.get("/admin/agents/a1")).json()
    assert view["origin"] == "file" and view["config"]["skills"] == {"general": 5, "taxes": 3}
    resp = await admin.post("/admin/queues/voice-esc/reset")
    assert (await resp.json())["result"] == "restored"
    assert (await admin.get("/admin/queues/voice-esc")).status == 200
    assert (await (await admin.get("/admin/queues")).json())["removed"] == []
    # an agent only admins added: the reset removes it, and says so
    await admin.put("/admin/agents/z9", {"name": "Zofia", "skills": {"general": 4}})
    resp = await admin.post("/admin/agents/z9/reset")
    assert await resp.json() == {"reset": "z9", "result": "removed", "version": 6}
    assert (await admin.get("/admin/agents/z9")).status == 404

    # refusals change nothing
    before = await unchanged(redis)
    resp = await admin.post("/admin/agents/a1/reset")
    assert resp.status == 409 and (await error_of(resp))["code"] == "not_changed"
    resp = await admin.post("/admin/queues/nowhere/reset")
    assert resp.status == 404 and (await error_of(resp))["code"] == "unknown_queue"
    assert await unchanged(redis) == before
    for name in ("voice-short", "voice-esc"):  # nothing sends to voice any more...
        queue = (await (await admin.get(f"/admin/queues/{name}")).json())["config"]
        queue |= {"overflow": None, "max_wait_s": None, "escalation": []}
        assert (await admin.put(f"/admin/queues/{name}", queue)).status == 200
    assert (await delete(admin, "/admin/queues/voice")).status == 200
    before = await unchanged(redis)
    resp = await admin.post("/admin/queues/voice-short/reset")  # ...but the file's overflows
    assert resp.status == 422
    assert [d["loc"] for d in (await error_of(resp))["details"]] == [["overflow"]]
    assert await unchanged(redis) == before
    assert cfg.queues["voice-short"].overflow is None
