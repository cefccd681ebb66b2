"""A bare AMI client for tests of the fake itself (no panoramisk, no production code).

It keeps every message the server sent, in order, and lets a test send an action and wait for
its Response or for an event that matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable


def parse(message: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in message.split("\r\n"):
        key, _, value = line.partition(": ")
        fields.setdefault(key, value)
    return fields


class RawAmi:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = ""
        self.messages: list[str] = []
        self.raw = bytearray()
        self._ids = itertools.count(1)
        self._buffer = ""
        self.reset = False
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, *, login: bool = True) -> RawAmi:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        if login:
            reply = await client.action("Login", Username="router", Secret="routerpass")
            assert reply["Response"] == "Success", reply
        return client

    async def _read(self) -> None:
        try:
            await self._read_all()
        except ConnectionError:
            self.reset = True  # an RST from the server
        self._changed.set()

    async def _read_all(self) -> None:
        while data := await self.reader.read(65536):
            self.raw += data
            self._buffer += data.decode("utf-8", "replace")
            if not self.banner and "\r\n" in self._buffer:
                self.banner, _, self._buffer = self._buffer.partition("\r\n")
            while "\r\n\r\n" in self._buffer:
                message, _, self._buffer = self._buffer.partition("\r\n\r\n")
                self.messages.append(message)
            self._changed.set()

    @property
    def closed(self) -> bool:
        return self._task.done()

    async def wait_closed(self) -> None:
        """Until the server has closed the connection."""
        await asyncio.shield(self._task)

    def send(self, action: str, **fields: str) -> str:
        action_id = fields.pop("ActionID", f"t-{next(self._ids)}")
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in fields.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    async def wait_for(
        self, predicate: Callable[[dict[str, str]], bool], within_s: float = 5.0, start: int = 0
    ) -> dict[str, str]:
        """The first message (from index `start`) for which predicate(fields) holds."""
        async with asyncio.timeout(within_s):
            index = start
            while True:
                while index < len(self.messages):
                    fields = parse(self.messages[index])
                    index += 1
                    if predicate(fields):
                        return fields
                if self.closed:
                    raise ConnectionError("the server closed the connection")
                self._changed.clear()
                await self._changed.wait()

    async def action(self, action: str, within_s: float = 5.0, **fields: str) -> dict[str, str]:
        start = len(self.messages)
        action_id = self.send(action, **fields)
        return await self.wait_for(
            lambda f: "Response" in f and f.get("ActionID") == action_id, within_s, start
        )

    async def event(self, name: str, within_s: float = 5.0, **fields: str) -> dict[str, str]:
        def matches(msg: dict[str, str]) -> bool:
            return msg.get("Event") == name and all(msg.get(k) == v for k, v in fields.items())

        return await self.wait_for(matches, within_s)

    def events(self, name: str, **fields: str) -> list[dict[str, str]]:
        found = []
        for message in self.messages:
            msg = parse(message)
            if msg.get("Event") == name and all(msg.get(k) == v for k, v in fields.items()):
                found.append(msg)
        return found

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self._task
