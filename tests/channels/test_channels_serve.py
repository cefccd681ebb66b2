"""`cityline serve` with the e-mail, SMS and chat channels enabled: the adapters and their
event feeds run under the supervisor, the SMTP server answers, the SMS webhooks are routed and
the chat page is served."""

from __future__ import annotations

import asyncio
import smtplib

import aiohttp

from router.config import load_config
from router.main import Cityline


async def test_serve_starts_email_and_sms(redis_url: str, tmp_path) -> None:
    cfg = load_config(None, env={})
    cfg.data_dir = tmp_path
    cfg.http.port = 0
    cfg.channels.email.domains = ["miasto.example.pl"]
    cfg.channels.email.port = 0
    cfg.channels.email.enabled = True
    cfg.channels.sms.enabled = True
    async with Cityline(cfg, redis_url=redis_url, embedded_redis=False) as city:
        names = set(city.supervisor.names)
        assert {"email", "email-events", "sms", "sms-events", "chat", "chat-events"} <= names
        email = next(a for a in city.adapters if a.channel == "email")

        def noop() -> int:  # a real SMTP client, off the loop the server runs on
            with smtplib.SMTP("127.0.0.1", email.port, timeout=5) as smtp:
                return smtp.noop()[0]

        assert await asyncio.to_thread(noop) == 250
        async with aiohttp.ClientSession() as http, http.post(
            f"{city.http_url}/webhooks/sms/generic", data=b"{}"
        ) as r:
            # routed (not 404); without a configured secret the webhook refuses everything
            assert r.status in (401, 403, 503)
        async with aiohttp.ClientSession() as http, http.get(f"{city.http_url}/chat") as r:
            assert r.status == 200 and "WebSocket" in await r.text()
        async with aiohttp.ClientSession() as http, http.get(f"{city.http_url}/form") as r:
            assert r.status == 200 and "csrf" in (await r.text()).lower()
        async with aiohttp.ClientSession() as http, http.get(
            f"{city.http_url}/api/v1/openapi.json"
        ) as r:
            assert "/api/v1/requests" in (await r.json())["paths"]  # documented too
