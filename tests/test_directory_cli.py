"""`cityline agent ...` and `cityline queue ...` as real subprocesses against the session's
redis-server; a running service (this process) applies what they write without a restart."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from router.config import CitylineConfig
from router.directory import Directory, DirectoryWatcher
from router.dispatcher import Dispatcher
from router.service import RoutingService
from tests.routing_fixtures import CONFIG, call, eventually, offered_to, ready
from tests.test_cli_users import Run, _env
from tests.test_directory import FLOW, unchanged


@pytest.fixture
def run_cli(redis_url: str, tmp_path: Path):
    async def run(*args: str, stdin: str | None = None, config: Path = CONFIG) -> Run:
        argv = [sys.executable, "-m", "router.cli", *args, "--config", str(config),
                "--redis-url", redis_url]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 60)
        result = Run(int(proc.returncode or 0), out.decode(), err.decode())
        assert "Traceback" not in result.err, result.err
        return result

    return run


async def test_agent_set_applies_to_a_running_service(
    run_cli, service: RoutingService, cfg: CitylineConfig, dispatcher: Dispatcher
) -> None:
    store = service.store
    directory = Directory(store.redis, store.keys, cfg, scripts=store.scripts, service=service)
    await directory.refresh(force=True)
    stop = asyncio.Event()
    watcher = asyncio.create_task(DirectoryWatcher(directory, poll_s=0.05).run(stop))
    try:
        await ready(service, "a1")
        ix = await call(service, "voice", topic="roads")
        assert await dispatcher.match_round() == 0
        run = await run_cli("agent", "set", "a1", "--skill", "roads=5", "--skill", "general=6",
                            "--remove-skill", "taxes", "--capacity", "chat=2", "--line", "second")
        assert run.code == 0, run.err
        assert "agent a1 changed (version 1): general=6 roads=5; line second" in run.out
        await eventually(lambda: cfg.agents["a1"].skills == {"general": 6, "roads": 5})
        assert cfg.agents["a1"].capacity["chat"] == 2 and cfg.agents["a1"].line == "second"
        await eventually(dispatcher.match_round)
        assert await offered_to(service, "a1") == [ix]
    finally:
        stop.set()
        await watcher


async def test_agent_commands(run_cli, redis: aioredis.Redis) -> None:
    run = await run_cli("agent", "set", "n1", "--skill", "general=3")
    assert run.code == 2 and "give --name" in run.err
    run = await run_cli("agent", "set", "n1", "--name", "Nowy", "--skill", "cooking=3")
    assert run.code == 2
    assert "skills.cooking: unknown skill 'cooking'" in run.err
    run = await run_cli("agent", "set", "n1", "--name", "Nowy", "--skill", "general=11")
    assert run.code == 2 and "skills.general" in run.err
    assert not await redis.exists("cl:dir:agents")
    run = await run_cli("agent", "set", "n1", "--name", "Nowy", "--skill", "general=3")
    assert run.code == 0, run.err
    run = await run_cli("agent", "list")
    assert run.code == 0
    rows = {line.split()[0]: line for line in run.out.splitlines()[1:]}
    assert set(rows) == {"a1", "a2", "a3", "x1", "n1"}
    assert "general=3" in rows["n1"] and rows["n1"].endswith("added")
    assert rows["a1"].endswith("file")
    doc = json.loads((await run_cli("agent", "list", "--format", "json")).out)
    assert doc["version"] == 1 and doc["agents"][-1]["config"]["name"] == "Nowy"
    run = await run_cli("agent", "remove", "a1")  # the file's user anna works as a1
    assert run.code == 1 and "users.anna.agent" in run.err
    run = await run_cli("agent", "remove", "n1")
    assert run.code == 0 and "agent n1 removed (version 2)" in run.out
    run = await run_cli("agent", "remove", "n1")
    assert run.code == 1 and "unknown agent" in run.err
    run = await run_cli("agent", "set", "a b", "--name", "X")
    assert run.code == 2


async def test_queue_commands(run_cli, redis: aioredis.Redis) -> None:
    run = await run_cli("queue", "set", "chat", "--sl", "95/30", "--offer-timeout", "40",
                        "--skill", "taxes=2")
    assert run.code == 0, run.err
    assert "queue chat changed (version 1): chat, general=1 taxes=2, 95% in 30 s" in run.out
    stored = json.loads(await redis.hget("cl:dir:queues", "chat") or "{}")
    assert stored["offer_timeout_s"] == 40 and stored["wrapup_s"] == 30
    run = await run_cli("queue", "set", "chat-new", "--channel", "chat")
    assert run.code == 2 and "--service-level" in run.err
    run = await run_cli("queue", "set", "chat-new", "--channel", "chat", "--sl", "80/60",
                        "--max-wait", "60", "--overflow", "voice")
    assert run.code == 2 and "overflow" in run.err and "same channel" in run.err
    body = {"channel": "chat", "skills": {"general": 2},
            "service_level": {"target_pct": 80, "threshold_s": 60},
            "escalation": [{"after_s": 30, "lower_min_level": {"general": 1}}]}
    run = await run_cli("queue", "set", "chat-new", "--from-json", "-", stdin=json.dumps(body))
    assert run.code == 0, run.err
    run = await run_cli("queue", "list")
    names = [line.split()[0] for line in run.out.splitlines()[1:]]
    assert names[-1] == "chat-new" and "added" in run.out.splitlines()[-1]
    run = await run_cli("queue", "remove", "voice")
    assert run.code == 1 and "voice-short.overflow" in run.err
    run = await run_cli("queue", "remove", "chat-new")
    assert run.code == 0


async def test_a_queue_an_ivr_flow_routes_to_is_kept(
    run_cli, redis: aioredis.Redis, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hall.yaml").write_text(FLOW, encoding="utf-8")
    config = tmp_path / "city.yaml"
    config.write_text(CONFIG.read_text(encoding="utf-8") + "channels:\n  voice: {enabled: true, "
                      f"flows_dir: {flows}, flow: hall}}\n", encoding="utf-8")  # fmt: skip
    run = await run_cli("queue", "remove", "voice-vip", config=config)
    assert run.code == 1
    assert ("IVR flow 'hall', step 'vip' (hall.yaml:12), sends callers to queue 'voice-vip': "
            "unknown queue 'voice-vip'") in run.err
    run = await run_cli("queue", "set", "voice-vip", "--channel", "chat", config=config)
    assert run.code == 2 and "serves chat, not voice" in run.err
    run = await run_cli("queue", "remove", "chat", config=config)  # the web chat's queue
    assert run.code == 1 and "channels.chat.queue" in run.err
    assert await unchanged(redis) == ({}, {}, set(), set(), None, 0)
    # without the voice channel nothing routes callers there
    run = await run_cli("queue", "remove", "voice-vip")
    assert run.code == 0, run.err


async def test_reset_commands(
    run_cli, service: RoutingService, cfg: CitylineConfig, redis: aioredis.Redis
) -> None:
    """Reset from the command line; a running service (this process) applies it."""
    store = service.store
    directory = Directory(store.redis, store.keys, cfg, scripts=store.scripts, service=service)
    await directory.refresh(force=True)
    stop = asyncio.Event()
    watcher = asyncio.create_task(DirectoryWatcher(directory, poll_s=0.05).run(stop))
    try:
        assert (await run_cli("agent", "set", "a1", "--skill", "roads=5")).code == 0
        assert (await run_cli("queue", "remove", "voice-esc")).code == 0
        assert (await run_cli("agent", "set", "n1", "--name", "Nowy")).code == 0
        await eventually(lambda: directory.version == 3)
        assert cfg.agents["a1"].skills["roads"] == 5 and "voice-esc" not in cfg.queues
        run = await run_cli("queue", "list")
        assert "removed by an admin from the file's queues: voice-esc" in run.out
        assert json.loads((await run_cli("queue", "list", "--format", "json")).out)[
            "removed"] == ["voice-esc"]

        run = await run_cli("agent", "reset", "a1")
        assert run.code == 0, run.err
        assert "agent a1 reset to the configuration file's definition (version 4)" in run.out
        await eventually(lambda: cfg.agents["a1"].skills == {"general": 5, "taxes": 3})
        run = await run_cli("queue", "reset", "voice-esc")
        assert run.code == 0 and "queue voice-esc reset" in run.out
        await eventually(lambda: "voice-esc" in cfg.queues)
        run = await run_cli("agent", "reset", "n1")
        assert run.code == 0
        assert ("agent n1 removed (version 6): the configuration file does not define it, so "
                "resetting it removes it") in run.out
        await eventually(lambda: "n1" not in cfg.agents)

        before = await unchanged(redis)
        run = await run_cli("agent", "reset", "a1")
        assert run.code == 1 and "no admin change to reset" in run.err
        run = await run_cli("queue", "reset", "nowhere")
        assert run.code == 1 and "unknown queue 'nowhere'" in run.err
        assert await unchanged(redis) == before
    finally:
        stop.set()
        await watcher
