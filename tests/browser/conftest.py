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
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from queues.keys import Keys
from router import users as accounts
from router.config import CitylineConfig, load_config
from router.main import Cityline
from router.models import IntakeRequest
from router.service import RoutingService
from tests.api_helpers import PASSWORD, cheap_hasher
from tests.routing_fixtures import CONFIG, eventually, offered_to

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


@pytest.fixture
async def city(
    redis: aioredis.Redis, redis_url: str, tmp_path: Path, city_users: Sequence[tuple]
) -> AsyncIterator[tuple[Cityline, str]]:
    """A real `cityline serve` in-process (HTTP on a free port, no channels) and its base URL,
    with the users a test module lists in its `city_users` fixture: (name, role, agent id)."""
    cfg: CitylineConfig = load_config(CONFIG, env={})
    cfg = cfg.model_copy(
        update={"http": cfg.http.model_copy(update={"port": 0}), "data_dir": tmp_path}
    )
    keys = Keys(cfg.redis.prefix)
    for name, role, agent in city_users:
        await accounts.add_user(
            redis, keys, name, role, agent_id=agent, password=PASSWORD, hasher=cheap_hasher()
        )
    async with Cityline(cfg, redis_url=redis_url, channels=False) as running:
        assert running.http_url
        yield running, running.http_url


async def log_in(page: Any, base: str, username: str, start: str) -> None:
    """Log in through the form, starting from `start` (a protected page redirects to it)."""
    await page.goto(f"{base}{start}")
    await page.wait_for_url(re.compile(r"/login"))
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#login-submit")


async def logged_in_page(
    browser: Any, base: str, username: str, start: str, viewport: dict[str, int]
) -> Any:
    """A new browser (context) logged in through the form; it lands on its home page."""
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await log_in(page, base, username, start)
    return page


async def accepted(service: RoutingService, agent_id: str, channel: str, queue: str) -> str:
    """An interaction created through the service, offered to `agent_id` (signed in ready)
    and accepted by it."""
    ix = (await service.create_interaction(IntakeRequest(channel=channel, queue=queue))).id
    await service.agent_login(agent_id, ready=True)
    await eventually(lambda: offered_to(service, agent_id))
    await service.accept(agent_id, ix)
    return ix
