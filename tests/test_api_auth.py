"""Authentication: sessions with CSRF, API tokens, lockout, users from the configuration."""

from __future__ import annotations

import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from queues.keys import Keys
from router import users as accounts
from router.auth import SESSION_COOKIE, Auth
from router.config import CitylineConfig, UserConfig
from router.service import RoutingService
from tests.api_helpers import API, PASSWORD, ApiHarness, api_harness, cheap_hasher, error_of


@pytest.fixture
async def api(
    redis: aioredis.Redis, cfg: CitylineConfig, service: RoutingService
) -> AsyncIterator[ApiHarness]:
    cfg.http.login_max_failures = 3
    cfg.http.login_lockout_s = 600
    cfg.http.session_ttl_s = 3600
    async with api_harness(redis, cfg, service) as harness:
        yield harness


async def _login(api: ApiHarness, username: str, password: str, client=None):
    client = client or await api.client()
    resp = await client.post(f"{API}/auth/login", json={"username": username, "password": password})
    return client, resp


async def _all_redis_text(redis: aioredis.Redis) -> str:
    """Every key and value in Redis as one string: to prove a secret is not in there."""
    out = []
    async for key in redis.scan_iter():
        out.append(key)
        kind = await redis.type(key)
        if kind == "hash":
            out.extend(f"{k}={v}" for k, v in (await redis.hgetall(key)).items())
        elif kind == "string":
            out.append(str(await redis.get(key)))
    return "\n".join(out)


# --- sessions ---------------------------------------------------------------------------------


async def test_login_sets_a_strict_httponly_cookie(api: ApiHarness, redis: aioredis.Redis):
    await api.user("anna", "agent", "a1")
    client, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["username"] == "anna" and body["role"] == "agent" and body["agent_id"] == "a1"
    assert body["auth"] == "session" and body["expires_in_s"] == 3600
    assert len(body["csrf_token"]) >= 40
    assert resp.headers["Cache-Control"] == "no-store"
    cookie = resp.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert not cookie["secure"]
    assert cookie["max-age"] == "3600" and cookie["path"] == "/"
    session_id = cookie.value
    # stored under its digest, with the expiry of the session, never the id itself
    (key,) = [k async for k in redis.scan_iter(match="cl:sess:*")]
    assert session_id not in key
    assert 3590 <= await redis.ttl(key) <= 3600
    assert PASSWORD not in await _all_redis_text(redis)
    me = await (await client.get(f"{API}/auth/me")).json()
    assert me == {"username": "anna", "role": "agent", "agent_id": "a1", "auth": "session"}


async def test_cookie_secure_when_configured(api: ApiHarness):
    api.cfg.http.cookie_secure = True
    await api.user("anna", "agent", "a1")
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.cookies[SESSION_COOKIE]["secure"] is True


async def test_csrf_needed_for_unsafe_cookie_requests(api: ApiHarness):
    anna = await api.session("anna", "agent", "a1")
    before = await api.stream_len()
    resp = await anna.post("/agents/a1/login", {"ready": True}, csrf=False)
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "csrf_failed"
    resp = await anna.post(
        "/agents/a1/login", {"ready": True}, csrf=False, headers={"X-CSRF-Token": "guess"}
    )
    assert resp.status == 403 and (await error_of(resp))["code"] == "csrf_failed"
    resp = await anna.put("/agents/a1/state", {"state": "ready"}, csrf=False)
    assert resp.status == 403
    assert await api.stream_len() == before
    assert await api.agent_hash("a1") == {}
    # safe requests need no token; with it the unsafe one goes through
    assert (await anna.get("/agents/a1")).status == 200
    resp = await anna.post("/agents/a1/login", {"ready": True})
    assert resp.status == 200


async def test_tokens_need_no_csrf(api: ApiHarness):
    client = await api.bearer("bot", "agent", "a1")
    resp = await client.post("/agents/a1/login", {"ready": True})
    assert resp.status == 200, await resp.text()
    me = await (await client.get("/auth/me")).json()
    assert me["auth"] == "token"


