"""Server-Sent Events for the pages' live streams (the wall's `/wall/stream`, the agent
desktop's `/agent/stream`).

`serve_events` is what both streams share: the headers (no caching, no proxy buffering), the
browser's reconnect delay, the session re-checked before every round (a user who logged out,
was removed or lost the role gets an `ended` event and the stream closes at once), an event
only when the payload changed, a keep-alive comment when nothing was sent for `KEEPALIVE_S`,
and a quiet end when the browser goes away or the server stops (`stop`). What a round reads
and how long it waits for the next one are the caller's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from router.auth import Principal
from router.web.session import principal_of

logger = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # a reverse proxy must pass each event on at once
}
ENDED = b'event: ended\ndata: {"reason": "session"}\n\n'


async def serve_events(
    request: web.Request,
    principal: Principal,
    *,
    what: str,
    event: str,
    stop: asyncio.Event,
    allowed: Callable[[Principal | None], bool],
    read: Callable[[], Awaitable[tuple[str, str]]],
    wait: Callable[[], Awaitable[None]],
) -> web.StreamResponse:
    """Stream `event`s until the session no longer passes `allowed`, the browser leaves or
    `stop` is set. Each round `read()` gives (what to compare with the last push, the event's
    data); then `wait()` returns when the next round is due."""
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    last_key, last_write = "", loop.time()
    logger.debug("%s stream opened user=%s", what, principal.username)
    try:
        await response.write(b"retry: 2000\n\n")
        while not stop.is_set():
            if not allowed(await principal_of(request)):
                await response.write(ENDED)
                break
            key, data = await read()
            if key != last_key:
                await response.write(f"event: {event}\ndata: {data}\n\n".encode())
                last_key, last_write = key, loop.time()
            elif loop.time() - last_write >= KEEPALIVE_S:
                await response.write(b": keep-alive\n\n")
                last_write = loop.time()
            await wait()
    except (ConnectionResetError, ConnectionError):
        pass  # the page was closed
    finally:
        logger.debug("%s stream closed user=%s", what, principal.username)
    return response
