"""`cityline stats` and `cityline export queue-log` from the command line, against a real Redis."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import cli
from router.config import load_config
from router.stats import StatsAggregator
from router.stats_cli import export_queue_log_command, stats_command
from tests.stats_events import (
    Events,
    abandon,
    addmember,
    complete,
    connect,
    enterqueue,
    local_ms,
    wrapupend,
)

CONFIG = """\
city:
  timezone: Europe/Warsaw
  languages: [pl]
  default_language: pl
skills:
  general: {kind: general, labels: {pl: Ogólne}}
queues:
  info:
    channel: voice
    skills: {general: 1}
    service_level: {target_pct: 80, threshold_s: 20}
  mail:
    channel: email
    service_level: {target_pct: 80, threshold_s: 3600}
agents:
  anna: {name: Anna Nowak, skills: {general: 5}}
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = tmp_path / "city.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
async def traffic(redis: aioredis.Redis, config_file: Path) -> None:
    t = local_ms("2026-03-10T10:00:00")
    await Events(redis).add_all(
        addmember(t - 60_000, "anna"),
        enterqueue(t, "c1", "info"),
        connect(t + 8000, "c1", "info", "anna", 8000),
        complete(t + 128_000, "c1", "info", "anna", 8000, 120_000),
        wrapupend(t + 148_000, "c1", "info", "anna", 20_000),
        enterqueue(t + 1_000_000, "c2", "info"),
        abandon(t + 1_030_000, "c2", "info", 30_000),
    )
    agg = StatsAggregator(redis, Keys(), load_config(config_file, env={}))
    while await agg.fold_once():
        pass


def ns(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**kw)


