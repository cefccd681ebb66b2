"""`cityline serve` end to end, and the composition root's supervision and shutdown.

The subprocess tests run the real command (`python -m router.cli serve`) the way an operator
does, with no REDIS_URL, and check what a newcomer sees: one log line per component with its
address, /healthz, /readyz, /metrics, and a SIGTERM that stops cityline and its embedded
redis-server within 15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import yaml

from queues.embedded import free_tcp_port
from router import main as router_main
from router.config import CitylineConfig, HttpConfig, RedisConfig
from router.main import Cityline, StartupError, redact_url

ROOT = Path(__file__).resolve().parent.parent
STOP_WITHIN_S = 15.0
START_WITHIN_S = 30.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # the default config runs the e-mail channel on 2525: any free port here, so a test run
    # never collides with a cityline running on this machine
    env["CITYLINE_CHANNELS__EMAIL__PORT"] = "0"
    env.pop("CITYLINE_TELEGRAM_TOKEN", None)  # the packaged city's bot starts only with one
    return env


def _redis_pids_for(data_dir: Path) -> list[int]:
    """Every live redis-server whose command line names this data directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if b"redis-server" in cmdline and str(data_dir).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


class Served:
    """One `cityline serve` subprocess with its log file."""

    def __init__(self, tmp_path: Path, *args: str, own_session: bool = False) -> None:
        self.port = free_tcp_port()
        self.data_dir = tmp_path / "data"
        self.log_path = tmp_path / "serve.log"
        self._log = self.log_path.open("wb")
        command = [sys.executable, "-m", "router.cli", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), *args]
        self.proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str, str]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.headers["Content-Type"], resp.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_WITHIN_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"cityline exited with {self.proc.returncode}:\n{self.log}")
            with contextlib.suppress(OSError):
                if self.get("/healthz")[0] == 200:
                    return
            time.sleep(0.05)
        pytest.fail(f"/healthz did not answer within {START_WITHIN_S} s:\n{self.log}")

    def terminate(self) -> float:
        """SIGTERM; returns how long cityline took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cityline ignored SIGTERM for {STOP_WITHIN_S} s:\n{self.log}")
        return time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        for pid in _redis_pids_for(self.data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for one in started:
        one.close()


def test_serve_embedded_redis_then_sigterm(tmp_path: Path, served: list[Served]) -> None:
    city = Served(tmp_path)
    served.append(city)
    city.wait_healthy()

    status, _, body = city.get("/readyz")
    assert status == 200, body
    status, content_type, metrics = city.get("/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert "cityline_up 1.0" in metrics.splitlines()
    # the live queue figures come from Redis through the statistics collector
    assert any(line.startswith("cityline_queue_waiting{") for line in metrics.splitlines())

    sock = city.data_dir.resolve() / "redis" / "redis.sock"
    log = city.log
    # one INFO line per component, each with its address
    assert re.search(
        rf"INFO router\.main: redis: embedded redis-server [\d.]+ at unix://{re.escape(str(sock))} "
        r"\(AOF everysec, data ",
        log,
    ), log
    assert f"store: Lua scripts loaded on unix://{sock}" in log, log
    assert (
        f"INFO router.main: http: http://127.0.0.1:{city.port} "
        "(API /api/v1, health /healthz, metrics /metrics)" in log
    ), log
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \S+: ", log), log

    redis_pid = int((city.data_dir / "redis" / "redis.pid").read_text())
    assert _redis_pids_for(city.data_dir) == [redis_pid]

    took = city.terminate()
    assert city.proc.returncode == 0, city.log
    assert took < STOP_WITHIN_S
    deadline = time.monotonic() + STOP_WITHIN_S
    while _redis_pids_for(city.data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _redis_pids_for(city.data_dir) == [], "the embedded redis-server outlived cityline"
    log = city.log
    assert "SIGTERM" in log and "cityline: stopped" in log
    # shutdown order: HTTP intake first, the embedded Redis last
    assert log.index("http: stopped") < log.index("redis: embedded redis-server stopped")
    assert (city.data_dir / "redis" / "appendonly.aof").exists()


def test_the_default_city_runs_email_sms_chat_and_the_form(
        tmp_path: Path, served: list[Served]) -> None:
    """No config file: mail is taken over SMTP, a signed SMS webhook is taken (its secret
    generated into the data directory), and the chat and form pages are served."""
    city = Served(tmp_path)
    served.append(city)
    city.wait_healthy()
    found = re.search(r"email: SMTP server on 127\.0\.0\.1:(\d+)", city.log)
    assert found, city.log
    mail = EmailMessage()
    mail["From"], mail["To"] = "Jan <jan@example.pl>", "kontakt@nowygrod.example.pl"
    mail["Subject"], mail["Message-ID"] = "Latarnia", "<serve-1@example.pl>"
    mail.set_content("Nie świeci latarnia na ul. Długiej.")
    with smtplib.SMTP("127.0.0.1", int(found.group(1)), timeout=10) as smtp:
        smtp.send_message(mail)
        with pytest.raises(smtplib.SMTPRecipientsRefused):  # never a relay
            smtp.sendmail("x@example.org", ["someone@elsewhere.example"], b"Subject: x\r\n\r\nx")
    secret = (city.data_dir / "sms-webhook-secret").read_text().strip()
    assert oct((city.data_dir / "sms-webhook-secret").stat().st_mode & 0o777) == "0o600"
    body = json.dumps({"id": "gw-1", "from": "600 100 200", "text": "Dziura w jezdni"}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{city.port}/webhooks/sms/generic", data=body, method="POST",
        headers={"Content-Type": "application/json", "X-Cityline-Signature": signature})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200 and json.loads(resp.read())["status"] == "created"
    assert city.get("/chat")[0] == 200
    assert city.get("/form")[0] == 200
    deadline = time.monotonic() + 10
    while "email: <serve-1@example.pl> from jan@example.pl -> " not in city.log:
        assert time.monotonic() < deadline, city.log
        time.sleep(0.05)
    assert secret not in city.log
    assert "telegram: CITYLINE_TELEGRAM_TOKEN is not set: the Telegram channel starts once a bot " \
        "token is configured" in city.log


def test_ctrl_c_in_a_terminal_stops_in_order(tmp_path: Path, served: list[Served]) -> None:
    """Ctrl-C sends SIGINT to the terminal's whole foreground process group."""
    city = Served(tmp_path, own_session=True)  # its own group, as a shell job has
    served.append(city)
    city.wait_healthy()
    os.killpg(city.proc.pid, signal.SIGINT)
    try:
        city.proc.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cityline ignored Ctrl-C for {STOP_WITHIN_S} s:\n{city.log}")
    log = city.log
    assert city.proc.returncode == 0, log
    assert " ERROR " not in log and " CRITICAL " not in log, log
    redis_log = (city.data_dir / "redis" / "redis.log").read_text()
    assert "Received SIGINT" not in redis_log, "Redis must be stopped by cityline, last"


