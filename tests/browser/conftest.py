"""Browser tests: Playwright's Python package driving Debian's chromium, headless.

No browser is ever downloaded: chromium is launched from `/usr/bin/chromium` (Debian's package,
`apt-get install chromium`; `CITYLINE_CHROMIUM` names another binary). Without it, or without
the playwright package, every test here is skipped with the reason, so the README's test
command runs them wherever chromium is installed and stays green elsewhere.

Screenshots go to `$CITYLINE_ARTIFACTS` (default `test-artifacts/` in the repository, ignored by
git): CI keeps them as the pages' pictures.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CITYLINE_CHROMIUM", "/usr/bin/chromium"))


def _skip_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def artifacts() -> Path:
    path = Path(os.environ.get("CITYLINE_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # never a downloaded browser: Debian's chromium, headless
        instance = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield instance
        finally:
            await instance.close()
