"""Load the Lua scripts once, call them by SHA, reload on NOSCRIPT.

Each script in `lua/` is one state transition; `_lib.lua` is prepended to every one of them so
the capacity rule, the event writer and the clock exist once. A Redis restart (or SCRIPT FLUSH)
forgets loaded scripts: the first call then gets NOSCRIPT, and we load and retry once.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from queues.errors import SCRIPT_ERRORS, StoreError

logger = logging.getLogger(__name__)


def _read(name: str) -> str:
    return resources.files("queues").joinpath("lua", name).read_text(encoding="utf-8")


def script_names() -> list[str]:
    return sorted(
        p.name[:-4]
        for p in resources.files("queues").joinpath("lua").iterdir()
        if p.name.endswith(".lua") and not p.name.startswith("_")
    )


class Scripts:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        lib = _read("_lib.lua")
        self.sources: dict[str, str] = {
            name: f"{lib}\n-- ==== {name}.lua ====\n{_read(name + '.lua')}"
            for name in script_names()
        }
        self.shas = {
            name: hashlib.sha1(src.encode()).hexdigest()
            for name, src in self.sources.items()
        }

    async def load(self) -> None:
        for name, src in self.sources.items():
            sha = await self.redis.script_load(src)
            if sha != self.shas[name]:  # pragma: no cover - would mean an encoding mismatch
                raise RuntimeError(f"script {name}: Redis computed another SHA")
        logger.debug("loaded %d Lua scripts", len(self.sources))

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            try:
                return await self.redis.evalsha(self.shas[name], len(keys), *keys, *args)
            except NoScriptError:
                logger.info("script cache empty (Redis restarted?): reloading scripts")
                await self.load()
                return await self.redis.evalsha(self.shas[name], len(keys), *keys, *args)
        except ResponseError as exc:
            raise _translate(exc) from None


    async def call_many(
        self, name: str, calls: list[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """Many calls of one script in one pipeline (one round trip). Each result is the
        script's reply or the translated exception; refusals do not stop the others."""
        if not calls:
            return []
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    keys, args = calls[i]
                    pipe.evalsha(self.shas[name], len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
            retry = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    retry.append(i)  # not executed: safe to send again after loading
                elif isinstance(reply, ResponseError):
                    results[i] = _translate(reply)
                else:
                    results[i] = reply
            if not retry:
                break
            logger.info("script cache empty (Redis restarted?): reloading scripts")
            await self.load()
            todo = retry
        return results


def _translate(exc: ResponseError) -> Exception:
    text = str(exc)
    # Redis wraps script errors differently across versions: find our code anywhere in the text.
    for code, cls in SCRIPT_ERRORS.items():
        at = text.find(code + " ")
        if at >= 0:
            detail = text[at + len(code) + 1 :].split(" script:")[0].strip()
            return cls(detail)
    return StoreError(text) if "CL_" in text else exc
