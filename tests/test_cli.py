"""The `cityline` command line, called in-process through `router.cli.main`."""

from __future__ import annotations

import argparse
import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from router import cli

GOOD = """\
city:
  name: Testowo
  languages: [pl, en]
skills:
  tax:
    kind: information
    labels: {pl: Podatki, en: Taxes}
  waste:
    kind: information
    labels: {pl: Odpady, en: Waste}
queues:
  voice-info:
    channel: voice
    skills: {tax: 3}
    service_level: {target_pct: 90, threshold_s: 15}
  email-info:
    channel: email
    skills: {waste: 1}
    service_level: {target_pct: 80, threshold_s: 3600}
agents:
  a1:
    name: Anna Nowak
    skills: {tax: 5, waste: 2}
"""


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`main()` configures logging like the real command; undo it for the next test."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access_level = logging.getLogger("aiohttp.access").level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(access_level)
    logging.captureWarnings(False)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "cityline.yaml"
    path.write_text(GOOD)
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    lines = GOOD.splitlines()
    # line 16: a misspelt setting; line 24: a skill level out of range
    lines.insert(15, "    offer_timeot_s: 20")
    lines[23] = lines[23].replace("tax: 5", "tax: 15")
    path = tmp_path / "broken.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_check_config_good(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK")
    assert "2 queues, 1 agent, 2 skills" in out


def test_check_config_broken(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", str(broken)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith(f"{broken}:16: queues.voice-info.offer_timeot_s:") for line in out
    ), out
    assert any(line.startswith(f"{broken}:24: agents.a1.skills.tax:") for line in out), out
    assert not any(line.startswith("OK") for line in out)


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert cli.main(["check-config", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().out


def test_command_line_overrides_config(good: Path, tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(
        ["serve", "--config", str(good), "--port", "0", "--host", "::1", "--data-dir", "d"]
    )
    config = cli.load_config_for(args)
    assert config.http.port == 0
    assert config.http.host == "::1"
    assert config.data_dir == Path("d")
    assert config.city.name == "Testowo"


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_bad_port_is_a_usage_error(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--port", port])
    assert exit_info.value.code == 2
    assert "port" in capsys.readouterr().err


def test_serve_with_broken_config_exits_2(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--config", str(broken), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:16:" in err


def test_dispatch_needs_a_shared_redis(good: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert cli.main(["dispatch", "--config", str(good)]) == 1
    assert "REDIS_URL" in caplog.text and "--redis-url" in caplog.text


def test_stats_commands_reach_stats_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, argparse.Namespace]] = []

    def stats_command(args: argparse.Namespace) -> int:
        seen.append(("stats", args))
        return 0

    async def export_queue_log_command(args: argparse.Namespace) -> int:
        seen.append(("export", args))
        return 3

    fake = types.ModuleType("router.stats_cli")
    fake.stats_command = stats_command  # type: ignore[attr-defined]
    fake.export_queue_log_command = export_queue_log_command  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "router.stats_cli", fake)
    import router

    monkeypatch.setattr(router, "stats_cli", fake, raising=False)

    assert cli.main(["stats", "--queue", "voice-info", "--format", "json"]) == 0
    assert cli.main(["export", "queue-log", "-o", "out.log", "--since", "2026-01-01"]) == 3
    assert seen[0][0] == "stats" and seen[0][1].queue == ["voice-info"]
    assert seen[1][0] == "export" and seen[1][1].output == "out.log"


def test_stats_without_stats_cli_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "router.stats_cli", None)  # import now fails
    import router

    monkeypatch.delattr(router, "stats_cli", raising=False)
    assert cli.main(["stats"]) == 2
    assert cli.main(["export", "queue-log"]) == 2
    err = capsys.readouterr().err
    assert "`cityline stats` is not available" in err
    assert "`cityline export queue-log` is not available" in err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "serve" in err and "check-config" in err