def test_serve_uses_the_given_redis_url(
    tmp_path: Path, served: list[Served], redis_url: str
) -> None:
    city = Served(tmp_path, "--redis-url", redis_url)
    served.append(city)
    city.wait_healthy()
    assert city.get("/readyz")[0] == 200
    log = city.log
    assert "redis: redis-server " in log and f" at {redis_url}" in log, log
    assert "embedded" not in log
    assert not (city.data_dir / "redis").exists()
    assert _redis_pids_for(city.data_dir) == []
    city.terminate()
    assert city.proc.returncode == 0, city.log


def test_serve_on_a_busy_port_fails_cleanly(tmp_path: Path, served: list[Served]) -> None:
    city = Served(tmp_path)
    served.append(city)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", city.port))
        busy.listen()
        try:
            city.proc.wait(START_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"cityline kept running without its port:\n{city.log}")
    assert city.proc.returncode == 1
    log = city.log
    assert f"cannot listen on 127.0.0.1:{city.port}" in log, log
    assert "Traceback" not in log, "a start-up problem is one clear line, not a traceback"
    # the failed start cleaned up: the embedded Redis it had started is gone
    assert "redis: embedded redis-server stopped" in log, log
    assert _redis_pids_for(city.data_dir) == []


# --- the composition root in-process ---------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> CitylineConfig:
    return CitylineConfig(
        http=HttpConfig(port=0), redis=RedisConfig(prefix="t:"), data_dir=tmp_path / "data"
    )


