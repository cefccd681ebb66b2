"""channels -> router -> queues: no module under channels/ imports `queues` or `redis` (at the
top or inside a function); whatever a channel remembers goes through `router` (its
`ChannelState`, the outbox, the RoutingService)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CHANNELS = Path(__file__).resolve().parents[2] / "channels"
FORBIDDEN = ("queues", "redis")

# Modules that still import them, to be ported like channels/sms; strict, so a port that
# removes the import turns its mark into a failure until it is taken off this list.
KNOWN_VIOLATIONS: dict[str, str] = {}


def forbidden_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def _modules() -> list[object]:
    params: list[object] = []
    for path in sorted(CHANNELS.rglob("*.py")):
        rel = path.relative_to(CHANNELS).as_posix()
        marks = []
        if rel in KNOWN_VIOLATIONS:
            marks.append(pytest.mark.xfail(
                strict=True, reason=f"still imports {KNOWN_VIOLATIONS[rel]} (to be ported)"))
        params.append(pytest.param(path, id=rel, marks=marks))
    return params


@pytest.mark.parametrize("path", _modules())
def test_channel_modules_import_neither_queues_nor_redis(path: Path) -> None:
    assert forbidden_imports(path) == []


def test_the_check_sees_every_channel_and_its_known_violations_exist() -> None:
    packages = {p.parent.name for p in CHANNELS.glob("*/__init__.py")}
    assert {"sms", "email", "chat", "telegram", "voice", "webform"} <= packages
    for rel in KNOWN_VIOLATIONS:
        assert (CHANNELS / rel).exists(), f"{rel} is gone: take it off KNOWN_VIOLATIONS"


def test_the_check_finds_an_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nimport redis.asyncio as r\n\n\ndef f():\n"
                      "    from queues import errors\n    from .queues import x\n")
    assert forbidden_imports(module) == ["line 2: redis.asyncio", "line 6: queues"]