@pytest.mark.usefixtures("traffic")
def test_stats_json_for_a_day(
    config_file: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = stats_command(
        ns(config=str(config_file), redis_url=redis_url, day="2026-03-10", json=True,
           agents=True, out=None)
    )  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["start"] == "2026-03-10T00:00:00+01:00"
    assert doc["end"] == "2026-03-11T00:00:00+01:00"
    info = next(q for q in doc["queues"] if q["name"] == "info")
    f = info["figures"]
    assert (f["offered"], f["answered"], f["abandoned"]) == (2, 1, 1)
    assert f["service_level"] == pytest.approx(0.5)  # 1 within / (1 + 1 after 20 s)
    assert f["abandonment_rate"] == pytest.approx(0.5)
    assert f["aht_s"] == pytest.approx(140.0)
    mail = next(q for q in doc["queues"] if q["name"] == "mail")
    assert mail["figures"]["service_level"] is None
    assert doc["total"]["figures"]["offered"] == 2
    anna = doc["agents"][0]
    assert (anna["agent"], anna["name"], anna["figures"]["handled"]) == ("anna", "Anna Nowak", 1)


@pytest.mark.usefixtures("traffic")
def test_stats_text_through_the_cli_parser(
    config_file: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["stats", "--config", str(config_file), "--redis-url", redis_url,
         "--since", "2026-03-10T09:00", "--until", "2026-03-10T12:00"]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert "2026-03-10T09:00:00+01:00 .. 2026-03-10T12:00:00+01:00" in lines[0]
    info = next(line for line in lines if line.startswith("info "))
    assert info.split() == [
        "info", "2", "1", "1", "0", "50.0%", "50.0%", "8.0s", "2:20", "0.0%", "100.0%",
        "0", "0.0%", "0.0%", "0", "0",
    ]  # fmt: skip
    assert "KB/FCR" in next(line for line in lines if line.startswith("Queue "))
    assert any(line.startswith("voice ") for line in lines)
    assert any(line.startswith("all ") for line in lines)


@pytest.mark.usefixtures("traffic")
def test_stats_by_interval_and_agent(
    config_file: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(
        ["stats", "--config", str(config_file), "--redis-url", redis_url, "--by", "interval",
         "--since", "2026-03-10", "--until", "2026-03-11", "--format", "json", "--queue", "info"]
    ) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    starts = {(r["start"], r["kind"], r["name"]) for r in doc["intervals"]}
    assert ("2026-03-10T10:00:00+01:00", "queue", "info") in starts
    assert ("2026-03-10T10:15:00+01:00", "queue", "info") in starts  # the abandon at 10:17
    assert all(r["name"] != "mail" for r in doc["intervals"])
    assert [q["name"] for q in doc["queues"]] == ["info"]
    assert cli.main(
        ["stats", "--config", str(config_file), "--redis-url", redis_url, "--by", "agent",
         "--since", "2026-03-10", "--until", "2026-03-11"]
    ) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert any(line.startswith("anna ") and "Anna Nowak" in line for line in text.splitlines())


@pytest.mark.usefixtures("traffic")
def test_export_queue_log_to_a_file(
    config_file: Path, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "queue_log"
    assert cli.main(
        ["export", "queue-log", "--config", str(config_file), "--redis-url", redis_url,
         "--since", "2026-03-10", "--until", "2026-03-11", "-o", str(out)]
    ) == 0  # fmt: skip
    lines = out.read_text().splitlines()
    assert [line.split("|")[4] for line in lines] == [
        "ADDMEMBER", "ENTERQUEUE", "CONNECT", "COMPLETECALLER", "WRAPUPEND", "ENTERQUEUE",
        "ABANDON",
    ]  # fmt: skip
    assert "7 queue_log lines" in capsys.readouterr().err
    code = export_queue_log_command(
        ns(config=str(config_file), redis_url=redis_url, day="2026-03-10", out=None,
           asterisk_only=True)
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert "WRAPUPEND" not in {line.split("|")[4] for line in printed}
    assert len(printed) == 6


def test_no_redis_configured_is_a_clear_usage_error(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats_command(ns(config=str(config_file), redis_url=None)) == 2
    err = capsys.readouterr().err
    assert "no Redis configured" in err and "--redis-url" in err
    assert export_queue_log_command(ns(config=str(config_file), redis_url=None)) == 2


def test_unreachable_redis_and_bad_arguments(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = f"unix://{tmp_path}/none.sock"
    assert stats_command(ns(config=str(config_file), redis_url=nowhere)) == 1
    assert "cannot reach Redis" in capsys.readouterr().err
    assert stats_command(ns(config=str(config_file), redis_url=nowhere, day="10.03.2026")) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert stats_command(ns(config=str(config_file), redis_url=nowhere, queue=["nope"])) == 2
    assert "no such queue" in capsys.readouterr().err


def kbanswer(t: int, ix: str, queue: str, agent: str) -> dict[str, str]:
    """An agent answered contact `ix` from a knowledge card while connected, never transferred."""
    return {"ev": "KBANSWER", "t": str(t), "queue": queue, "ix": ix, "agent": agent,
            "channel": "voice", "card": "dog-tax", "during": "connected", "transfers": "0",
            "first": "1"}


@pytest.fixture
async def kb_traffic(redis: aioredis.Redis, config_file: Path) -> None:
    """Four contacts handled at first contact, one of them answered from a knowledge card."""
    t = local_ms("2026-03-10T10:00:00")
    events = [addmember(t - 60_000, "anna")]
    for i in range(4):
        ix, at = f"k{i}", t + i * 200_000
        events += [enterqueue(at, ix, "info"), connect(at + 5000, ix, "info", "anna", 5000)]
        if i == 0:
            events.append(kbanswer(at + 10_000, ix, "info", "anna"))
        events.append(complete(at + 65_000, ix, "info", "anna", 5000, 60_000))
    await Events(redis).add_all(*events)
    agg = StatsAggregator(redis, Keys(), load_config(config_file, env={}))
    while await agg.fold_once():
        pass


@pytest.mark.usefixtures("kb_traffic")
def test_stats_show_resolutions_from_the_knowledge_base(
    config_file: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["stats", "--config", str(config_file), "--redis-url", redis_url,
            "--since", "2026-03-10T09:00", "--until", "2026-03-10T12:00"]
    assert cli.main([*base, "--format", "json", "--agents"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = doc["total"]["figures"]
    assert (total["handled"], total["first_contact_resolved"], total["kb_resolved"]) == (4, 4, 1)
    assert total["kb_rate"] == pytest.approx(0.25)  # of handled
    assert total["kb_fcr_share"] == pytest.approx(0.25)  # of first-contact resolutions
    assert doc["agents"][0]["figures"]["kb_resolved"] == 1
    assert cli.main(base) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("Queue ")).split()
    info = next(line for line in lines if line.startswith("info ")).split()
    cells = dict(zip(header[1:], info[1:], strict=True))
    assert (cells["FCR%"], cells["KB"], cells["KB%"], cells["KB/FCR"]) == (
        "100.0%", "1", "25.0%", "25.0%")
    assert cli.main([*base, "--by", "agent"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("Agent ")).split()
    anna = next(line for line in lines if line.startswith("anna ")).split()
    assert header[header.index("KB")] == "KB"
    # "Anna Nowak" takes two cells when split on blanks
    assert anna[header.index("KB") + 1] == "1"