async def test_logout_ends_the_session(api: ApiHarness, redis: aioredis.Redis):
    anna = await api.session("anna", "agent", "a1")
    resp = await anna.post("/auth/logout", csrf=False)
    assert resp.status == 403  # even logging out needs the CSRF token (no forced logouts)
    resp = await anna.post("/auth/logout")
    assert resp.status == 200 and await resp.json() == {"logged_out": True}
    assert [k async for k in redis.scan_iter(match="cl:sess:*")] == []
    assert SESSION_COOKIE not in anna.client.session.cookie_jar.filter_cookies(
        anna.client.make_url("/")
    )
    resp = await anna.get("/auth/me")
    assert resp.status == 401


async def test_stolen_cookie_after_logout_is_refused(api: ApiHarness):
    anna = await api.session("anna", "agent", "a1")
    jar = anna.client.session.cookie_jar.filter_cookies(anna.client.make_url("/"))
    session_id = jar[SESSION_COOKIE].value
    await anna.post("/auth/logout")
    other = await api.client()
    resp = await other.get(f"{API}/auth/me", cookies={SESSION_COOKIE: session_id})
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthorized"


async def test_password_change_ends_sessions(api: ApiHarness):
    anna = await api.session("anna", "agent", "a1")
    assert (await anna.get("/auth/me")).status == 200
    await accounts.set_password(
        api.redis, api.keys, "anna", "a new long password", hasher=api.auth.hasher
    )
    assert (await anna.get("/auth/me")).status == 401
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 401
    _, resp = await _login(api, "anna", "a new long password")
    assert resp.status == 200


async def test_role_change_applies_at_the_next_request(api: ApiHarness):
    boss = await api.session("boss", "supervisor")
    assert (await boss.get("/agents")).status == 200
    await api.redis.hset(api.keys.user("boss"), "role", "intake")
    assert (await boss.get("/agents")).status == 403


# --- wrong credentials and lockout --------------------------------------------------------------


async def test_wrong_password_is_401_and_logged_without_it(
    api: ApiHarness, caplog: pytest.LogCaptureFixture
):
    await api.user("anna", "agent", "a1")
    caplog.set_level(logging.INFO, logger="router")
    _, resp = await _login(api, "anna", "not the password")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await error_of(resp))["code"] == "unauthorized"
    assert SESSION_COOKIE not in resp.cookies
    failed = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert len(failed) == 1
    assert "user=anna" in failed[0] and "remote=127.0.0.1" in failed[0]
    assert "not the password" not in caplog.text and PASSWORD not in caplog.text
    # an unknown user gets the very same answer
    _, resp = await _login(api, "nobody", "whatever-password")
    assert resp.status == 401
    assert (await error_of(resp))["message"] == "wrong user name or password"


async def test_lockout_after_failures_even_with_the_right_password(
    api: ApiHarness, redis: aioredis.Redis
):
    await api.user("anna", "agent", "a1")
    for _ in range(3):  # login_max_failures = 3
        _, resp = await _login(api, "anna", "wrong password")
        assert resp.status == 401
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 429
    assert (await error_of(resp))["code"] == "locked_out"
    assert 1 <= int(resp.headers["Retry-After"]) <= 600
    assert SESSION_COOKIE not in resp.cookies
    # the window does not grow with further attempts, and ends by itself
    key = Keys().login_failures("anna")
    assert 590 <= await redis.ttl(key) <= 600
    await redis.pexpire(key, 1)  # the window passes
    while await redis.exists(key):
        await redis.ping()
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 200


async def test_success_resets_the_failure_count(api: ApiHarness, redis: aioredis.Redis):
    await api.user("anna", "agent", "a1")
    for _ in range(2):
        await _login(api, "anna", "wrong password")
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 200
    assert not await redis.exists(Keys().login_failures("anna"))


