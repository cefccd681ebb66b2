"""A loopback fake of the Telegram Bot API, so the real python-telegram-bot code runs in tests.

Serves `/bot<token>/<method>` on 127.0.0.1 (port 0) with Telegram's envelope
`{"ok": true, "result": ...}` for the methods our adapter's library calls make: getMe,
sendMessage, editMessageText, answerCallbackQuery, setWebhook, deleteWebhook, getUpdates
(long-polls a queue the test fills with `queue_update`). Every call is recorded with its
parameters and the Host it was addressed to; an unknown method or token answers like Telegram
(404 / 401), so a library call we did not expect shows up as a failure, not a silent success.
`fail(method, status, ...)` makes the next calls of a method answer an error as Telegram does
(429 with retry_after, 403 for a bot the user blocked, 5xx), recorded like any call.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_ID = 7000001
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Cityline", "username": "cityline_bot",
            "can_join_groups": False, "can_read_all_group_messages": False,
            "supports_inline_queries": False}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    host: str


@dataclass
class FakeTelegramApi:
    token: str
    calls: list[Call] = field(default_factory=list)
    _updates: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(900))
    _runner: web.AppRunner | None = None
    _failures: dict[str, list[tuple[int, str, int | None]]] = field(default_factory=dict)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        # a long poll still open at close is cut off at once, as Telegram drops it
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- control hooks for tests --------------------------------------------------------

    def queue_update(self, update: dict[str, Any]) -> None:
        self._updates.put_nowait(update)

    def fail(self, method: str, status: int, description: str = "", *, times: int = 1,
             retry_after: int | None = None) -> None:
        """The next `times` calls of `method` answer `status` (after being recorded)."""
        text = description or {403: "Forbidden: bot was blocked by the user",
                               429: "Too Many Requests: retry after 1",
                               400: "Bad Request: chat not found"}.get(status, "Internal error")
        self._failures.setdefault(method, []).extend([(status, text, retry_after)] * times)

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def hosts(self) -> set[str]:
        return {c.host for c in self.calls}

    # --- the API ------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        # the library posts form fields; objects (reply_markup...) are JSON-encoded strings
        out: dict[str, Any] = {}
        for key, value in (await request.post()).items():
            try:
                out[key] = json.loads(str(value))
            except ValueError:
                out[key] = str(value)
        return out

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request) if request.can_read_body else dict(request.query)
        self.calls.append(Call(method, params, request.host))
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        pending = self._failures.get(method)
        if pending:
            status, text, retry_after = pending.pop(0)
            return _error(status, text, retry_after)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found")
        return web.json_response({"ok": True, "result": await handler(params)})

    def _message(self, chat_id: Any, text: str, **extra: Any) -> dict[str, Any]:
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": int(chat_id), "type": "private"}, "from": BOT_USER,
                "text": text, **extra}

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        extra = {"reply_markup": params["reply_markup"]} if "reply_markup" in params else {}
        return self._message(params["chat_id"], str(params["text"]), **extra)

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        return self._message(params.get("chat_id", 1), str(params["text"]))

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        return True

    async def _wait(self) -> None:
        # put back what get() took, so the caller sees the queue as the test filled it
        self._updates.put_nowait(await self._updates.get())

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = int(params.get("offset") or 0)
        if self._updates.empty():
            try:
                await asyncio.wait_for(self._wait(), float(params.get("timeout") or 0))
            except TimeoutError:
                return []
        out = []
        while not self._updates.empty():
            out.append(self._updates.get_nowait())
        return [u for u in out if u["update_id"] >= offset]


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
