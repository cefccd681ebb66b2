"""`cityline serve` killed with SIGKILL under load, then started again on the same data
directory: every interaction whose intake was acknowledged is still there, accepted work is
still the agent's, and offers that expired while nothing ran are handled after the restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml

from queues.embedded import free_tcp_port

pytestmark = pytest.mark.slow

PASSWORDS = {"CL_TEST_GATEWAY_PW": "gateway secret 1", "CL_TEST_ANNA_PW": "anna secret 12",
             "CL_TEST_BART_PW": "bart secret 123"}


def restart_config(tmp_path: Path) -> Path:
    cfg = yaml.safe_load(Path(__file__).with_name("routing_config.yaml").read_text())
    cfg["queues"]["voice"]["offer_timeout_s"] = 1.0
    cfg["users"] = {
        "gateway": {"role": "intake", "password_env": "CL_TEST_GATEWAY_PW"},
        "anna": {"role": "agent", "agent": "a1", "password_env": "CL_TEST_ANNA_PW"},
        "bart": {"role": "agent", "agent": "a2", "password_env": "CL_TEST_BART_PW"},
    }
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


class Server:
    def __init__(self, config: Path, data: Path) -> None:
        self.config, self.data, self.port = config, data, free_tcp_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | PASSWORDS
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "router.cli", "serve", "--config", str(self.config),
             "--port", str(self.port), "--data-dir", str(self.data), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self.spawn()
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(self.base + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("cityline did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


async def login(http: aiohttp.ClientSession, base: str, user: str, pw: str) -> dict[str, str]:
    async with http.post(f"{base}/api/v1/auth/login",
                         json={"username": user, "password": pw}) as r:
        assert r.status == 200, await r.text()
        return {"X-CSRF-Token": (await r.json())["csrf_token"]}


async def wait_gone(pidfile: Path) -> None:
    pid = int(await asyncio.to_thread(pidfile.read_text))
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the embedded redis-server outlived its cityline")


async def test_sigkill_under_load_loses_nothing(tmp_path: Path) -> None:
    server = Server(restart_config(tmp_path), tmp_path / "data")
    await server.start()
    base = server.base
    acked: dict[str, str] = {}  # interaction id -> ref, for every 201 the gateway received
    try:
        # unsafe=True: keep cookies for a bare IP address (127.0.0.1), as a browser does
        gw, anna, bart = (aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                          for _ in range(3))
        gw_h = await login(gw, base, "gateway", PASSWORDS["CL_TEST_GATEWAY_PW"])
        anna_h = await login(anna, base, "anna", PASSWORDS["CL_TEST_ANNA_PW"])
        bart_h = await login(bart, base, "bart", PASSWORDS["CL_TEST_BART_PW"])
        for s, h, a in ((anna, anna_h, "a1"), (bart, bart_h, "a2")):
            async with s.post(f"{base}/api/v1/agents/{a}/login", json={"ready": True},
                              headers=h) as r:
                assert r.status in (200, 204), await r.text()

        async def offers(s: aiohttp.ClientSession, agent: str) -> list[dict]:
            async with s.get(f"{base}/api/v1/agents/{agent}/offers") as r:
                return await r.json() if r.status == 200 else []

        # anna accepts her first offer: accepted work that must survive
        async with gw.post(f"{base}/api/v1/interactions", headers=gw_h,
                           json={"channel": "voice", "queue": "voice"}) as r:
            first = await r.json()
            acked[first["id"]] = first["ref"]
        for _ in range(100):
            mine = await offers(anna, "a1") or await offers(bart, "a2")
            if mine:
                break
            await asyncio.sleep(0.02)
        holder, holder_s, holder_h = (("a1", anna, anna_h) if await offers(anna, "a1")
                                      else ("a2", bart, bart_h))
        async with holder_s.post(f"{base}/api/v1/agents/{holder}/interactions/{first['id']}"
                                 "/accept", headers=holder_h) as r:
            assert r.status == 200, await r.text()
        # the other agent gets an offer and leaves it ringing across the crash
        async def load() -> None:
            while True:
                async with gw.post(f"{base}/api/v1/interactions", headers=gw_h,
                                   json={"channel": "voice", "queue": "voice"}) as r:
                    if r.status == 201:
                        body = await r.json()
                        acked[body["id"]] = body["ref"]

        loader = asyncio.create_task(load())
        await asyncio.sleep(0.8)  # a few hundred acknowledged intakes
        server.kill()  # mid-request: the loader's in-flight request gets no answer
        loader.cancel()
        await asyncio.gather(loader, return_exceptions=True)
        await wait_gone(tmp_path / "data" / "redis" / "redis.pid")
        killed_at = time.monotonic()
        assert len(acked) > 20

        await asyncio.sleep(1.5)  # longer than the offer timeout: the pending offer expired
        await server.start()
        db = aioredis.Redis.from_url(f"unix://{tmp_path}/data/redis/redis.sock",
                                     decode_responses=True)
        try:
            for ix_id, ref in acked.items():
                assert await db.hget(f"cl:ix:{ix_id}", "ref") == ref, ix_id
                assert await db.hget("cl:refs", ref) == ix_id
            kept = await db.hgetall(f"cl:ix:{first['id']}")
            assert (kept["state"], kept["agent"]) == ("connected", holder)
            # the expired offer is handled by the restarted dispatcher: RINGNOANSWER (timeout)
            for _ in range(100):
                entries = await db.xrange("cl:events")
                rona = [f for _i, f in entries
                        if f["ev"] == "RINGNOANSWER" and f["reason"] == "timeout"]
                if rona:
                    break
                await asyncio.sleep(0.05)
            assert rona, "the offer that expired while cityline was down was never handled"
            assert int(rona[0]["t"]) / 1000 > time.time() - (time.monotonic() - killed_at)
            # the accepted call can be finished after the restart, with the old session
            async with holder_s.post(
                f"{base}/api/v1/agents/{holder}/interactions/{first['id']}/complete",
                headers=holder_h,
            ) as r:
                assert r.status == 200, await r.text()
            # every acknowledged interaction is in exactly one place: waiting, with an agent,
            # or finished; none vanished from the queues
            waiting = set()
            for bid in await db.smembers("cl:qb:voice"):
                waiting |= set(await db.zrange(f"cl:b:{bid}", 0, -1))
            for ix_id in acked:
                state = await db.hget(f"cl:ix:{ix_id}", "state")
                assert (state == "queued") == (ix_id in waiting), (ix_id, state)
        finally:
            await db.aclose()
        for s in (gw, anna, bart):
            await s.close()
    finally:
        server.stop()