async def test_a_dying_component_stops_the_server(
    config: CitylineConfig, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken_loop(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.01)
        raise ValueError("lost the plot")

    stop = asyncio.Event()
    city = Cityline(config, redis_url=redis_url)
    city.add_component("broken", broken_loop)
    async with city:
        assert city.http_port and city.http_port > 0
        code = await asyncio.wait_for(city.run_until(stop), 5)
    assert code == 1
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert critical and "broken" in critical[0].getMessage()
    assert critical[0].exc_info is not None and "lost the plot" in caplog.text
    assert city.redis is None, "the Redis client was closed"


async def test_a_loop_that_returns_early_is_a_failure(
    config: CitylineConfig, redis_url: str
) -> None:
    async def quits(stop: asyncio.Event) -> None:
        return None

    city = Cityline(config, redis_url=redis_url)
    city.add_component("quitter", quits)
    async with city:
        assert await asyncio.wait_for(city.run_until(asyncio.Event()), 5) == 1
    assert city.supervisor.failures == ["quitter"]


async def test_graceful_stop_then_cancel_after_the_deadline(
    config: CitylineConfig,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(router_main, "COMPONENT_STOP_TIMEOUT_S", 0.2)
    events: list[str] = []

    async def polite(stop: asyncio.Event) -> None:
        await stop.wait()
        events.append("polite stopped")

    async def stubborn(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # never looks at `stop`
        except asyncio.CancelledError:
            events.append("stubborn cancelled")
            raise

    stop = asyncio.Event()
    city = Cityline(config, redis_url=redis_url)
    city.add_component("polite", polite)
    city.add_component("stubborn", stubborn)
    async with city:
        stop.set()
        assert await city.run_until(stop) == 0
    assert sorted(events) == ["polite stopped", "stubborn cancelled"]
    assert "stubborn: still running" in caplog.text
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]


async def test_failed_start_cleans_up(config: CitylineConfig, redis_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = config.model_copy(
            update={"http": config.http.model_copy(update={"port": busy.getsockname()[1]})}
        )
        city = Cityline(taken, redis_url=redis_url)
        with pytest.raises(StartupError, match="cannot listen"):
            async with city:
                pytest.fail("started on a busy port")
    assert city.redis is None


async def test_unreachable_redis_is_a_startup_error(config: CitylineConfig) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_tcp_port()}/0"
    with pytest.raises(StartupError, match="cannot reach Redis") as info:
        async with Cityline(config, redis_url=url):
            pass
    assert "s3cret" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("redis://:pw@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://user:pw@[::1]:6379/0") == "redis://user:***@[::1]:6379/0"
    assert redact_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


def test_docker_compose_describes_the_stack() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "cityline", "asterisk"} <= set(services)
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--appendonly" in " ".join(map(str, redis["command"]))
    cityline = services["cityline"]
    env = cityline["environment"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert "/readyz" in " ".join(cityline["healthcheck"]["test"])
    assert "/etc/cityline/cityline.yaml" in " ".join(cityline["command"])
    assert any("asterisk_conf" in str(v) for v in services["asterisk"]["volumes"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("FROM python:3.11-slim") or "FROM python:3.11-slim" in dockerfile
