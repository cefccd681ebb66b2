"""`cityline serve` with the voice channel enabled: the composition root starts the adapter and
its event feed under the supervisor, and refuses to start without the AMI secret."""

from __future__ import annotations

import pytest

from router.config import load_config
from router.main import Cityline, StartupError
from tests.fakes.ami_server import FakeAsterisk


async def test_serve_starts_and_stops_the_voice_channel(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeAsterisk(users={"cityline": "pw-for-tests"}, timestampevents=True) as fake:
        cfg = load_config(None, env={})
        cfg.channels.voice.enabled = True
        cfg.channels.voice.ami_port = fake.port
        cfg.channels.voice.fastagi_port = 0
        monkeypatch.setenv("CITYLINE_AMI_SECRET", "pw-for-tests")
        async with Cityline(cfg, redis_url=redis_url, http=False, embedded_redis=False) as city:
            assert {"voice", "voice-events"} <= set(city.supervisor.names)
            await fake.wait_sessions(1)
        assert not fake.authenticated_sessions  # logged off on stop


async def test_serve_refuses_voice_without_the_ami_secret(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(None, env={})
    cfg.channels.voice.enabled = True
    monkeypatch.delenv("CITYLINE_AMI_SECRET", raising=False)
    with pytest.raises(StartupError, match="CITYLINE_AMI_SECRET"):
        async with Cityline(cfg, redis_url=redis_url, http=False, embedded_redis=False):
            pass
