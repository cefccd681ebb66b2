"""Ordered delivery of AMI events to the voice channel's callbacks (for `channels.voice.ami`).

One task delivers everything, in the order it arrived, so a callback sees a channel's events in
Asterisk's order and the reconciliation after a reconnect (``on_connected``) runs before the
events of that connection. Every awaited callback has a deadline and its exceptions are logged:
a slow or broken handler delays the others for at most `callback_timeout_s` and never stops
the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.voice.ami_frames import AmiEvent

logger = logging.getLogger("channels.voice.ami")

EventCallback = Callable[..., Awaitable[None] | None]
ConnectedCallback = Callable[[], Awaitable[None] | None]
_CONNECTED = object()  # queue marker: run the on_connected callbacks
_STOP = object()  # queue marker: no more events


class EventDispatcher:
    def __init__(self, callback_timeout_s: float) -> None:
        self.callback_timeout_s = callback_timeout_s
        self._event_callbacks: list[tuple[EventCallback, bool]] = []  # (callback, two args)
        self._connected_callbacks: list[ConnectedCallback] = []
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def on_event(self, callback: EventCallback) -> None:
        self._event_callbacks.append((callback, _wants_two(callback)))

    def on_connected(self, callback: ConnectedCallback) -> None:
        self._connected_callbacks.append(callback)

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ami-dispatch")

    def push(self, event: AmiEvent) -> None:
        if self._queue is not None:
            self._queue.put_nowait(event)

    def push_connected(self) -> asyncio.Future[None]:
        """Queue a run of the on_connected callbacks; the future resolves after it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._queue is not None:
            self._queue.put_nowait((_CONNECTED, done))
        else:
            done.set_result(None)
        return done

    @property
    def backlog(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def stop(self, drain_s: float) -> None:
        """Deliver what is queued for at most `drain_s`, then end."""
        if self._task is None or self._queue is None:
            return
        self._queue.put_nowait(_STOP)
        await finish(self._task, drain_s)
        self._task = self._queue = None

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, tuple):  # (_CONNECTED, done)
                for callback in list(self._connected_callbacks):
                    await self._call(callback, (), "on_connected")
                if not item[1].done():
                    item[1].set_result(None)
                continue
            for callback, two in list(self._event_callbacks):
                await self._call(callback, (item.name, item) if two else (item,), item.name)

    async def _call(self, callback: Callable[..., Any], args: tuple[Any, ...], what: str) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                async with asyncio.timeout(self.callback_timeout_s):
                    await result
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            logger.error(
                "ami: callback %r took longer than %.0f s on %s",
                callback,
                self.callback_timeout_s,
                what,
            )
        except Exception:
            logger.exception("ami: callback %r failed on %s", callback, what)


async def finish(task: asyncio.Task[None], within_s: float) -> None:
    """Let `task` end by itself for `within_s`, then cancel it; either way await it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            await asyncio.shield(task)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _wants_two(callback: Callable[..., Any]) -> bool:
    """True for a `callback(name, fields)` (channels.voice.link.AmiLink's shape), False for
    `callback(event)`."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2