async def test_user_without_password_cannot_log_in(api: ApiHarness):
    await accounts.add_user(api.redis, api.keys, "later", "supervisor")
    _, resp = await _login(api, "later", "")
    assert resp.status == 422  # an empty password is not even a login attempt
    _, resp = await _login(api, "later", "anything-at-all")
    assert resp.status == 401


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "unauthorized"),
        ({"Authorization": "Basic YW5uYTpwdw=="}, "unauthorized"),
        ({"Authorization": "Bearer "}, "unauthorized"),
    ],
)
async def test_missing_or_bad_credentials(api: ApiHarness, headers: dict[str, str], code: str):
    client = await api.client()
    resp = await client.get(f"{API}/agents", headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await error_of(resp))["code"] == code


async def test_bad_token_is_not_rescued_by_a_cookie(api: ApiHarness):
    boss = await api.session("boss", "supervisor")
    resp = await boss.get("/agents", headers={"Authorization": "Bearer wrong"})
    assert resp.status == 401
    assert (await boss.get("/agents")).status == 200


async def test_login_body_validation(api: ApiHarness):
    client = await api.client()
    resp = await client.post(f"{API}/auth/login", data="username=anna&password=x")
    assert resp.status == 415
    resp = await client.post(
        f"{API}/auth/login",
        data=b'{"username": "anna", "password": ',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 400 and (await error_of(resp))["code"] == "invalid_json"
    resp = await client.post(
        f"{API}/auth/login", json={"username": "anna", "password": "secret-pw", "admin": True}
    )
    error = await error_of(resp)
    assert resp.status == 422 and error["details"] == [
        {"loc": ["admin"], "msg": "Extra inputs are not permitted"}
    ]
    assert "secret-pw" not in str(error)
    resp = await client.post(
        f"{API}/auth/login", json={"username": "anna\nuser=root", "password": "secret-pw"}
    )
    assert resp.status == 422  # never reaches the log as a forged line


# --- tokens ---------------------------------------------------------------------------------


async def test_tokens_are_stored_as_digests_and_revocable(api: ApiHarness, redis: aioredis.Redis):
    await api.user("gateway", "intake")
    issued = await accounts.create_token(redis, api.keys, "gateway", label="sms")
    assert issued.token not in await _all_redis_text(redis)
    assert issued.token not in repr(issued)
    tokens = await accounts.list_tokens(redis, api.keys, "gateway")
    assert [(t.digest, t.label) for t in tokens] == [(issued.digest, "sms")]
    client = await api.client()
    headers = {"Authorization": f"Bearer {issued.token}"}
    me = await (await client.get(f"{API}/auth/me", headers=headers)).json()
    assert me == {"username": "gateway", "role": "intake", "agent_id": None, "auth": "token"}
    assert await accounts.revoke_token(redis, api.keys, issued.digest) is True
    assert await accounts.revoke_token(redis, api.keys, issued.token) is False
    assert (await client.get(f"{API}/auth/me", headers=headers)).status == 401


async def test_revoke_by_token_and_removed_user(api: ApiHarness, redis: aioredis.Redis):
    await api.user("gateway", "intake")
    one = await accounts.create_token(redis, api.keys, "gateway")
    two = await accounts.create_token(redis, api.keys, "gateway")
    assert await accounts.revoke_token(redis, api.keys, one.token) is True
    await accounts.remove_user(redis, api.keys, "gateway")
    assert await accounts.list_tokens(redis, api.keys) == []
    client = await api.client()
    resp = await client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {two.token}"})
    assert resp.status == 401
    with pytest.raises(accounts.UnknownUser):
        await accounts.create_token(redis, api.keys, "gateway")


# --- administration -------------------------------------------------------------------------


async def test_add_user_rules(redis: aioredis.Redis):
    keys, hasher = Keys(), cheap_hasher()
    await accounts.add_user(redis, keys, "anna", "agent", agent_id="a1", hasher=hasher)
    with pytest.raises(accounts.UserExists):
        await accounts.add_user(redis, keys, "anna", "admin", hasher=hasher)
    with pytest.raises(accounts.BadUser):
        await accounts.add_user(redis, keys, "bob", "agent", hasher=hasher)  # no agent id
    with pytest.raises(accounts.BadUser):
        await accounts.add_user(redis, keys, "bob", "root", hasher=hasher)
    with pytest.raises(accounts.BadUser):
        await accounts.add_user(redis, keys, "bad name", "admin", hasher=hasher)
    with pytest.raises(accounts.BadPassword):
        await accounts.add_user(redis, keys, "bob", "admin", password="short", hasher=hasher)
    with pytest.raises(accounts.UnknownUser):
        await accounts.set_password(redis, keys, "ghost", "long enough pw", hasher=hasher)
    users = await accounts.list_users(redis, keys)
    assert [(u.username, u.role, u.agent_id, u.has_password) for u in users] == [
        ("anna", "agent", "a1", False)
    ]


async def test_outdated_hash_is_upgraded_at_login(api: ApiHarness, redis: aioredis.Redis):
    weak = PasswordHasher(time_cost=1, memory_cost=512, parallelism=1)
    await accounts.add_user(
        redis, api.keys, "anna", "agent", agent_id="a1", password=PASSWORD, hasher=weak
    )
    old = await redis.hget(api.keys.user("anna"), "password_hash")
    assert api.auth.hasher.check_needs_rehash(old)
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 200
    new = await redis.hget(api.keys.user("anna"), "password_hash")
    assert new != old and not api.auth.hasher.check_needs_rehash(new)
    _, resp = await _login(api, "anna", PASSWORD)
    assert resp.status == 200


async def test_ensure_users_from_configuration(
    redis: aioredis.Redis, cfg: CitylineConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    cfg.data_dir = tmp_path / "data"
    cfg.users = {
        "anna": UserConfig(role="agent", agent="a1"),
        "boss": UserConfig(role="supervisor", password_env="BOSS_PW"),
        "root": UserConfig(role="admin", password_env="ROOT_PW"),
    }
    cfg.demo.create_demo_users = True
    keys, hasher = Keys(), cheap_hasher()
    caplog.set_level(logging.INFO, logger="router.auth")
    env = {"BOSS_PW": "boss password 1", "ROOT_PW": "short"}
    created = await accounts.ensure_users(redis, keys, cfg, env, hasher=hasher)
    assert created == ["anna", "boss", "root"]

    path = cfg.data_dir / "demo-credentials.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [line.split("  ") for line in path.read_text().splitlines()]
    # anna got a demo password; boss has his from the environment; root's is too short
    assert [(name, role) for name, _, role in lines] == [("anna", "agent")]
    demo_password = lines[0][1]
    assert demo_password not in caplog.text and "boss password 1" not in caplog.text
    assert str(path) in caplog.text
    assert "ROOT_PW" in caplog.text

    auth = Auth(redis, keys, cfg, hasher=hasher)
    assert (await auth.login("anna", demo_password)).principal.agent_id == "a1"
    assert (await auth.login("boss", "boss password 1")).principal.role == "supervisor"
    users = {u.username: u for u in await accounts.list_users(redis, keys)}
    assert users["root"].has_password is False

    # again: nothing created, no password replaced, the role follows the configuration
    cfg.users["boss"] = UserConfig(role="admin", password_env="BOSS_PW")
    env["BOSS_PW"] = "another password"
    assert await accounts.ensure_users(redis, keys, cfg, env, hasher=hasher) == []
    assert (await auth.login("boss", "boss password 1")).principal.role == "admin"
    assert path.read_text().splitlines()[0].split("  ")[1] == demo_password


async def test_ensure_users_without_demo_leaves_no_password(
    redis: aioredis.Redis, cfg: CitylineConfig, tmp_path: Path
):
    cfg.data_dir = tmp_path
    cfg.users = {"anna": UserConfig(role="agent", agent="a1")}
    keys = Keys()
    await accounts.ensure_users(redis, keys, cfg, {}, hasher=cheap_hasher())
    assert not (tmp_path / "demo-credentials.txt").exists()
    (user,) = await accounts.list_users(redis, keys)
    assert user.has_password is False
