"""One AMI client connection to the fake: reading actions, writing like Asterisk writes.

Actions of one connection run one after the other (Asterisk gives each session one thread), so
a PlayDTMF that takes 200 ms delays the next action's reply as in fastagi-ivr-dtmf.dialog.txt.
Output goes through one queue: a response is queued before the events its action causes, which
therefore arrive after it (surprise 4). The writer may split messages at line boundaries
(surprise 1, ``chunking="lines"``, seeded) and always writes ``Command`` output line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from typing import TYPE_CHECKING

from tests.fakes.ami_codec import BANNER, Pairs, Request, encode, split_lines, take_blocks

if TYPE_CHECKING:
    from tests.fakes.ami_server import FakeAsterisk

logger = logging.getLogger(__name__)

_CLOSE = object()
_YIELD = object()  # a write boundary: let the peer read what was written so far
MAX_INPUT_BYTES = 1 << 20  # a client that sends a megabyte without an empty line is cut off


class AmiSession(asyncio.Protocol):
    def __init__(self, server: FakeAsterisk) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.out: asyncio.Queue[object] = asyncio.Queue()
        self.actions: asyncio.Queue[Request] = asyncio.Queue()
        self.authenticated = False
        self.username = ""
        self.categories: set[str] | None = None  # None: every category; empty: events off
        self.frozen = False
        self.closed = False
        self.held: list[bytes] | None = None
        self.session_id = f"0x7f{random.randrange(16**10):010x}"
        self.started = server.pbx.clock()
        self.local_port = 0
        self.remote_port = 0
        self.rng = random.Random(server.chunk_seed)
        self._tasks: list[asyncio.Task[None]] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # --- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = (transport.get_extra_info("sockname") or ("", 0))[1]
        self.remote_port = (transport.get_extra_info("peername") or ("", 0))[1]
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._writer(), name="fake-ami-writer"),
            loop.create_task(self._action_loop(), name="fake-ami-actions"),
        ]
        self.out.put_nowait(BANNER)

    def data_received(self, data: bytes) -> None:
        if self.frozen or self.closed:
            return
        self.buffer += data
        if len(self.buffer) > MAX_INPUT_BYTES:
            logger.warning("fake asterisk: client sent %d bytes without an end", len(self.buffer))
            self.abort()
            return
        for block in take_blocks(self.buffer):
            self.actions.put_nowait(Request.parse(block))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for task in self._tasks:
            task.cancel()
        self.server.session_gone(self)
        if not self.done.done():
            self.done.set_result(None)

    # --- loops -------------------------------------------------------------------------------
    async def _action_loop(self) -> None:
        while True:
            request = await self.actions.get()
            try:
                await self.server.process(self, request)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("fake asterisk: action %r failed", request)

    async def _writer(self) -> None:
        while True:
            item = await self.out.get()
            if self.transport is None or self.transport.is_closing():
                continue
            if item is _CLOSE:
                self.transport.close()
                return
            if item is _YIELD:
                await asyncio.sleep(0)
                continue
            if self.frozen:
                continue
            assert isinstance(item, bytes)
            if self.server.chunking == "lines" and item != BANNER:
                await self._write_in_pieces(item)
            else:
                self.transport.write(item)

    async def _write_in_pieces(self, data: bytes) -> None:
        """Split at line boundaries (never inside a line), as Asterisk's writes do."""
        lines = split_lines(data) if data.endswith(b"\r\n") else [data]
        piece = b""
        for line in lines:
            piece += line
            if self.rng.random() < self.server.split_probability:
                self.transport.write(piece)  # type: ignore[union-attr]
                piece = b""
                await asyncio.sleep(self.server.chunk_delay_s)
        if piece:
            self.transport.write(piece)  # type: ignore[union-attr]

    # --- output ------------------------------------------------------------------------------
    def send(self, pairs: Pairs) -> None:
        self.out.put_nowait(encode(pairs))

    def send_raw(self, data: bytes) -> None:
        self.out.put_nowait(data)

    def send_split(self, pieces: list[bytes]) -> None:
        """Separate writes, as Asterisk writes a Command response (surprise 1)."""
        for piece in pieces:
            self.out.put_nowait(piece)
            self.out.put_nowait(_YIELD)

    def wants(self, category: str) -> bool:
        if not self.authenticated:
            return False
        return self.categories is None or category in self.categories

    def deliver_event(self, category: str, data: bytes) -> None:
        if self.closed or not self.wants(category):
            return
        if self.held is not None:
            self.held.append(data)
        else:
            self.out.put_nowait(data)

    def hold_events(self) -> None:
        self.held = []

    def release_events(self) -> None:
        held, self.held = self.held or [], None
        for data in held:
            self.out.put_nowait(data)

    def close_after_output(self) -> None:
        self.out.put_nowait(_CLOSE)

    def abort(self, *, rst: bool = False) -> None:
        """Cut the connection now: a FIN, or an RST when `rst` (SO_LINGER 0)."""
        if self.transport is None or self.closed:
            return
        if rst:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def freeze(self) -> None:
        """Half-open: keep the socket, never answer or send again."""
        self.frozen = True
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.pause_reading()

    async def wait_closed(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.done
