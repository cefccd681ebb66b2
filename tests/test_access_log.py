"""The access log never writes a query string (the web form's status key travels in one)."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web

from router.http.access_log import PathOnlyAccessLogger


async def test_the_access_log_leaves_the_query_out(caplog: pytest.LogCaptureFixture) -> None:
    app = web.Application()

    async def status(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/status/{ref}", status)
    runner = web.AppRunner(app, access_log_class=PathOnlyAccessLogger)  # as router/main.py
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            with caplog.at_level(logging.INFO, logger="aiohttp.access"):
                url = f"http://127.0.0.1:{port}/status/2026-000001?key=s3cr3t-key"
                async with session.get(url) as resp:
                    assert resp.status == 200
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any('"GET /status/2026-000001" 200' in line for line in lines), lines
    assert not any("s3cr3t" in line for line in lines)
